//! A span per request with a generated id, so that every log line written while the
//! request is handled names it; the id is echoed as the `x-request-id` response header,
//! for a client's report to point at the server's lines.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::state::ClientAddr;

/// The response header carrying the request's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Runs the request inside `request{request_id, method, path, client}`. Only the path
/// is logged, never the query (the federated login page's carries the user's hint) nor
/// headers (Authorization).
pub async fn request_span(req: Request, next: Next) -> Response {
    let id = crate::soap::random_uuid().simple().to_string();
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        client = %client,
    );
    let mut resp = next.run(req).instrument(span.clone()).await;
    tracing::debug!(parent: &span, status = resp.status().as_u16(), "answered");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}
