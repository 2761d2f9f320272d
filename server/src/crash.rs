//! Named crash points for crash-consistency tests (`winmdm-load chaos`): with
//! `WINMDM_CRASH_AT=<point>[:<n>]` the process aborts (no shutdown of any kind, like a
//! SIGKILL) the n-th time (default 1) it reaches `<point>`.
//!
//! Test-only: a server with `WINMDM_CRASH_AT` set refuses to start unless
//! `WINMDM_ALLOW_CRASH_POINTS=1` says that this is a test ([`check_environment`]).
//! Without the variable a crash point costs one relaxed atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Every crash point, for tests that visit each.
pub const POINTS: [&str; 4] = [
    // A device package received and parsed, nothing of it stored yet.
    "management.before_store",
    // The package's Statuses and Results committed, the answer not yet sent.
    "management.after_store",
    // Enrollment: the certificate signed, the enrollment not yet recorded.
    "enroll.after_sign",
    // Renewal: the new certificate signed, the renewal not yet recorded.
    "renew.after_sign",
];

struct Armed {
    point: String,
    nth: u64,
    reached: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("WINMDM_CRASH_AT").ok()?;
            let (point, nth) = match v.split_once(':') {
                Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some(Armed {
                point,
                nth: nth.max(1),
                reached: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Refuses crash points outside tests, and names that are not crash points.
pub fn check_environment() -> Result<(), String> {
    check(
        std::env::var("WINMDM_CRASH_AT").ok().as_deref(),
        std::env::var("WINMDM_ALLOW_CRASH_POINTS").ok().as_deref(),
    )
}

fn check(crash_at: Option<&str>, allow: Option<&str>) -> Result<(), String> {
    let Some(v) = crash_at else {
        return Ok(());
    };
    if allow != Some("1") {
        return Err(
            "WINMDM_CRASH_AT is for crash-consistency tests: set WINMDM_ALLOW_CRASH_POINTS=1 to confirm, or unset it"
                .into(),
        );
    }
    let point = v.split_once(':').map_or(v, |(p, _)| p);
    if !POINTS.contains(&point) {
        return Err(format!(
            "WINMDM_CRASH_AT: no crash point {point:?} (known: {})",
            POINTS.join(", ")
        ));
    }
    Ok(())
}

/// Aborts the process when this is the armed point reached for the n-th time.
pub fn point(name: &str) {
    let Some(a) = armed() else {
        return;
    };
    if a.point == name && a.reached.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
        eprintln!("winmdm-server: crash point {name} reached: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn crash_points_need_the_test_confirmation_and_a_known_name() {
        assert!(check(None, None).is_ok());
        assert!(check(Some("management.after_store"), None)
            .is_err_and(|e| e.contains("WINMDM_ALLOW_CRASH_POINTS")));
        assert!(check(Some("management.after_store:3"), Some("1")).is_ok());
        assert!(check(Some("nowhere"), Some("1")).is_err_and(|e| e.contains("no crash point")));
    }
}
