//! The harness against a separately started server process, as users run it against
//! theirs: the whole suite passes against the reference server, and a deliberately
//! broken response fails the step that received it, with a useful message in the
//! terminal, the JUnit report and the HTML report.

mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct ServerProcess {
    child: Child,
    /// Kept open for the server's lifetime.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    url: String,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(extra: &[&str]) -> ServerProcess {
    let dir = tempfile::tempdir().unwrap();
    let database = std::env::var("WINMDM_TEST_POSTGRES_URL").ok().map(|pg| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(winmdm_server::db::create_scratch_postgres_database(&pg))
            .unwrap()
    });
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--data-dir".to_string(),
        dir.path().display().to_string(),
        "--enroll-secret".to_string(),
        "ext-secret".to_string(),
        "--admin-token".to_string(),
        "ext-admin".to_string(),
        "--enroll-rate-per-client".to_string(),
        "0".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    if let Some(url) = &database {
        args.extend(["--database-url".to_string(), url.clone()]);
    }
    let started = serve::spawn(
        Command::new(env!("CARGO_BIN_EXE_winmdm"))
            .arg("serve")
            .args(&args)
            .stderr(Stdio::null()),
    );
    ServerProcess {
        child: started.child,
        _stdout: started.stdout,
        url: format!("https://{}", started.addr),
        ca: dir.path().join("tls-cert.pem"),
        _dir: dir,
    }
}

fn run_harness(server: &ServerProcess, paths: &[&Path], extra: &[String]) -> (i32, String) {
    run_harness_with(server, paths, &["--enroll-secret", "ext-secret"], extra)
}

fn run_harness_with(
    server: &ServerProcess,
    paths: &[&Path],
    auth: &[&str],
    extra: &[String],
) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        .args(paths)
        .args([
            "--server",
            &server.url,
            "--admin-token",
            "ext-admin",
            "--ca-file",
        ])
        .arg(&server.ca)
        .args(auth)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A node key obtained through Orbit outside the harness (a token handed to a device).
fn node_key_out_of_band(server: &ServerProcess) -> String {
    let ca = std::fs::read(&server.ca).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls = fake_windows_client::TlsOptions {
            ca_pem: Some(ca),
            insecure: false,
        };
        let mut d =
            fake_windows_client::Device::new(fake_windows_client::DeviceProfile::random(), tls)?;
        d.orbit_enroll(&server.url, "ext-secret").await
    })
    .unwrap()
}

fn suite() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"))
}

