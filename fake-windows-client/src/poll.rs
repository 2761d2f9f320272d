//! The DMClient poll schedule (DMClient CSP, `Provider/<ID>/Poll`): after enrollment the
//! device starts sessions every `IntervalForFirstSetOfRetries` minutes,
//! `NumberOfFirstRetries` times, then the second set, then the remaining set; a count of 0
//! repeats that set forever. Absent or zero intervals disable a set.

use crate::device::Device;

/// (interval minutes, count) of the three sets, from the DMClient `Poll` node values.
pub fn schedule(get: impl Fn(&str) -> Option<u64>) -> [(u64, u64); 3] {
    [
        ("IntervalForFirstSetOfRetries", "NumberOfFirstRetries"),
        ("IntervalForSecondSetOfRetries", "NumberOfSecondRetries"),
        (
            "IntervalForRemainingScheduledRetries",
            "NumberOfRemainingScheduledRetries",
        ),
    ]
    .map(|(i, n)| (get(i).unwrap_or(0), get(n).unwrap_or(0)))
}

/// First scheduled poll strictly after `now` (Unix seconds) for a schedule starting at `start`.
pub fn next_after(start: i64, now: i64, sets: &[(u64, u64); 3]) -> Option<i64> {
    let mut t = start;
    for &(minutes, count) in sets {
        if minutes == 0 {
            continue;
        }
        let step = i64::try_from(minutes.saturating_mul(60)).ok()?;
        if count == 0 {
            let k = if now < t { 1 } else { (now - t) / step + 1 };
            return t.checked_add(k.checked_mul(step)?);
        }
        let count = i64::try_from(count).ok()?;
        let end = t.checked_add(step.checked_mul(count)?)?;
        if now < end {
            let k = if now < t { 1 } else { (now - t) / step + 1 };
            return t.checked_add(k * step);
        }
        t = end;
    }
    None
}

impl Device {
    /// When the device will next start a management session on its own, per the DMClient
    /// Poll parameters the server configured (device clock); `None` when none is scheduled.
    pub fn next_poll_at(&self) -> Option<time::OffsetDateTime> {
        let e = self.state.enrollment.as_ref()?;
        let base = format!("./Vendor/MSFT/DMClient/Provider/{}/Poll/", e.provider_id);
        let sets = schedule(|n| {
            self.state
                .nodes
                .nodes
                .get(&format!("{base}{n}"))
                .and_then(|v| v.data.as_deref())
                .and_then(|d| d.trim().parse().ok())
        });
        let now = self.state.clock.now().unix_timestamp();
        let at = next_after(e.enrolled_at, now, &sets)?;
        time::OffsetDateTime::from_unix_timestamp(at).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_follow_each_other() {
        let sets = [(3, 5), (15, 2), (480, 0)];
        assert_eq!(next_after(0, 0, &sets), Some(180));
        assert_eq!(next_after(0, 180, &sets), Some(360));
        assert_eq!(next_after(0, 900, &sets), Some(900 + 900));
        assert_eq!(next_after(0, 2700, &sets), Some(2700 + 480 * 60));
        assert_eq!(next_after(0, 10, &[(0, 0), (0, 0), (0, 0)]), None);
        assert_eq!(next_after(0, 10_000, &[(1, 2), (0, 0), (0, 0)]), None);
    }
}
