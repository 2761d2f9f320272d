//! The server's logs, as an operator runs it: `winmdm serve --config FILE` with JSON
//! logs at `trace`, the most verbose level (dependencies' lines included). Enrollment
//! (Orbit, a node key, a user account, the federated login page), management sessions
//! and admin calls leave no secret in any line, and every line logged while a request
//! is handled carries its request id.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

struct Secrets {
    enroll_secret: String,
    admin_token: String,
    password: String,
}

const USER_ENROLLMENT: &str = r#"
name = "user-enrollment"

[[steps]]
step = "register_device_with_management"

[[steps]]
step = "discovery_probe"

[[steps]]
step = "discover"

[[steps]]
step = "get_policies"

[[steps]]
step = "generate_key_pair"

[[steps]]
step = "request_security_token"

[[steps]]
step = "management_session"
min_round_trips = 1
"#;

fn harness(url: &str, ca: &Path, s: &Secrets, paths: &[&Path], extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        .args(paths)
        .args([
            "--server",
            url,
            "--admin-token",
            &s.admin_token,
            "--ca-file",
        ])
        .arg(ca)
        .args(extra)
        .output()
        .expect("run the harness");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
}

fn node_key_out_of_band(url: &str, ca: &Path, secret: &str) -> String {
    let ca = std::fs::read(ca).expect("CA file");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let tls = fake_windows_client::TlsOptions {
            ca_pem: Some(ca),
            insecure: false,
        };
        let mut d =
            fake_windows_client::Device::new(fake_windows_client::DeviceProfile::random(), tls)?;
        d.orbit_enroll(url, secret).await
    })
    .expect("orbit enroll")
}

#[test]
fn logs_at_every_level_carry_request_ids_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Secrets {
        enroll_secret: unique("enroll-secret"),
        admin_token: unique("admin-token"),
        password: unique("password"),
    };
    let config = dir.path().join("winmdm.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata-dir = {:?}\nenroll-secret = {:?}\nadmin-token = {:?}\n\
             enroll-user = [\"alice:{}\"]\nenroll-rate-per-client = 0\nlog-format = \"json\"\n",
            dir.path().join("data").display().to_string(),
            s.enroll_secret,
            s.admin_token,
            s.password
        ),
    )
    .expect("write config");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("winmdm serve");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    let addr = line
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_string();
    let url = format!("https://{addr}");
    let ca = dir.path().join("data").join("tls-cert.pem");

    let suite = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"));
    let happy = suite.join("01-happy-path.toml");
    let user = dir.path().join("user-enrollment.toml");
    std::fs::write(&user, USER_ENROLLMENT).expect("write scenario");
    harness(
        &url,
        &ca,
        &s,
        &[&happy],
        &["--enroll-secret", &s.enroll_secret],
    );
    let node_key = node_key_out_of_band(&url, &ca, &s.enroll_secret);
    harness(&url, &ca, &s, &[&happy], &["--token", &node_key]);
    for policy in ["OnPremise", "Federated"] {
        harness(
            &url,
            &ca,
            &s,
            &[&user],
            &[
                "--auth-policy",
                policy,
                "--username",
                "alice",
                "--password",
                &s.password,
            ],
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(stdout);

    let text = std::fs::read_to_string(&log_path).expect("read log");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 50, "trace logging captured: {text}");
    let bearer = format!("Bearer {}", s.admin_token);
    for (what, secret) in [
        ("the enroll secret", s.enroll_secret.as_str()),
        ("the admin token", s.admin_token.as_str()),
        ("the Authorization header", bearer.as_str()),
        ("the node key", node_key.as_str()),
        ("the user's password", s.password.as_str()),
    ] {
        if let Some(l) = lines.iter().find(|l| l.contains(secret)) {
            panic!("{what} is in the log: {l}");
        }
    }
    let mut in_requests = 0;
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
        let target = v["target"].as_str().unwrap_or_default();
        // What the handlers log is logged within a request.
        if target.starts_with("winmdm_server::http::")
            || target.starts_with("winmdm_server::service::")
        {
            let id = v["span"]["request_id"].as_str().unwrap_or_default();
            assert_eq!(id.len(), 32, "a line without its request id: {l}");
            in_requests += 1;
        }
    }
    assert!(in_requests > 10, "lines within requests: {text}");
}
