//! The harness judged against a server written by somebody else (`double/`, built from
//! Microsoft's documentation samples, independent of `server/`): a minimal server gets
//! no false failure; each real defect fails exactly the step that meets it; each
//! security hole fails the attack scenario that names it.

mod double;

use std::path::{Path, PathBuf};
use std::process::Command;

use double::{Defect, Double, Hole, Options};

fn suite() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"))
}

fn scenario(file: &str) -> PathBuf {
    suite().join(file)
}

/// Runs `winmdm run` on `paths` against the double; returns exit code and output.
fn run(double: &Double, paths: &[PathBuf], auth: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("run")
        .args(paths)
        .args(["--server", &double.url, "--ca-file"])
        .arg(&double.ca_file)
        .args(auth)
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

/// A device with an already obtained token, pointed at the standard discovery path.
fn with_token(double: &Double, paths: &[PathBuf]) -> (i32, String) {
    let discovery = format!("{}/EnrollmentServer/Discovery.svc", double.url);
    run(
        double,
        paths,
        &["--token", double::TOKEN, "--discovery-url", &discovery],
    )
}

/// The steps that failed, as (step name, detail).
fn failures(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.trim_start().strip_prefix("FAIL "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()) && l.contains("  "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(' ')?;
            Some((name.to_string(), rest.trim().to_string()))
        })
        .collect()
}

#[test]
fn a_minimal_third_party_server_gets_no_false_failure() {
    let double = Double::start(Options::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("junit.xml");
    let html = dir.path().join("report.html");
    let discovery = format!("{}/EnrollmentServer/Discovery.svc", double.url);
    let (code, out) = run(
        &double,
        &[suite()],
        &[
            "--token",
            double::TOKEN,
            "--discovery-url",
            &discovery,
            "--junit",
            &junit.display().to_string(),
            "--html",
            &html.display().to_string(),
            // It implements no WSTEP renewal, and says so.
            "--without",
            "renewal",
        ],
    );
    assert_eq!(failures(&out), Vec::new(), "{out}");
    assert_eq!(code, 0, "{out}");
    // What it does not offer (Orbit, admin API, restarts) is skipped, not passed.
    assert!(out.contains(" skipped"), "{out}");
    // The CSP scenarios queue commands through the admin API: skipped, not failed.
    for name in [
        "csp-bitlocker-and-defender",
        "csp-firewall-and-devicestatus",
        "csp-policy-areas-and-admx",
        "csp-dynamic-nodes",
    ] {
        assert!(
            out.contains(&format!("SKIP {name} (")),
            "{name} not skipped: {out}"
        );
    }
    // What it leaves out that Windows tolerates (SSLCLIENTCERTSEARCHCRITERIA, the RSTRC
    // Timestamp) is a warning in every report, never a failure.
    assert!(
        out.contains("warn provisioning.cert_search_criteria_missing"),
        "{out}"
    );
    assert!(out.contains("warn wstep.security_timestamp"), "{out}");
    assert!(out.contains("\nwarnings: "), "{out}");
    let junit = std::fs::read_to_string(&junit).expect("junit");
    assert!(junit.contains("       warn "), "{junit}");
    let html = std::fs::read_to_string(&html).expect("html");
    assert!(
        html.contains(r#"<div class="warn">"#),
        "warnings missing from the HTML report"
    );
}

/// Each defect fails the scenario at the one step that received the broken response.
#[test]
fn each_real_defect_fails_exactly_its_step() {
    let cases = [
        (
            Defect::MissingRelatesTo,
            "01-happy-path.toml",
            "discover",
            "RelatesTo",
        ),
        (
            Defect::WrongDiscoverAction,
            "01-happy-path.toml",
            "discover",
            "Action",
        ),
        (
            Defect::TruncatedPolicyBody,
            "01-happy-path.toml",
            "get_policies",
            "",
        ),
        // Windows installs what it is given (a chain it cannot build is a warning at
        // enrollment); the certificate check is where the defect shows.
        (
            Defect::UnsignedCertificate,
            "01-happy-path.toml",
            "verify_certificate",
            "verify",
        ),
        (
            Defect::MissingRoot,
            "01-happy-path.toml",
            "verify_certificate",
            "Root",
        ),
        (
            Defect::CommandsBeforeAuthentication,
            "05-management-without-certificate.toml",
            "management_session",
            "401",
        ),
    ];
    for (defect, file, step, mentions) in cases {
        let double = Double::start(Options {
            defect: Some(defect),
            ..Options::default()
        });
        let (code, out) = with_token(&double, &[scenario(file)]);
        let failed = failures(&out);
        assert_eq!(
            failed.len(),
            1,
            "{defect:?}: one failing step expected\n{out}"
        );
        assert_eq!(failed[0].0, step, "{defect:?}\n{out}");
        assert!(
            failed[0].1.contains(mentions),
            "{defect:?}: {:?}",
            failed[0].1
        );
        assert_ne!(code, 0, "{defect:?}\n{out}");
    }
}

const ATTACKS: [(&str, &str); 6] = [
    ("21-attack-device-id-takeover.toml", "DeviceID takeover"),
    (
        "22-attack-certificate-of-another-device.toml",
        "certificate of another device",
    ),
    (
        "23-attack-replay-by-another-device.toml",
        "replay by another device",
    ),
    ("24-attack-token-reuse.toml", "token reuse"),
    ("25-attack-federated-appru.toml", "federated appru"),
    ("26-attack-slow-request.toml", "slow half-sent request"),
];

/// The attack scenarios, with the slow request's wait shortened (the double closes a
/// half-sent request after 2 s).
fn attack_scenarios(dir: &Path) -> Vec<PathBuf> {
    ATTACKS
        .iter()
        .map(|(file, _)| {
            let text = std::fs::read_to_string(scenario(file)).expect("scenario file");
            let text = if file.contains("slow") {
                format!("{text}max_wait_secs = 10\n")
            } else {
                text
            };
            let path = dir.join(file);
            std::fs::write(&path, text).expect("write scenario");
            path
        })
        .collect()
}

fn with_orbit(double: &Double, paths: &[PathBuf]) -> (i32, String) {
    run(double, paths, &["--enroll-secret", double::SECRET])
}

#[test]
fn attacks_are_refused_by_a_careful_server_and_named_against_a_careless_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = attack_scenarios(dir.path());

    let careful = Double::start(Options {
        orbit: true,
        federated: true,
        ..Options::default()
    });
    let (code, out) = with_orbit(&careful, &paths);
    assert_eq!(failures(&out), Vec::new(), "{out}");
    assert_eq!(code, 0, "{out}");

    let careless = Double::start(Options {
        orbit: true,
        federated: true,
        holes: vec![
            Hole::DeviceIdTakeover,
            Hole::OpenRedirectAppru,
            Hole::NoHeaderTimeout,
            Hole::CertificateNotBoundToDevice,
            Hole::TokenReuse,
        ],
        ..Options::default()
    });
    let (code, out) = with_orbit(&careless, &paths);
    assert_ne!(code, 0, "{out}");
    let failed = failures(&out);
    for (_, attack) in ATTACKS {
        assert!(
            failed
                .iter()
                .any(|(step, d)| step == "attack"
                    && d.contains(&format!("SECURITY FINDING ({attack})"))),
            "{attack} not reported\n{out}"
        );
    }
    assert_eq!(failed.len(), ATTACKS.len(), "{out}");
}
