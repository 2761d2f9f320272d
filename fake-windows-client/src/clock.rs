//! The device's notion of time: wall-clock time plus an offset that tests move forward,
//! so renewal due-ness, poll schedules and registry timestamps can be exercised without
//! waiting.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A controllable clock: `now()` is the system time shifted by `offset_secs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    pub offset_secs: i64,
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset_secs)
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, by: std::time::Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.offset_secs = self.offset_secs.saturating_add(secs);
    }

    /// Sets the clock so that `now()` returns (about) `at`.
    pub fn set(&mut self, at: OffsetDateTime) {
        self.offset_secs = (at - OffsetDateTime::now_utc()).whole_seconds();
    }

    /// `now()` as RFC 3339 text.
    pub fn now_rfc3339(&self) -> String {
        self.now()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }
}
