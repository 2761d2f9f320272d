//! Windows' own discovery path, `/EnrollmentServer/Discovery.svc` (what "Access work or
//! school" derives from the user's address), answers exactly as the discovery endpoint
//! the server announces: the same GET probe, the same DiscoverResponse, and the same
//! discovered URLs.

mod common;

use axum::http::StatusCode;
use common::*;

const WINDOWS_PATH: &str = "/EnrollmentServer/Discovery.svc";
const OWN_PATH: &str = "/api/mdm/microsoft/discovery";

#[tokio::test]
async fn windows_discovery_path_answers_the_get_probe() {
    let s = server().await;
    let own = s.send("GET", OWN_PATH, "", String::new(), None).await;
    let windows = s.send("GET", WINDOWS_PATH, "", String::new(), None).await;
    assert_eq!(windows.status, StatusCode::OK, "{}", windows.body);
    assert_eq!(windows.body, own.body);
    assert_eq!(windows.content_type, own.content_type);
}

#[tokio::test]
async fn windows_discovery_path_answers_discover_like_the_announced_one() {
    let s = server().await;
    let request = vector("mde2-discover-request.xml");
    let own = s.soap(OWN_PATH, request.clone()).await;
    let windows = s.soap(WINDOWS_PATH, request).await;
    assert_eq!(windows.status, StatusCode::OK, "{}", windows.body);
    assert_eq!(windows.content_type, own.content_type);
    for element in [
        "RelatesTo",
        "AuthPolicy",
        "EnrollmentVersion",
        "EnrollmentPolicyServiceUrl",
        "EnrollmentServiceUrl",
    ] {
        assert_eq!(
            element_text(&windows.body, element),
            element_text(&own.body, element),
            "{element}"
        );
    }
    // The discovered URLs stay the server's own.
    assert_eq!(
        element_text(&windows.body, "EnrollmentPolicyServiceUrl").as_deref(),
        Some("https://mdm.example.test/api/mdm/microsoft/policy")
    );
}

#[tokio::test]
async fn windows_discovery_path_refuses_a_non_soap_post_like_the_announced_one() {
    let s = server().await;
    let body = vector("mde2-discover-request.xml");
    let r = s
        .send("POST", WINDOWS_PATH, "text/plain", body.clone(), None)
        .await;
    let own = s.send("POST", OWN_PATH, "text/plain", body, None).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.body);
    assert_eq!(r.status, own.status);
}
