//! The server's logs, as an operator runs it: `winmdm serve --config FILE` with JSON
//! logs at `trace`, the most verbose level (dependencies' lines included). Enrollment
//! (Orbit, a node key, a user account, the federated login page), management sessions
//! and admin calls leave no secret in any line, and every line logged while a request
//! is handled carries its request id.

mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// A `winmdm serve --config` logging JSON at `trace` to a file.
struct Served {
    child: std::process::Child,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    url: String,
    ca: PathBuf,
    log_path: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Stops the server and returns its log lines.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log_path).expect("read log")
    }
}

fn serve(dir: &Path, s: &Secrets, extra_config: &str) -> Served {
    let config = dir.join("winmdm.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata-dir = {:?}\nenroll-secret = {:?}\nadmin-token = {:?}\n\
             enroll-user = [\"alice:{}\"]\nenroll-rate-per-client = 0\nlog-format = \"json\"\n{extra_config}",
            dir.join("data").display().to_string(),
            s.enroll_secret,
            s.admin_token,
            s.password
        ),
    )
    .expect("write config");
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let started = serve::spawn(
        Command::new(env!("CARGO_BIN_EXE_winmdm"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "trace")
            .stderr(log),
    );
    Served {
        child: started.child,
        _stdout: started.stdout,
        url: format!("https://{}", started.addr),
        ca: dir.join("data").join("tls-cert.pem"),
        log_path,
    }
}

fn secrets() -> Secrets {
    Secrets {
        enroll_secret: unique("enroll-secret"),
        admin_token: unique("admin-token"),
        password: unique("password"),
    }
}

#[test]
fn logs_at_every_level_carry_request_ids_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = secrets();
    let served = serve(dir.path(), &s, "");
    let (url, ca) = (served.url.clone(), served.ca.clone());

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
    let text = served.stop();
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

/// Every `AAUTHSECRET` the server provisioned in the captured enrollments (the
/// provisioning documents inside the RSTRs' BinarySecurityToken), with its
/// `AAUTHNAME`.
fn provisioned_digest_secrets(har: &Path) -> Vec<(String, String)> {
    use base64::Engine;
    let har: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(har).expect("read HAR")).expect("HAR");
    let token = regex::Regex::new(r"BinarySecurityToken[^>]*>([A-Za-z0-9+/=\s]+)<").unwrap();
    let parm =
        |name: &str| regex::Regex::new(&format!(r#"name="{name}"\s+value="([^"]*)""#)).unwrap();
    let (name_re, secret_re) = (parm("AAUTHNAME"), parm("AAUTHSECRET"));
    let mut out = Vec::new();
    for e in har["log"]["entries"].as_array().expect("entries") {
        let text = e["response"]["content"]["text"]
            .as_str()
            .unwrap_or_default();
        for c in token.captures_iter(text) {
            let b64: String = c[1].split_whitespace().collect();
            let Ok(doc) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                continue;
            };
            let doc = String::from_utf8_lossy(&doc);
            // Each APPAUTH characteristic: its name and secret, in order.
            let names = name_re.captures_iter(&doc).map(|c| c[1].to_string());
            let secrets = secret_re.captures_iter(&doc).map(|c| c[1].to_string());
            out.extend(names.zip(secrets).filter(|(_, s)| s != "dummy"));
        }
    }
    out
}

/// A server in `--management-auth digest` at `trace`: the digest scenarios (sessions
/// challenged and answered, a wrong secret, a replayed nonce, an unknown DeviceID) and
/// a device managing by digest leave neither a provisioned `AAUTHSECRET` nor the
/// stored `B64(MD5(name:secret))` in any log line.
#[test]
fn digest_secrets_never_reach_the_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = secrets();
    let served = serve(dir.path(), &s, "management-auth = \"digest\"\n");
    let (url, ca) = (served.url.clone(), served.ca.clone());
    let suite = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"));
    let digest_scenarios: Vec<PathBuf> = [
        "33-digest-happy-path",
        "34-digest-wrong-secret",
        "35-digest-replayed-nonce",
        "36-digest-unknown-device",
    ]
    .iter()
    .map(|n| suite.join(format!("{n}.toml")))
    .collect();
    let paths: Vec<&Path> = digest_scenarios.iter().map(PathBuf::as_path).collect();
    let har = dir.path().join("digest.har");
    let har_arg = har.display().to_string();
    harness(
        &url,
        &ca,
        &s,
        &paths,
        &[
            "--enroll-secret",
            &s.enroll_secret,
            "--management-auth",
            "digest",
            "--capture",
            &har_arg,
        ],
    );
    let mut provisioned = provisioned_digest_secrets(&har);
    assert!(
        provisioned.len() >= 4,
        "one secret per scenario: {provisioned:?}"
    );

    // A device of its own, managing by digest for two sessions.
    let ca_pem = std::fs::read(&ca).expect("CA file");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let own = rt
        .block_on(async {
            let tls = fake_windows_client::TlsOptions {
                ca_pem: Some(ca_pem),
                insecure: false,
            };
            let mut d = fake_windows_client::Device::new(
                fake_windows_client::DeviceProfile::random(),
                tls,
            )?;
            let key = d.orbit_enroll(&url, &s.enroll_secret).await?;
            let upn = d.profile().upn.clone();
            d.register_device_with_management(
                &upn,
                &format!("{url}/EnrollmentServer/Discovery.svc"),
                &key,
            )
            .await?;
            d.set_management_auth(fake_windows_client::ManagementAuth::Digest);
            d.sync().await?;
            d.sync().await?;
            Ok::<_, fake_windows_client::ClientError>(d.enrollment().and_then(|e| e.digest.clone()))
        })
        .expect("a device managed by digest")
        .expect("digest credentials provisioned");
    provisioned.push((own.name.clone(), own.secret.clone()));

    let text = served.stop();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 50, "trace logging captured: {text}");
    assert!(
        text.contains("management"),
        "the management route was logged: {text}"
    );
    for (name, secret) in &provisioned {
        let stored = fake_windows_client::digest::inner_hash(name, secret);
        for (what, value) in [
            ("an AAUTHSECRET", secret),
            ("a stored digest hash", &stored),
        ] {
            if let Some(l) = lines.iter().find(|l| l.contains(value.as_str())) {
                panic!("{what} of {name} is in the log: {l}");
            }
        }
    }
}
