//! Reports, capture, replay and snapshots of `winmdm run`, against the embedded server
//! over real sockets. The HTML report is checked in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;

use winmdm::report::canon::Origins;
use winmdm::report::Ran;
use winmdm::runner::run_scenario;
use winmdm::{embedded, har, html, replay, scenario, snapshot};

/// Fails at step 6: the server accepts the node key the step expects it to refuse.
const MUST_FAIL: &str = r#"
name = "must-fail"
description = "expects a fault that a conforming server does not send"
[[steps]]
step = "orbit_enroll"
[[steps]]
step = "orbit_config"
[[steps]]
step = "register_device_with_management"
[[steps]]
step = "discovery_probe"
[[steps]]
step = "discover"
[[steps]]
step = "get_policies"
expect_fault = "s:Authentication"
"#;

/// Enrollment and one management session, without admin API calls (which the device's
/// capture does not contain).
const ENROLL_AND_SYNC: &str = r#"
name = "enroll-and-sync"
[[steps]]
step = "orbit_enroll"
[[steps]]
step = "orbit_config"
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
step = "orbit_config"
expect_notification = false
[[steps]]
step = "management_session"
min_round_trips = 1
[[steps]]
step = "management_session"
identity = "none"
expect_status = 401
"#;

fn suite(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite")).join(file)
}

async fn run_text(target: &winmdm::runner::Target, text: &str, file: &str) -> Ran {
    let s = scenario::parse(text, Path::new(file)).unwrap();
    let started = time::OffsetDateTime::now_utc();
    let outcome = run_scenario(target, &s).await;
    Ran {
        file: PathBuf::from(file),
        started,
        outcome,
    }
}

async fn run_file(target: &winmdm::runner::Target, file: &Path) -> Ran {
    let s = scenario::load(file).unwrap();
    let started = time::OffsetDateTime::now_utc();
    let outcome = run_scenario(target, &s).await;
    Ran {
        file: file.to_path_buf(),
        started,
        outcome,
    }
}

