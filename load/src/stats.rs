//! What the workers of a run measured: latency histograms per endpoint and error
//! counts by kind.

use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::histogram::Histogram;

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
    /// Check-ins whose connection resumed the device's TLS session (no full handshake).
    pub checkin_resumptions: u64,
    /// Full TLS handshakes of check-ins (the server asked for the client certificate).
    pub checkin_full_handshakes: u64,
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
        self.checkin_resumptions += o.checkin_resumptions;
        self.checkin_full_handshakes += o.checkin_full_handshakes;
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
