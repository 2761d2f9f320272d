//! Named crash points for crash-consistency tests (`winmdm-load chaos`): with
//! `WINMDM_CRASH_AT=<point>[:<n>]` the process aborts (no shutdown of any kind, like a
//! SIGKILL) the n-th time (default 1) it reaches `<point>`.
//!
//! Test-only: a server with `WINMDM_CRASH_AT` set refuses to start unless
//! `WINMDM_ALLOW_CRASH_POINTS=1` says that this is a test ([`check_environment`]).
//! Without the variable a crash point costs one relaxed atomic load.
//!
//! Also test-only, under the same confirmation: `WINMDM_FAULT=<fault>` switches on a
//! deliberate bug ([`FAULTS`]), so that a test can show the chaos checker catches it.

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

/// Every deliberate bug [`fault`] can switch on.
pub const FAULTS: [&str; 1] = [
    // A management message is answered before its Statuses and Results are committed:
    // they are stored in the background a few seconds later (lost if the process dies
    // first). The bug the rule "commit, then answer" prevents.
    "commit_after_answer",
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
    let allow = std::env::var("WINMDM_ALLOW_CRASH_POINTS").ok();
    check(
        std::env::var("WINMDM_CRASH_AT").ok().as_deref(),
        allow.as_deref(),
    )?;
    check_fault(
        std::env::var("WINMDM_FAULT").ok().as_deref(),
        allow.as_deref(),
    )
}

fn check_fault(fault: Option<&str>, allow: Option<&str>) -> Result<(), String> {
    let Some(f) = fault else {
        return Ok(());
    };
    if allow != Some("1") {
        return Err(
            "WINMDM_FAULT switches on a deliberate bug for crash-consistency tests: set WINMDM_ALLOW_CRASH_POINTS=1 to confirm, or unset it"
                .into(),
        );
    }
    if !FAULTS.contains(&f) {
        return Err(format!(
            "WINMDM_FAULT: no fault {f:?} (known: {})",
            FAULTS.join(", ")
        ));
    }
    Ok(())
}

/// Whether the deliberate bug `name` is switched on (read once; the server refused to
/// start unless the test confirmation is set too).
pub fn fault(name: &str) -> bool {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    FAULT
        .get_or_init(|| std::env::var("WINMDM_FAULT").ok())
        .as_deref()
        == Some(name)
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
    use super::{check, check_fault};

    #[test]
    fn crash_points_need_the_test_confirmation_and_a_known_name() {
        assert!(check(None, None).is_ok());
        assert!(check(Some("management.after_store"), None)
            .is_err_and(|e| e.contains("WINMDM_ALLOW_CRASH_POINTS")));
        assert!(check(Some("management.after_store:3"), Some("1")).is_ok());
        assert!(check(Some("nowhere"), Some("1")).is_err_and(|e| e.contains("no crash point")));
    }

    #[test]
    fn faults_need_the_test_confirmation_and_a_known_name() {
        assert!(check_fault(None, None).is_ok());
        assert!(check_fault(Some("commit_after_answer"), None)
            .is_err_and(|e| e.contains("WINMDM_ALLOW_CRASH_POINTS")));
        assert!(check_fault(Some("commit_after_answer"), Some("1")).is_ok());
        assert!(
            check_fault(Some("lose_everything"), Some("1")).is_err_and(|e| e.contains("no fault"))
        );
    }
}