#[test]
fn junit_report_of_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("must-fail.toml");
    // XML-special characters in the name must come out escaped.
    std::fs::write(
        &failing,
        MUST_FAIL.replace("name = \"must-fail\"", "name = \"must-fail <&\\\"'>\""),
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        .arg(suite("02-wrong-enroll-secret.toml"))
        .arg(&failing)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("2"));
    assert_eq!(root.attribute("failures"), Some("1"));
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1);
    let cases: Vec<_> = suites[0]
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2);
    assert_eq!(
        cases[0].attribute("classname"),
        Some("02-wrong-enroll-secret")
    );
    assert_eq!(cases[0].attribute("name"), Some("wrong-enroll-secret"));
    assert!(cases[0].children().all(|n| !n.has_tag_name("failure")));
    assert_eq!(cases[1].attribute("classname"), Some("must-fail"));
    assert_eq!(cases[1].attribute("name"), Some("must-fail <&\"'>"));
    let t: f64 = cases[1].attribute("time").unwrap().parse().unwrap();
    assert!(t > 0.0);
    let failure = cases[1]
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("a failure element");
    let message = failure.attribute("message").unwrap();
    assert!(message.starts_with("step 6 get_policies: "), "{message}");
    assert!(
        message.contains("expected SOAP fault s:Authentication"),
        "{message}"
    );
    let log = failure.text().unwrap();
    assert!(log.contains("FAIL get_policies"), "{log}");
    assert!(log.contains("ok   orbit_enroll"), "{log}");
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_in_headless_chromium() {
    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed (.ci/run installs it): cannot check the HTML report");
        }
        eprintln!("skipped: chromium is not installed (apt-get install chromium), set CHROMIUM=path to use another");
        return;
    };
    let server = embedded::start().await.unwrap();
    let ran = vec![
        run_file(&server.target, &suite("01-happy-path.toml")).await,
        run_text(&server.target, MUST_FAIL, "must-fail.toml").await,
    ];
    server.control.shutdown().await;
    assert!(ran[0].outcome.passed());
    assert!(!ran[1].outcome.passed());
    let exchanges: usize = ran
        .iter()
        .flat_map(|r| &r.outcome.steps)
        .map(|s| s.exchanges.len())
        .sum();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let text = html::render("winmdm test report", &server.target.server_url, &ran);
    assert!(!text.contains("<script"), "the report is script-free");
    assert!(
        !text.contains(" src="),
        "the report loads no external assets"
    );
    std::fs::write(&report, text).unwrap();

    let profile = dir.path().join("profile");
    let mut cmd = tokio::process::Command::new(&browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("--dump-dom")
    .arg(format!("file://{}", report.display()))
    .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finished within 2 minutes")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("</html>"), "no DOM dumped: {dom}");

    let sections = regex::Regex::new(r#"<section class="scenario (passed|failed)""#).unwrap();
    let states: Vec<_> = sections
        .captures_iter(&dom)
        .map(|c| c[1].to_string())
        .collect();
    assert_eq!(states, ["passed", "failed"]);
    // The failed step: the get_policies arrow, marked and red.
    let failed =
        regex::Regex::new(r#"<g id="step-must-fail-6" class="step failed"[^>]*>"#).unwrap();
    assert!(failed.is_match(&dom), "failed step element missing");
    assert_eq!(dom.matches(r#"class="step failed""#).count(), 1);
    assert!(dom.contains(r#"id="log-must-fail-6""#));
    assert!(dom.contains(r#"<li class="step-log failed" id="log-must-fail-6">"#));
    let arrow =
        regex::Regex::new(r#"id="step-must-fail-6"[^>]*>.*?<line [^>]*stroke="\#c0392b""#).unwrap();
    assert!(arrow.is_match(&dom), "the failed arrow is not red");
    // One arrow or note per step of each scenario.
    let steps: usize = ran.iter().map(|r| r.outcome.steps.len()).sum();
    assert_eq!(dom.matches(r#"<g id="step-"#).count(), steps);
    // Every exchange is viewable.
    assert_eq!(
        dom.matches(r#"<details class="exchange""#).count(),
        exchanges
    );
    assert!(exchanges >= 10);
    // The management sessions show the client certificate thumbprint.
    let thumb = ran[0]
        .outcome
        .steps
        .iter()
        .find_map(|s| s.client_cert.clone())
        .expect("a step with a client certificate");
    assert!(dom.contains(&format!(r#"<code class="thumbprint">{thumb}</code>"#)));
    // Bodies are escaped, not parsed as markup.
    assert!(dom.contains("&lt;s:Envelope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn har_capture_of_the_happy_path() {
    let server = embedded::start().await.unwrap();
    let ran = vec![run_file(&server.target, &suite("01-happy-path.toml")).await];
    server.control.shutdown().await;
    assert!(ran[0].outcome.passed());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.har");
    har::write(&file, &har::from_run(&ran)).unwrap();

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let log = &v["log"];
    assert_eq!(log["version"], "1.2");
    assert_eq!(log["creator"]["name"], "winmdm");
    assert!(log["creator"]["version"].is_string());
    assert_eq!(log["pages"][0]["id"], "happy-path");
    let entries = log["entries"].as_array().unwrap();
    let expected: Vec<_> = ran[0]
        .outcome
        .steps
        .iter()
        .flat_map(|s| s.exchanges.iter().map(move |e| (s, e)))
        .collect();
    assert_eq!(entries.len(), expected.len());
    let rfc3339 = time::format_description::well_known::Rfc3339;
    let mut last = None;
    for (e, (step, ex)) in entries.iter().zip(&expected) {
        let started =
            time::OffsetDateTime::parse(e["startedDateTime"].as_str().unwrap(), &rfc3339).unwrap();
        if let Some(l) = last {
            assert!(l <= started, "entries in order");
        }
        last = Some(started);
        assert!(e["time"].as_f64().unwrap() >= 0.0);
        let req = &e["request"];
        assert_eq!(req["method"], ex.method.as_str());
        assert_eq!(req["url"], ex.url.as_str());
        assert_eq!(req["httpVersion"], "HTTP/1.1");
        assert!(req["headers"].is_array() && req["queryString"].is_array());
        assert!(req["cookies"].is_array());
        assert!(req["headersSize"].is_i64() && req["bodySize"].is_i64());
        if ex.method == "POST" {
            assert_eq!(req["postData"]["text"], ex.request_body.as_str());
            assert!(req["postData"]["mimeType"].as_str().unwrap().contains('/'));
        }
        let resp = &e["response"];
        assert_eq!(resp["status"], ex.status.unwrap());
        assert!(resp["statusText"].is_string() && resp["httpVersion"].is_string());
        assert!(resp["headers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["name"].is_string() && h["value"].is_string()));
        assert_eq!(resp["content"]["text"], ex.response_body.as_str());
        assert_eq!(resp["content"]["size"], ex.response_body.len());
        assert!(resp["content"]["mimeType"].is_string());
        assert!(resp["redirectURL"].is_string());
        assert!(e["cache"].is_object());
        for t in ["send", "wait", "receive"] {
            assert!(e["timings"][t].as_f64().unwrap() >= 0.0);
        }
        assert_eq!(e["_step"], step.name);
        assert_eq!(e["_scenario"], "happy-path");
        let comment = e["comment"].as_str().unwrap();
        assert!(
            comment.contains(&format!("step: {}", step.name)),
            "{comment}"
        );
        match &step.client_cert {
            Some(t) => {
                assert!(
                    comment.contains(&format!("client-certificate: {t}")),
                    "{comment}"
                );
                assert_eq!(e["_clientCertificate"], t.as_str());
            }
            None => assert!(!comment.contains("client-certificate")),
        }
    }
    let with_cert = entries
        .iter()
        .filter(|e| {
            e["comment"]
                .as_str()
                .unwrap()
                .contains("client-certificate: ")
        })
        .count();
    assert!(with_cert >= 3, "management exchanges carry the certificate");
    // The typed reader accepts what the writer produced.
    assert_eq!(har::read(&file).unwrap().log.entries.len(), entries.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_replays_cleanly_and_an_altered_one_reports_the_element() {
    let first = embedded::start().await.unwrap();
    let ran = vec![run_text(&first.target, ENROLL_AND_SYNC, "enroll-and-sync.toml").await];
    first.control.shutdown().await;
    let mut out = Vec::new();
    winmdm::report::print_scenario(&mut out, &ran[0].outcome);
    assert!(ran[0].outcome.passed(), "{}", String::from_utf8_lossy(&out));
    let capture = har::from_run(&ran);

    let fresh = embedded::start().await.unwrap();
    let report = replay::replay(&capture, &fresh.target).await.unwrap();
    fresh.control.shutdown().await;
    let mut printed = Vec::new();
    report.print(&mut printed);
    let printed = String::from_utf8_lossy(&printed);
    assert_eq!(report.results.len(), capture.log.entries.len());
    assert_eq!(report.differing(), 0, "{printed}");
    // The management session ran over mTLS with the replay's own certificate.
    assert!(report
        .results
        .iter()
        .any(|r| r.step == "management_session" && r.replayed_status == Some(200)));

    let mut altered = capture.clone();
    let discover = altered
        .log
        .entries
        .iter_mut()
        .find(|e| e.step.as_deref() == Some("discover"))
        .unwrap();
    let text = &mut discover.response.content.text;
    assert!(text.contains("<AuthPolicy>OnPremise</AuthPolicy>"));
    *text = text.replace(
        "<AuthPolicy>OnPremise</AuthPolicy>",
        "<AuthPolicy>Federated</AuthPolicy>",
    );
    let fresh = embedded::start().await.unwrap();
    let report = replay::replay(&altered, &fresh.target).await.unwrap();
    fresh.control.shutdown().await;
    let mut printed = Vec::new();
    report.print(&mut printed);
    let printed = String::from_utf8_lossy(&printed);
    assert_eq!(report.differing(), 1, "{printed}");
    let bad = report.results.iter().find(|r| !r.matches()).unwrap();
    assert_eq!(bad.step, "discover");
    assert_eq!(bad.differences.len(), 1, "{printed}");
    assert!(
        bad.differences[0]
            .path
            .ends_with("/DiscoverResult/AuthPolicy"),
        "{printed}"
    );
    assert!(
        printed.contains(r#"AuthPolicy: recorded "Federated", replayed "OnPremise""#),
        "{printed}"
    );
}

#[test]
fn replay_cli_reports_truncated_raw_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let req = dir.path().join("cut-request.http");
    let mut body = b"POST /api/mdm/microsoft/discovery HTTP/1.1\r\nHost: mdm.example.com\r\nContent-Length: 900\r\n\r\n<s:Envelope".to_vec();
    body.extend_from_slice(b" xmlns:s=\"x\">");
    std::fs::write(&req, body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .args(["replay", "--import-raw"])
        .arg(&req)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut-request.http: truncated body: Content-Length is 900"),
        "{err}"
    );

    let har_file = dir.path().join("vector.har");
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("import-raw")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/vectors/mde2-discover-get-request.http"
        ))
        .arg("-o")
        .arg(&har_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = har::read(&har_file).unwrap();
    assert_eq!(h.log.entries[0].response.status, 200);
}

const SHORT: &str = r#"
name = "short"
[[steps]]
step = "orbit_enroll"
[[steps]]
step = "orbit_config"
[[steps]]
step = "register_device_with_management"
[[steps]]
step = "discovery_probe"
[[steps]]
step = "discover"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_written_then_compared() {
    let server = embedded::start().await.unwrap();
    let origins = Origins(vec![server.target.server_url.clone()]);
    let dir = tempfile::tempdir().unwrap();

    let mut first = run_text(&server.target, SHORT, "short.toml").await.outcome;
    let states = snapshot::apply(dir.path(), false, &origins, &mut first).unwrap();
    assert_eq!(states.len(), 4, "one snapshot per step with requests");
    assert!(states
        .iter()
        .all(|s| matches!(s, snapshot::SnapState::Created(_))));
    let discover = dir.path().join("short__05_discover.snap");
    let text = std::fs::read_to_string(&discover).unwrap();
    assert!(text.starts_with("---\nsource: winmdm\n"), "{text}");
    assert!(
        text.contains(
            "\nexpression: server responses\n---\nPOST /api/mdm/microsoft/discovery -> 200\n"
        ),
        "{text}"
    );
    assert!(text.contains("[SERVER]/api/mdm/microsoft/policy"), "{text}");
    assert!(
        text.contains("[UUID]") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let enroll = std::fs::read_to_string(dir.path().join("short__01_orbit_enroll.snap")).unwrap();
    assert!(
        enroll.contains("\"orbit_node_key\": \"[NODEKEY]\""),
        "{enroll}"
    );

    // A second run (another device, same server) matches.
    let mut second = run_text(&server.target, SHORT, "short.toml").await.outcome;
    let states = snapshot::apply(dir.path(), false, &origins, &mut second).unwrap();
    assert!(
        states
            .iter()
            .all(|s| matches!(s, snapshot::SnapState::Matched(_))),
        "{states:?}"
    );
    assert!(second.passed());

    // A changed snapshot fails the step with a diff and leaves a .snap.new for review.
    std::fs::write(&discover, text.replace("OnPremise", "Federated")).unwrap();
    let mut third = run_text(&server.target, SHORT, "short.toml").await.outcome;
    let states = snapshot::apply(dir.path(), false, &origins, &mut third).unwrap();
    server.control.shutdown().await;
    let differs: Vec<_> = states
        .iter()
        .filter(|s| matches!(s, snapshot::SnapState::Differs { .. }))
        .collect();
    assert_eq!(differs.len(), 1, "{states:?}");
    assert!(!third.passed());
    let step = &third.steps[4];
    assert_eq!(step.name, "discover");
    assert_eq!(step.verdict, winmdm::runner::Verdict::Failed);
    let lines: Vec<&str> = step.detail.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with('-')
            && l.trim_start_matches(['-', ' ']) == "<AuthPolicy>Federated</AuthPolicy>"),
        "{}",
        step.detail
    );
    assert!(
        lines.iter().any(|l| l.starts_with('+')
            && l.trim_start_matches(['+', ' ']) == "<AuthPolicy>OnPremise</AuthPolicy>"),
        "{}",
        step.detail
    );
    let new = dir.path().join("short__05_discover.snap.new");
    let new_text = std::fs::read_to_string(&new).unwrap();
    assert!(new_text.contains("OnPremise"));
    assert!(snapshot::body_of(&new_text).starts_with("POST /api/mdm/microsoft/discovery"));
}
