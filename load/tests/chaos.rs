//! Short chaos runs (docs/reliability.md):
//! - devices, an admin client and profiles at work while the server process is killed
//!   with SIGKILL three times and then crashed at each named crash point; the checker
//!   finds every acknowledged command delivered and stored once, no command sent again
//!   after its answer, and every profile state matching the device's tree (on SQLite,
//!   and on Postgres when WINMDM_TEST_POSTGRES_URL is set);
//! - with WINMDM_TEST_POSTGRES_URL set, a private Postgres cluster stopped immediately
//!   and started again, and two server replicas swapped, with the same checks;
//! - the same workload on a server with the test-only bug "answer before commit": the
//!   checker fails, naming the invariant.

use std::time::Duration;

use winmdm_load::chaos::{self, Backend, ChaosOptions, ChaosReport};

fn text(report: &ChaosReport) -> String {
    let mut text = Vec::new();
    report.print(&mut text).expect("print");
    String::from_utf8_lossy(&text).into_owned()
}

fn assert_checked(report: &ChaosReport, invariants: &[&str]) {
    let text = text(report);
    for invariant in invariants {
        assert!(
            report.passed.get(invariant).copied().unwrap_or(0) > 0,
            "{invariant} was never checked: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_lose_nothing_and_do_nothing_twice() {
    let opts = ChaosOptions {
        seed: 11,
        ..ChaosOptions::new(env!("CARGO_BIN_EXE_winmdm-load").into())
    };
    let report = chaos::run(&opts).await.expect("chaos run");
    let text = text(&report);
    assert_eq!(report.kills, 3, "{text}");
    assert!(report.enrolled > 0, "{text}");
    assert!(report.violations.is_empty(), "{text}");
    assert_checked(
        &report,
        &[
            "command_delivered",
            "answered_status_stored",
            "no_command_twice",
            "profile_settled",
            "profile_matches_tree",
        ],
    );
}

/// Needs WINMDM_TEST_POSTGRES_URL (the Postgres pass of CI) and the Postgres server
/// binaries it implies (initdb, pg_ctl); under CI=true a missing one fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_and_replica_swaps_lose_nothing() {
    if std::env::var("WINMDM_TEST_POSTGRES_URL").is_err() {
        eprintln!("skipped: WINMDM_TEST_POSTGRES_URL is not set (the Postgres pass runs it)");
        return;
    }
    let opts = ChaosOptions {
        backend: Backend::PostgresManaged,
        seed: 12,
        kills: 1,
        db_restarts: 2,
        swaps: 2,
        crash_points: false,
        quiet: Duration::from_secs(60),
        ..ChaosOptions::new(env!("CARGO_BIN_EXE_winmdm-load").into())
    };
    let report = chaos::run(&opts).await.expect("chaos run");
    let text = text(&report);
    assert_eq!(
        (report.kills, report.db_restarts, report.swaps),
        (1, 2, 2),
        "{text}"
    );
    assert!(report.violations.is_empty(), "{text}");
    assert_checked(
        &report,
        &[
            "command_delivered",
            "answered_status_stored",
            "no_command_twice",
        ],
    );
}

/// The server answers a device's Statuses before they are committed (the test-only
/// fault `commit_after_answer`): the kills lose answered Statuses and the commands are
/// sent again, which the checker reports. A run on a loaded machine may see no command
/// answered before a kill: up to three seeds are tried, and one must be caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_before_the_commit_is_caught() {
    let mut texts = Vec::new();
    for seed in [13, 14, 15] {
        let opts = ChaosOptions {
            seed,
            kills: 4,
            kill_gap: (Duration::from_millis(2000), Duration::from_millis(3500)),
            crash_points: false,
            quiet: Duration::from_secs(10),
            server_env: vec![
                ("WINMDM_FAULT".into(), "commit_after_answer".into()),
                ("WINMDM_ALLOW_CRASH_POINTS".into(), "1".into()),
            ],
            ..ChaosOptions::new(env!("CARGO_BIN_EXE_winmdm-load").into())
        };
        let report = chaos::run(&opts).await.expect("chaos run");
        let text = text(&report);
        eprintln!("{text}");
        if report
            .violations
            .iter()
            .any(|v| v.invariant == "no_command_twice")
        {
            return;
        }
        texts.push(text);
    }
    panic!(
        "the checker missed the answer sent before the commit in every run:\n{}",
        texts.join("\n")
    );
}