/// The whole suite passes against a separately started server, and its capture replays
/// against another fresh one with every exchange answered alike (renewals re-signed
/// with the replayed certificate, unenrollment sessions over mTLS).
#[test]
fn whole_suite_passes_against_a_separately_started_server_and_its_capture_replays_cleanly() {
    // Half-sent requests closed after 2 s: the slow-request attack scenario waits for it.
    let quick = [
        "--header-read-timeout-secs",
        "2",
        "--body-read-timeout-secs",
        "2",
    ];
    let server = start_server(&quick);
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("suite.har");
    let (code, out) = run_harness(
        &server,
        &[&suite()],
        &["--capture".to_string(), har.display().to_string()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    drop(server);

    let fresh = start_server(&quick);
    let replay = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("replay")
        .arg(&har)
        .args([
            "--server",
            &fresh.url,
            "--enroll-secret",
            "ext-secret",
            "--admin-token",
            "ext-admin",
            "--ca-file",
        ])
        .arg(&fresh.ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&replay.stdout).into_owned();
    assert!(text.contains(" 0 differ"), "{text}");
    assert_eq!(replay.status.code(), Some(0), "{text}");
}

#[test]
fn a_broken_response_fails_its_step_in_terminal_junit_and_html() {
    let server = start_server(&["--inject-fault", "discover-wrong-action"]);
    let reports = tempfile::tempdir().unwrap();
    let junit = reports.path().join("junit.xml");
    let html = reports.path().join("report.html");
    let happy = suite().join("01-happy-path.toml");
    let (code, out) = run_harness(
        &server,
        &[&happy],
        &[
            "--junit".into(),
            junit.display().to_string(),
            "--html".into(),
            html.display().to_string(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    let failing = out
        .lines()
        .find(|l| l.contains("FAIL") && l.contains("discover"))
        .unwrap_or_default();
    assert!(
        failing.contains("a:Action"),
        "terminal names the wrong element: {out}"
    );
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(
        junit.contains("<failure") && junit.contains("discover") && junit.contains("a:Action"),
        "{junit}"
    );
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(
        html.contains("class=\"step failed\"") && html.contains("a:Action"),
        "HTML marks the failed step"
    );
}

#[test]
fn with_a_token_the_orbit_steps_are_skipped() {
    // A server without Orbit endpoints is tested with a DeviceEnrollmentUserToken given
    // directly; here the token is a node key obtained out of band.
    let server = start_server(&[]);
    let token = node_key_out_of_band(&server);
    let happy = suite().join("01-happy-path.toml");
    let (code, out) = run_harness_with(&server, &[&happy], &["--token", &token], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("skip orbit_enroll") && out.contains("enrolling with --token"),
        "{out}"
    );
    // The Orbit steps were incidental: the scenario itself passed.
    assert!(
        out.contains("scenarios: 1 passed, 0 failed, 0 skipped"),
        "{out}"
    );
}

#[test]
fn on_premise_username_token_reaches_the_server() {
    // The reference server enrolls with node keys only: a UsernameToken is refused with
    // an s:Authentication fault, which shows the credential travelled as WS-Security
    // UsernameToken and the fault was parsed.
    let server = start_server(&[]);
    let happy = suite().join("01-happy-path.toml");
    let (code, out) = run_harness_with(
        &server,
        &[&happy],
        &[
            "--enroll-secret",
            "ext-secret",
            "--auth-policy",
            "OnPremise",
            "--username",
            "user@example.org",
            "--password",
            "secret",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("FAIL") && l.contains("get_policies"))
        .unwrap_or_default();
    assert!(
        line.contains("s:Authentication") && line.contains("UsernameToken"),
        "{out}"
    );
}

#[test]
fn orbit_steps_are_skipped_when_the_server_has_none() {
    // Pointing --server at a prefix without the Orbit endpoints (404) stands in for a
    // server that has none: the Orbit steps are skipped, not failed; enrollment without
    // a token or credentials is skipped saying what to pass; the wrong-enroll-secret
    // scenario (about Orbit) is skipped, and the unknown-token one still runs and passes.
    let server = start_server(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        // First: the Orbit enroll expecting 401 meets the 404 itself.
        .arg(suite().join("02-wrong-enroll-secret.toml"))
        .arg(suite().join("01-happy-path.toml"))
        .arg(suite().join("03-unknown-token-at-policy.toml"))
        .args([
            "--server",
            &format!("{}/no-orbit-here", server.url),
            "--enroll-secret",
            "x",
        ])
        .args([
            "--discovery-url",
            &format!("{}/api/mdm/microsoft/discovery", server.url),
        ])
        .arg("--ca-file")
        .arg(&server.ca)
        .output()
        .unwrap();
    let code = out.status.code();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("skip orbit_enroll")
            && out.contains("the server has no Orbit endpoints (HTTP 404)"),
        "{out}"
    );
    assert!(out.contains("skip orbit_config"), "{out}");
    let rdwm = out
        .lines()
        .find(|l| l.contains("register_device_with_management"))
        .unwrap_or_default();
    assert!(rdwm.contains("skip") && rdwm.contains("--token"), "{out}");
    assert!(out.contains("SKIP happy-path"), "{out}");
    assert!(out.contains("SKIP wrong-enroll-secret"), "{out}");
    assert!(out.contains("PASS unknown-token-at-policy"), "{out}");
    assert!(
        out.contains("scenarios: 1 passed, 0 failed, 2 skipped"),
        "{out}"
    );
}

/// Enrollment without Orbit, authenticated by a user (the server's `--enroll-user`).
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
step = "verify_certificate"

[[steps]]
step = "check_device_state"

[[steps]]
step = "management_session"
min_round_trips = 1
"#;

#[test]
fn users_enroll_on_premise_with_a_username_token_and_federated_through_the_login_page() {
    let server = start_server(&["--enroll-user", "alice:wonderland"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-enrollment.toml");
    std::fs::write(&file, USER_ENROLLMENT).unwrap();
    for policy in ["OnPremise", "Federated"] {
        let (code, out) = run_harness_with(
            &server,
            &[&file],
            &[
                "--auth-policy",
                policy,
                "--username",
                "alice",
                "--password",
                "wonderland",
            ],
            &[],
        );
        assert_eq!(code, 0, "{policy}: {out}");
        // With only Federated offered, a pass means the token came from the login page
        // (an empty token would be refused at GetPolicies).
        assert!(
            out.contains("ok   request_security_token"),
            "{policy}: {out}"
        );
    }
    let (code, out) = run_harness_with(
        &server,
        &[&file],
        &[
            "--auth-policy",
            "OnPremise",
            "--username",
            "alice",
            "--password",
            "wrong",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("FAIL") && l.contains("get_policies"))
        .unwrap_or_default();
    assert!(line.contains("invalid user name or password"), "{out}");
    let (code, out) = run_harness_with(
        &server,
        &[&file],
        &[
            "--auth-policy",
            "Federated",
            "--username",
            "alice",
            "--password",
            "wrong",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("FAIL") && l.contains("discover")),
        "{out}"
    );
}

#[test]
fn a_given_token_is_used_even_when_discovery_says_federated() {
    // A device handed an access token (RegisterDeviceWithManagement) enrolls with it:
    // no login page, even though the server answers Discover with Federated.
    let server = start_server(&["--enroll-user", "alice:wonderland"]);
    let token = node_key_out_of_band(&server);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-enrollment.toml");
    let with_check = format!(
        "{USER_ENROLLMENT}\n[[steps]]\nstep = \"check_response\"\nof = \"discover\"\npath = \"DiscoverResult/AuthPolicy\"\nequals = \"Federated\"\n"
    );
    std::fs::write(&file, with_check).unwrap();
    let (code, out) = run_harness_with(
        &server,
        &[&file],
        &["--auth-policy", "Federated", "--token", &token],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok   request_security_token"), "{out}");
}

/// Scenarios written for a management authentication run against an external server
/// only when it is declared in that mode (`--management-auth`); otherwise they are
/// skipped with the reason, never passed.
#[test]
fn digest_scenarios_run_against_an_external_server_declared_in_digest_mode() {
    let server = start_server(&["--management-auth", "digest"]);
    let files: Vec<PathBuf> = ["33", "34", "35", "36", "37"]
        .iter()
        .map(|n| {
            std::fs::read_dir(suite())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(n))
                .unwrap()
        })
        .collect();
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, out) = run_harness(&server, &paths, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("scenarios: 0 passed, 0 failed, 5 skipped")
            && out.contains("needs a server in --management-auth digest: the server under test is declared mtls"),
        "{out}"
    );
    // Declared: the digest scenarios run, the ones about certificates are skipped.
    let declared = ["--management-auth".to_string(), "digest".to_string()];
    let certificates = suite().join("05-management-without-certificate.toml");
    let mut with_certificates = paths.clone();
    with_certificates.push(&certificates);
    let (code, out) = run_harness(&server, &with_certificates, &declared);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("scenarios: 4 passed, 0 failed, 2 skipped")
            && out.contains("SKIP digest-bad-certificate")
            && out.contains("needs a server in --management-auth mtls-or-digest")
            && out.contains("SKIP management-without-certificate"),
        "{out}"
    );
}
