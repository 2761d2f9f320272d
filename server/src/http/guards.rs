//! Request guards applied before the protocol handlers: content types and rate limits.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::respond::refuse;
use crate::soap::{Fault, FaultSubcode};
use crate::state::{AppState, ClientAddr, PeerCertificate};

fn content_type(req: &Request) -> &str {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// SOAP endpoints take `application/soap+xml` POSTs (MS-MDE2 §2.1); anything else is
/// refused with 415 and a SOAP fault saying so.
pub async fn require_soap(req: Request, next: Next) -> Response {
    if req.method() == Method::POST
        && !content_type(&req)
            .to_ascii_lowercase()
            .starts_with("application/soap+xml")
    {
        let mut resp = Fault::new(
            FaultSubcode::MessageFormat,
            format!(
                "Content-Type must be application/soap+xml, not {:?}",
                content_type(&req)
            ),
        )
        .into_response();
        *resp.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return resp;
    }
    next.run(req).await
}

/// The management endpoint takes `application/vnd.syncml.dm+xml` (MS-MDM §2.1; the WBXML
/// encoding is not offered: the provisioning document sets DEFAULTENCODING to XML).
pub async fn require_syncml(req: Request, next: Next) -> Response {
    if !content_type(&req)
        .to_ascii_lowercase()
        .starts_with(crate::syncml::CONTENT_TYPE)
    {
        let msg = format!(
            "Content-Type must be {}, not {:?}\n",
            crate::syncml::CONTENT_TYPE,
            content_type(&req)
        );
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, msg).into_response();
    }
    next.run(req).await
}

/// Applies the enrollment rate limits.
pub async fn rate_limit(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
    if let Err(retry_after) = state.rate_limiter.admit(client) {
        tracing::info!(?client, retry_after, "enrollment request rate-limited");
        metrics::counter!(crate::telemetry::RATE_LIMITED).increment(1);
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            "too many enrollment requests; retry later\n",
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    next.run(req).await
}

/// How long and how much of a request body a route reads (`read_body_in_time`).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub within: std::time::Duration,
    pub limit: usize,
}

/// Reads the whole request body within the deadline before the handler runs: the
/// connection watchdog stops timing once a request's headers are in, so without this a
/// client could hold a connection for ever by trickling (or never sending) the body it
/// announced. Too slow: 408 and the connection closed; too large: 413.
pub async fn read_body_in_time(
    State(deadline): State<BodyDeadline>,
    req: Request,
    next: Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > deadline.limit as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(deadline.within, axum::body::to_bytes(body, deadline.limit)).await {
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [
                (header::CONNECTION, HeaderValue::from_static("close")),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
            ],
            "the request body did not arrive in time\n",
        )
            .into_response(),
        Ok(Err(e)) if e.to_string().contains("length limit") => too_large(),
        Ok(Err(_)) => (
            StatusCode::BAD_REQUEST,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            "the request body could not be read\n",
        )
            .into_response(),
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
    }
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "request body too large\n",
    )
        .into_response()
}

/// The management route refuses a connection without a client certificate from the
/// identity CA before it reads the body (up to `--max-device-message-bytes`), so that
/// nobody without a device certificate makes the server buffer device-sized messages.
/// The handler judges the certificate fully (enrollment, DeviceID) afterwards. A
/// connection that authenticates by digest (`--management-auth`) passes: its
/// credentials are in the message.
pub async fn require_client_certificate(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .extensions()
        .get::<PeerCertificate>()
        .is_some_and(|p| p.der().is_some());
    if state.config.management_auth.uses_digest(presented) {
        return next.run(req).await;
    }
    let verdict = req.extensions().get::<PeerCertificate>().map(|peer| {
        peer.verify(&state.ca)
            .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
    });
    match verdict.flatten() {
        None => refuse(
            StatusCode::UNAUTHORIZED,
            "a client certificate issued at enrollment is required",
        ),
        Some(Err(e)) => refuse(StatusCode::FORBIDDEN, &e),
        Some(Ok(())) => next.run(req).await,
    }
}
