//! A short chaos run: devices and an admin client at work while the server process is
//! killed with SIGKILL three times and then crashed at each named crash point; the
//! checker finds every acknowledged command
//! delivered and stored once, and no command sent again after its answer (on SQLite,
//! and on Postgres when WINMDM_TEST_POSTGRES_URL is set).

use std::time::Duration;

use winmdm_load::chaos::{self, ChaosOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_lose_nothing_and_do_nothing_twice() {
    let opts = ChaosOptions {
        devices: 5,
        kills: 3,
        seed: 11,
        kill_gap: (Duration::from_millis(300), Duration::from_millis(900)),
        quiet: Duration::from_secs(90),
        crash_points: true,
        serve_exe: env!("CARGO_BIN_EXE_winmdm-load").into(),
        progress: false,
    };
    let report = chaos::run(&opts).await.expect("chaos run");
    let mut text = Vec::new();
    report.print(&mut text).expect("print");
    let text = String::from_utf8_lossy(&text);
    assert_eq!(report.kills, 3, "{text}");
    assert!(report.enrolled > 0, "{text}");
    assert!(report.violations.is_empty(), "{text}");
    for invariant in [
        "command_delivered",
        "answered_status_stored",
        "no_command_twice",
    ] {
        assert!(
            report.passed.get(invariant).copied().unwrap_or(0) > 0,
            "{invariant} was never checked: {text}"
        );
    }
}
