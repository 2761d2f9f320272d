//! Every response names its request (`x-request-id`), a fresh id each time: the id the
//! server's log lines for that request carry (scenarios/tests/logs.rs checks the lines).

mod common;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;
use winmdm_server::app::router;
use winmdm_server::http::request_id::REQUEST_ID_HEADER;

async fn request_id(server: &common::TestServer, path: &str) -> String {
    let req = Request::builder()
        .method("GET")
        .uri(path)
        .body(Body::empty())
        .expect("request");
    let resp = router(server.state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    resp.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn every_response_carries_a_fresh_request_id() {
    let server = common::server().await;
    let first = request_id(&server, "/EnrollmentServer/Discovery.svc").await;
    let refused = request_id(&server, "/api/v1/devices").await;
    let unknown = request_id(&server, "/no/such/path").await;
    for id in [&first, &refused, &unknown] {
        assert_eq!(id.len(), 32, "{id:?}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id:?}");
    }
    assert_ne!(first, refused);
    assert_ne!(refused, unknown);
}
