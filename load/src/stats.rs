//! Latency histograms (log-linear buckets, about 1% resolution, fixed memory) and
//! error counts by kind.

use std::collections::BTreeMap;
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// Latencies in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: u64,
    max_us: u64,
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let m = (v >> (e - SUB_BITS)) & (SUB - 1);
    ((u64::from(e - SUB_BITS + 1) << SUB_BITS) + m) as usize
}

/// Upper bound of bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = (i >> SUB_BITS) + u64::from(SUB_BITS) - 1;
    let m = i & (SUB - 1);
    let low = (SUB + m) << (e - u64::from(SUB_BITS));
    low + (1 << (e - u64::from(SUB_BITS))) - 1
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = index(us);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(i).min(self.max_us) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.total as f64 / 1000.0
        }
    }
}

/// The endpoints timed by the load test, in report order.
pub const ENDPOINTS: [&str; 6] = [
    "orbit_enroll",
    "orbit_config",
    "discovery",
    "policy",
    "enroll",
    "management",
];

/// Everything a worker measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub latency: BTreeMap<&'static str, Histogram>,
    pub errors: BTreeMap<String, u64>,
    pub enrolled: u64,
    pub checkins: u64,
    pub syncml_messages: u64,
    pub commands: u64,
    /// Where each latency and error is also recorded per interval (for charts).
    pub timeline: Option<std::sync::Arc<crate::timeline::Timeline>>,
}

impl Stats {
    /// Stats that also record into `timeline`.
    pub fn with_timeline(timeline: Option<std::sync::Arc<crate::timeline::Timeline>>) -> Stats {
        Stats {
            timeline,
            ..Stats::default()
        }
    }

    pub fn time(&mut self, endpoint: &'static str, d: Duration) {
        self.latency.entry(endpoint).or_default().record(d);
        if let Some(t) = &self.timeline {
            t.record(endpoint, d);
        }
    }

    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
        if let Some(t) = &self.timeline {
            t.error();
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        for (k, h) in &o.latency {
            self.latency.entry(k).or_default().merge(h);
        }
        for (k, n) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
        self.enrolled += o.enrolled;
        self.checkins += o.checkins;
        self.syncml_messages += o.syncml_messages;
        self.commands += o.commands;
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// A short, stable name for an error: the step and the kind of failure.
pub fn error_kind(e: &fake_windows_client::ClientError) -> String {
    use fake_windows_client::ClientError as E;
    match e {
        E::Transport { step, source } if source.is_timeout() => format!("{step}: timeout"),
        E::Transport { step, source } if source.is_connect() => format!("{step}: connect"),
        E::Transport { step, .. } => format!("{step}: transport"),
        E::Http { step, status, .. } => format!("{step}: HTTP {status}"),
        E::Throttled { step, .. } => format!("{step}: HTTP 429"),
        E::SoapFault(f) => format!("SOAP fault {}", f.subcode),
        E::Invalid { step, .. } => format!("{step}: invalid response"),
        E::Missing { step, .. } => format!("{step}: missing element"),
        other => {
            let s = other.to_string();
            let head: String = s.split(':').next().unwrap_or("").chars().take(40).collect();
            format!("client: {head}")
        }
    }
}

/// Resident set size of this process (VmRSS), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            10_000,
            1_000_000,
            1 << 40,
        ] {
            let i = index(v);
            assert!(i >= last);
            last = i;
            let hi = bucket_high(i);
            assert!(hi >= v, "{v} -> {i} -> {hi}");
            assert!(hi - v <= v / 64 + 1, "{v} -> {hi}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!(h.quantile_ms(0.99) <= 100.0);
    }
}
