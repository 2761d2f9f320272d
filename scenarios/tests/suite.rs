//! The bundled scenario suite passes against the embedded reference server, over real
//! TLS and mTLS sockets.

use std::path::PathBuf;

use winmdm::runner::run_scenario;
use winmdm::{embedded, scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_suite_passes_against_the_embedded_server() {
    let files =
        scenario::collect(&[PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"))]).unwrap();
    assert!(files.len() >= 9, "suite has {} files", files.len());
    let serve = PathBuf::from(env!("CARGO_BIN_EXE_winmdm"));
    let server = embedded::start_with(Some(serve)).await.unwrap();
    let mut failures = Vec::new();
    for f in &files {
        let s = scenario::load(f).unwrap();
        let o = run_scenario(&server.target, &s).await;
        if o.failed() {
            let mut out = Vec::new();
            winmdm::report::print_scenario(&mut out, &o);
            failures.push(String::from_utf8_lossy(&out).into_owned());
        }
    }
    server.control.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_failing_expectation_fails_the_scenario() {
    // The harness must be able to fail: a wrong expected status is reported as a failure.
    let server = embedded::start().await.unwrap();
    let text = "name = \"must-fail\"\n[[steps]]\nstep = \"orbit_enroll\"\nexpect_status = 401\n";
    let s = scenario::parse(text, std::path::Path::new("must-fail.toml")).unwrap();
    let o = run_scenario(&server.target, &s).await;
    assert!(!o.passed());
    assert!(
        o.steps[0].detail.contains("expected HTTP 401"),
        "{}",
        o.steps[0].detail
    );
}
