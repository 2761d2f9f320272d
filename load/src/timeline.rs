//! Figures of a run per time interval, for the charts of `--html`: requests and their
//! latency per endpoint, errors, and memory with the number of enrolled devices.
//!
//! Workers record into one shared timeline (a mutex per request is far below the cost
//! of the request); its memory is bounded by the number of intervals, not by the run.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::histogram::Histogram;

/// Intervals a timeline keeps at most; later records land in the last one.
const MAX_SLOTS: usize = 600;

/// One interval of a run.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// Latencies of successful requests, per endpoint.
    pub latency: BTreeMap<&'static str, Histogram>,
    pub errors: u64,
    /// Process RSS (bytes) and devices enrolled so far, sampled in this interval.
    pub rss: Option<u64>,
    pub enrolled: u64,
}

/// The per-interval figures of one run.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    interval: Duration,
    slots: Mutex<Vec<Slot>>,
}

impl Timeline {
    /// A timeline starting now; `interval` is at least 100 ms.
    pub fn new(interval: Duration) -> Timeline {
        Timeline {
            start: Instant::now(),
            interval: interval.max(Duration::from_millis(100)),
            slots: Mutex::new(Vec::new()),
        }
    }

    /// The interval for a run of `duration`: about 120 points, at least a second.
    pub fn interval_for(duration: Duration) -> Duration {
        (duration / 120).max(Duration::from_secs(1))
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn with_slot(&self, f: impl FnOnce(&mut Slot)) {
        let i = (self.start.elapsed().as_nanos() / self.interval.as_nanos().max(1)) as usize;
        let i = i.min(MAX_SLOTS - 1);
        if let Ok(mut slots) = self.slots.lock() {
            if slots.len() <= i {
                slots.resize_with(i + 1, Slot::default);
            }
            f(&mut slots[i]);
        }
    }

    pub fn record(&self, endpoint: &'static str, d: Duration) {
        self.with_slot(|s| s.latency.entry(endpoint).or_default().record(d));
    }

    pub fn error(&self) {
        self.with_slot(|s| s.errors += 1);
    }

    /// Records the process RSS (when known) with the number of devices enrolled so far.
    pub fn sample_memory(&self, rss: Option<u64>, enrolled: u64) {
        self.with_slot(|s| {
            s.rss = rss.or(s.rss);
            s.enrolled = enrolled;
        });
    }

    /// The intervals so far.
    pub fn slots(&self) -> Vec<Slot> {
        self.slots.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_the_current_interval() {
        let t = Timeline::new(Duration::from_secs(3600));
        t.record("management", Duration::from_millis(5));
        t.record("management", Duration::from_millis(7));
        t.error();
        t.sample_memory(Some(1 << 20), 2);
        let slots = t.slots();
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].latency["management"].count(), 2);
        assert_eq!(slots[0].errors, 1);
        assert_eq!(slots[0].enrolled, 2);
        assert_eq!(
            Timeline::interval_for(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
        assert_eq!(
            Timeline::interval_for(Duration::from_secs(1200)),
            Duration::from_secs(10)
        );
    }
}
