//! Answers as HTTP responses: SOAP (with the fault conversion), SyncML, JSON errors
//! and plain-text refusals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::soap::{Fault, SOAP_CONTENT_TYPE};

/// A SOAP 1.2 response with an explicit Content-Length (Windows rejects chunked SOAP,
/// see protocol-reference §3).
pub fn soap_response(status: StatusCode, xml: String) -> Response {
    let mut resp = (status, xml).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SOAP_CONTENT_TYPE),
    );
    resp
}

/// Faults go out as HTTP 500, as the WCF-based reference enrollment services send them
/// and as Windows' enrollment client expects.
impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        tracing::info!(subcode = self.subcode.qname(), reason = %self.reason, "SOAP fault");
        metrics::counter!(crate::telemetry::SOAP_FAULTS, "subcode" => self.subcode.qname())
            .increment(1);
        soap_response(StatusCode::INTERNAL_SERVER_ERROR, self.to_xml())
    }
}

/// A SyncML answer to a management message.
pub fn syncml_response(xml: axum::body::Bytes) -> Response {
    let mut resp = (StatusCode::OK, xml).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::syncml::CONTENT_TYPE),
    );
    resp
}

/// A management request refused: the status and a one-line text saying why.
pub fn refuse(status: StatusCode, message: &str) -> Response {
    tracing::info!(%status, message, "management request refused");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// A JSON error body `{"error": message}` with the given status.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Parses a JSON request body; a bad one is a 400 with a JSON error.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// An HTML page.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        body,
    )
        .into_response()
}
