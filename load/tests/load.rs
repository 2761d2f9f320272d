//! A small load run through the library and through the CLI: counts only, no timing.

use std::time::Duration;

use winmdm_load::load::{self, LoadOptions};
use winmdm_load::{keypool, stats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_load_enrolls_and_checks_in_every_device() {
    let pool = tempfile::tempdir().expect("temp dir");
    let report = run_embedded(pool.path(), 5, 4, 3).await;
    assert_eq!(report.stats.errors, Default::default(), "errors by kind");
    assert_eq!(report.enrolled, 5);
    assert_eq!(report.devices_checked_in, 5);
    assert!(report.checkins >= 5, "{} check-ins", report.checkins);
    assert!(report.syncml_messages >= report.checkins);
    assert_eq!(report.keys_generated, 5);
    for endpoint in stats::ENDPOINTS {
        assert!(
            report
                .stats
                .latency
                .get(endpoint)
                .is_some_and(|h| h.count() > 0),
            "no latency recorded for {endpoint}"
        );
    }
    // The cached keys are reused.
    let again = keypool::KeyPool::open(pool.path(), 5, &|_, _| {}).expect("pool");
    assert_eq!(again.generated, 0);
    assert_eq!(again.len(), 5);
}

/// Every check-in opens a new connection; after a device's first one (a full handshake,
/// its enrollment having used no client certificate) each resumes the TLS session of the
/// last, as Windows does. Counts only: a check-in that stopped resuming makes a full
/// handshake, so the two counts move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_devices_resume_their_tls_session() {
    let pool = tempfile::tempdir().expect("temp dir");
    let report = run_embedded(pool.path(), 3, 3, 2).await;
    assert_eq!(report.stats.errors, Default::default(), "errors by kind");
    assert_eq!(report.devices_checked_in, 3);
    assert!(report.checkins >= 6, "{} check-ins", report.checkins);
    assert_eq!(report.checkin_full_handshakes, 3, "one per device");
    assert_eq!(report.checkin_resumptions, report.checkins - 3);
}

/// A load run of `devices` against an embedded server, on the compressed poll schedule.
async fn run_embedded(
    key_pool: &std::path::Path,
    devices: usize,
    concurrency: usize,
    secs: u64,
) -> load::LoadReport {
    let e = winmdm::embedded::start().await.expect("embedded server");
    let opts = LoadOptions {
        devices,
        concurrency,
        duration: Duration::from_secs(secs),
        time_scale: 14_400.0,
        key_pool_dir: key_pool.to_path_buf(),
        checkin_once: false,
        progress: false,
        timeline: false,
    };
    let report = load::run(&e.target, &opts).await.expect("load run");
    e.control.shutdown().await;
    report
}

#[test]
fn load_json_output_ends_with_the_figures() {
    let pool = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_winmdm-load"))
        .args([
            "load",
            "--devices",
            "3",
            "--concurrency",
            "3",
            "--duration",
            "2",
            "--time-scale",
            "14400",
            "--json",
            "--key-pool",
        ])
        .arg(pool.path())
        .output()
        .expect("run winmdm load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "winmdm load failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    for key in [
        "devices",
        "enrollments_per_s",
        "syncml_msgs_per_s",
        "errors",
        "rss_bytes_per_device",
        "checkin_resumptions",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {last}");
    }
    assert_eq!(v["devices"], 3);
    assert_eq!(v["enrolled"], 3);
    assert_eq!(v["errors"], 0);
}

/// A tiny `winmdm bench`: every phase runs and the figures add up (no timing checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_every_phase_and_stores_every_answer() {
    let pool = tempfile::tempdir().expect("temp dir");
    let opts = winmdm_load::bench::BenchOptions {
        devices: 4,
        enroll_devices: 6,
        concurrency: 3,
        syncml_devices: 4,
        sign_time: Duration::from_millis(100),
        syncml_time: Duration::from_millis(500),
        key_pool_dir: pool.path().to_path_buf(),
        progress: false,
        timeline: true,
        openssl: false,
        // The RSA server certificate here; the other runs use the default ECDSA one.
        tls_key_type: winmdm_load::bench::TlsKeyType::Rsa,
    };
    let report = winmdm_load::bench::run(&opts).await.expect("bench");
    // `--html`: phase (d)'s charts, each with data points.
    let page = winmdm_load::chart::bench_page(&report);
    assert!(page.contains("Phase (d): 4 devices"), "{page}");
    for id in ["throughput", "latency-management", "errors", "memory"] {
        let chart = page
            .split(&format!(r#"id="{id}""#))
            .nth(1)
            .and_then(|c| c.split("</figure>").next())
            .unwrap_or_else(|| panic!("no chart {id}"));
        assert!(
            chart.contains(r#"class="point""#),
            "{id} has no data points"
        );
    }
    assert!(report.rsa2048_sign_per_s > 0.0);
    assert_eq!((report.enroll.enrolled, report.enroll.errors), (6, 0));
    assert_eq!(report.enroll_device_signing.enrolled, 6);
    // The server's own threads were found and did the enrollment work.
    assert!(!report.enroll.server_cpu.is_zero());
    let sqlite = &report.syncml[0];
    assert_eq!(sqlite.backend, "sqlite");
    assert_eq!(sqlite.errors, 0);
    assert!(sqlite.commands > 0);
    assert_eq!(sqlite.acknowledged, sqlite.commands, "every answer stored");
    assert_eq!(sqlite.messages, 2 * sqlite.sessions);
    // The same devices again, a new connection per session: with the TLS session cache
    // kept, then with a full handshake each time.
    for connect in [
        winmdm_load::bench::Connect::New,
        winmdm_load::bench::Connect::NewFullHandshake,
    ] {
        let f = report
            .syncml
            .iter()
            .find(|s| s.backend == "sqlite" && s.connect == connect)
            .unwrap_or_else(|| panic!("no {} phase", connect.label()));
        assert_eq!(f.errors, 0, "{}", connect.label());
        assert!(f.sessions > 0, "{}", connect.label());
        assert_eq!(f.acknowledged, f.commands, "{}", connect.label());
        // Each session on a new connection offers the session the last one left.
        let offered = if connect == winmdm_load::bench::Connect::New {
            f.sessions
        } else {
            0
        };
        assert_eq!(f.resumptions_offered, offered, "{}", connect.label());
    }
    assert_eq!(report.devices.devices_checked_in, 4);
    let json = report.to_json();
    for key in [
        "enroll_per_s",
        "rsa2048_sign_per_s",
        "enroll_ratio",
        "syncml_msgs_per_s",
        "enroll_server_capacity_ratio",
        "syncml_server_capacity_msgs_per_s",
        "syncml_msgs_per_s_new_connection",
        "syncml_msgs_per_s_new_connection_full_handshake",
        "full_handshake_server_us",
    ] {
        assert!(json.get(key).is_some_and(|v| v.is_number()), "{key}");
    }
    assert_eq!(json["tls_key_type"], "rsa");
}

#[test]
fn completions_and_man_page() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_winmdm-load"))
            .args(args)
            .output()
            .expect("run winmdm-load");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_winmdm__load()") && bash.contains("bench"),
        "{bash}"
    );
    assert!(run(&["man"]).contains(".TH winmdm-load 1"));
}
