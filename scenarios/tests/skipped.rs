//! Skipped is an outcome of its own: a run against a target lacking a capability shows
//! skipped steps and scenarios in the terminal summary, the JUnit and the HTML report,
//! and exits 0 because nothing failed.

use std::path::PathBuf;
use std::process::Command;

fn suite(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite")).join(file)
}

#[test]
fn a_missing_capability_is_skipped_in_summary_junit_and_html_with_exit_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let html = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        // Happy path: its command steps are incidental and skipped, the rest passes.
        .arg(suite("01-happy-path.toml"))
        // Requires the admin API: skipped as a whole.
        .arg(suite("07-commands-every-verb.toml"))
        .args(["--without", "admin_api"])
        .arg("--junit")
        .arg(&junit)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("scenarios: 1 passed, 0 failed, 1 skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skip queue_command") && stdout.contains("(no admin_api)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected commands not checked"),
        "the session expecting the unqueued command says so: {stdout}"
    );
    assert!(
        stdout.contains("SKIP commands-every-verb") && stdout.contains("needs admin_api"),
        "{stdout}"
    );

    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite_el = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite_el.attribute("tests"), Some("2"));
    assert_eq!(suite_el.attribute("failures"), Some("0"));
    assert_eq!(suite_el.attribute("skipped"), Some("1"));
    assert_eq!(doc.root_element().attribute("skipped"), Some("1"));
    let cases: Vec<_> = suite_el
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert!(cases[0].children().all(|n| !n.has_tag_name("skipped")));
    let skipped = cases[1]
        .children()
        .find(|n| n.has_tag_name("skipped"))
        .expect("a skipped element");
    assert!(
        skipped
            .attribute("message")
            .is_some_and(|m| m.contains("admin_api")),
        "{xml}"
    );
    assert!(cases[1].children().all(|n| !n.has_tag_name("failure")));

    let html = std::fs::read_to_string(&html).unwrap();
    assert!(
        html.contains(r#"<span class="verdict skipped">1 skipped</span>"#),
        "summary counts the skipped scenario"
    );
    assert!(html.contains(r#"<section class="scenario skipped""#));
    assert!(html.contains(r#"<section class="scenario passed""#));
    assert!(
        html.contains(r#"<li class="step-log skipped""#),
        "skipped steps are marked"
    );
}

#[test]
fn a_failure_still_fails_the_run_when_others_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("must-fail.toml");
    std::fs::write(
        &failing,
        "name = \"must-fail\"\n[[steps]]\nstep = \"orbit_enroll\"\nexpect_status = 401\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        .arg(suite("07-commands-every-verb.toml"))
        .arg(&failing)
        .args(["--without", "admin_api"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("scenarios: 0 passed, 1 failed, 1 skipped"),
        "{stdout}"
    );
}
