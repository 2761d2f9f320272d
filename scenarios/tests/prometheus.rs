//! The metrics as an operator collects them: `winmdm serve` runs the happy path twice
//! (two devices enroll, sync and answer a queued command), a real Prometheus scrapes
//! `/metrics` over HTTPS with the `--metrics-token` and the server's CA, and its query
//! API reads the counters back with the values the traffic implies.
//!
//! Needs the `prometheus` binary (Debian's `prometheus` package; `.ci/run` installs it):
//! under `CI=true` its absence fails the test, elsewhere the test says why and skips.

mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills a child process when dropped (a failed assertion leaves nothing running).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    let found = Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| PathBuf::from("prometheus"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn happy_path(url: &str, ca: &Path, secret: &str, token: &str) {
    let suite = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"));
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        .arg(suite.join("01-happy-path.toml"))
        .args([
            "--server",
            url,
            "--enroll-secret",
            secret,
            "--admin-token",
            token,
        ])
        .arg("--ca-file")
        .arg(ca)
        .output()
        .expect("run the harness");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GET over plain HTTP/1.0 (Prometheus listens on loopback): the response body.
fn http_get(addr: &str, path_and_query: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(tcp, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant query's first sample, once Prometheus has one.
fn query(prometheus: &str, promql: &str) -> Option<f64> {
    let body = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", percent_encode(promql)),
    )?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    assert_eq!(v["status"], "success", "{promql}: {v}");
    let sample = v["data"]["result"].as_array()?.first()?.clone();
    sample["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_metrics_and_reads_back_the_traffic() {
    let Some(prometheus) = prometheus_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the prometheus binary is required under CI=true (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: no prometheus binary on PATH (apt-get install prometheus)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "prometheus-enroll-secret";
    let token = "prometheus-admin-token";
    // Prometheus gets the token that opens /metrics only.
    let metrics_token = "prometheus-metrics-token";
    let config = dir.path().join("winmdm.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata-dir = {:?}\nenroll-secret = {secret:?}\n\
             admin-token = {token:?}\nmetrics-token = {metrics_token:?}\n\
             enroll-rate-per-client = 0\n",
            dir.path().join("data").display().to_string(),
        ),
    )
    .expect("write config");
    let started = serve::spawn(
        Command::new(env!("CARGO_BIN_EXE_winmdm"))
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(Stdio::null()),
    );
    let _server = Killed(started.child);
    let (stdout, addr) = (started.stdout, started.addr);
    let url = format!("https://{addr}");
    let ca = dir.path().join("data").join("tls-cert.pem");

    happy_path(&url, &ca, secret, token);
    happy_path(&url, &ca, secret, token);

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, metrics_token).expect("write token");
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: winmdm\n    scheme: https\n    metrics_path: /metrics\n\
             \x20   authorization:\n      type: Bearer\n      credentials_file: {}\n\
             \x20   tls_config:\n      ca_file: {}\n\
             \x20   static_configs:\n      - targets: [\"{addr}\"]\n",
            token_file.display(),
            ca.display()
        ),
    )
    .expect("write prometheus.yml");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
    let _prometheus = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let base = format!("127.0.0.1:{port}");

    // Up to two minutes for Prometheus to start and scrape (not a timed assertion: it
    // is how long the test waits before saying the scrape never happened).
    let deadline = Instant::now() + Duration::from_secs(120);
    let issued = r#"sum(winmdm_enrollments_total{request_type="issue",outcome="issued"})"#;
    let value = loop {
        if let Some(v) = query(&base, issued) {
            break v;
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            let up = query(&base, "up");
            panic!("Prometheus never scraped the server (up = {up:?}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(value, 2.0, "two devices enrolled");
    assert_eq!(query(&base, r#"up{job="winmdm"}"#), Some(1.0));
    // Each run's one queued command was acknowledged (a gauge read from the store).
    let acked = r#"winmdm_command_deliveries{state="acknowledged"}"#;
    assert_eq!(query(&base, acked), Some(2.0));
    let sessions = query(&base, "winmdm_omadm_sessions_total");
    assert!(sessions.is_some_and(|n| n >= 2.0), "{sessions:?}");
    let tls = r#"sum(winmdm_tls_handshakes_total{kind=~"full|resumed"})"#;
    let handshakes = query(&base, tls);
    assert!(handshakes.is_some_and(|n| n >= 2.0), "{handshakes:?}");
    let queued =
        r#"winmdm_http_requests_total{route="/api/v1/devices/{device_id}/commands",status="201"}"#;
    assert_eq!(query(&base, queued), Some(2.0));
    drop(stdout);
}
