//! The admin API's OpenAPI document: checked in at docs/openapi.json and current, in
//! step with the router's route table, and valid by openapi-spec-validator; and the one
//! error shape of the admin API.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::http::StatusCode;
use winmdm_server::http::admin_api::{openapi_pretty, routes, OPENAPI_PATH};
use winmdm_server::http::admin_error::ErrorCode;

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

fn document() -> serde_json::Value {
    serde_json::from_str(&openapi_pretty()).expect("the document is JSON")
}

/// `UPDATE_OPENAPI=1` rewrites docs/openapi.json instead of comparing.
#[test]
fn docs_openapi_json_is_the_current_document() {
    let current = openapi_pretty();
    let path = checked_in();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &current).expect("write docs/openapi.json");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == current,
        "docs/openapi.json is not the document the server serves; update it with\n    \
         UPDATE_OPENAPI=1 cargo test -p winmdm-server --test openapi docs_openapi_json_is_the_current_document"
    );
}

/// (method, path) of every operation in the document.
fn documented() -> BTreeSet<(String, String)> {
    let doc = document();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn every_admin_route_is_documented_and_every_documented_operation_is_routed() {
    let routed: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes without a #[utoipa::path] in ApiDoc: {undocumented:?}\n\
         documented operations the admin router lacks: {unrouted:?}"
    );
    assert!(
        routed.len() >= 12,
        "the route table was not read: {routed:?}"
    );
}

/// The table's method is the one its handler answers: a request with it reaches the
/// handler (no 405, no unrouted 404).
#[tokio::test]
async fn the_router_answers_every_documented_operation() {
    let s = common::server().await;
    for (method, path) in documented() {
        let concrete = path
            .replace("{device_id}", "nodevice")
            .replace("{command_id}", "nocommand")
            .replace("{name}", "noprofile");
        let r = s.send_admin(&method, &concrete, "{}").await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if r.status == StatusCode::NOT_FOUND {
            let v: serde_json::Value = serde_json::from_str(&r.body)
                .unwrap_or_else(|e| panic!("{method} {path}: 404 not JSON ({e}): {}", r.body));
            let code = v["error"]["code"].as_str().unwrap_or("");
            assert!(
                code.ends_with("_not_found"),
                "{method} {path}: 404 {code:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_document_is_served_and_is_the_checked_in_one() {
    let s = common::server().await;
    let r = s.send_admin("GET", OPENAPI_PATH, "").await;
    assert_eq!(r.status, StatusCode::OK);
    let served: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(served, document());
    assert_eq!(served["openapi"], "3.1.0");
}

#[test]
fn the_document_lists_every_error_code() {
    let doc = document();
    let listed: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let all: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, all, "ErrorCode::ALL and the enum differ");
    let guide = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.md"),
    )
    .expect("docs/admin-api.md");
    let missing: Vec<_> = all
        .iter()
        .filter(|c| !guide.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "codes missing from docs/admin-api.md: {missing:?}"
    );
}

/// openapi-spec-validator (PyPI; `.ci/run` installs it) accepts docs/openapi.json.
#[test]
fn docs_openapi_json_passes_openapi_spec_validator() {
    let out = std::process::Command::new("openapi-spec-validator")
        .arg(checked_in())
        .output();
    match out {
        Ok(o) => assert!(
            o.status.success(),
            "openapi-spec-validator refused docs/openapi.json:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "openapi-spec-validator is required under CI=true (pip install openapi-spec-validator): {e}"
            );
            eprintln!("SKIPPED: openapi-spec-validator not found ({e}); pip install openapi-spec-validator");
        }
    }
}

/// Every admin refusal, the handlers' and the guards', has the one shape.
#[tokio::test]
async fn admin_errors_have_one_shape() {
    let s = common::server().await;
    let shape = |body: &str| -> (String, String) {
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 1, "{body}");
        let err = v["error"].as_object().expect("error object");
        assert_eq!(err.len(), 2, "{body}");
        (
            err["code"].as_str().expect("code").to_owned(),
            err["message"].as_str().expect("message").to_owned(),
        )
    };
    let cases: &[(&str, &str, &str, StatusCode, &str)] = &[
        (
            "GET",
            "/api/v1/commands/nope",
            "",
            StatusCode::NOT_FOUND,
            "command_not_found",
        ),
        (
            "POST",
            "/api/v1/profiles",
            "{",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "POST",
            "/api/v1/commands",
            r#"{"verb":"Get","target":"./A"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "POST",
            "/api/v1/devices/x/commands",
            r#"{"verb":"Frob","target":"./A"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_command",
        ),
        (
            "POST",
            "/api/v1/devices/x/release",
            "",
            StatusCode::NOT_FOUND,
            "device_not_found",
        ),
        (
            "PUT",
            "/api/v1/devices",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let r = s.send_admin(method, path, body).await;
        assert_eq!(r.status, *status, "{method} {path}: {}", r.body);
        let (got, message) = shape(&r.body);
        assert_eq!(got, *code, "{method} {path}: {message}");
        assert!(!message.is_empty());
    }
    // Without the token.
    let r = s
        .send(
            "GET",
            "/api/v1/devices",
            "application/json",
            String::new(),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(shape(&r.body).0, "unauthorized");
    // A body over the limit, refused by the guard before the handler.
    let big = "x".repeat(winmdm_server::paths::MAX_BODY_BYTES + 1);
    let r = s.send_admin("POST", "/api/v1/profiles", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(shape(&r.body).0, "body_too_large");
}
