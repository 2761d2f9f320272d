//! The admin API's one error shape, `{"error": {"code": "...", "message": "..."}}`: a
//! stable machine-readable code (docs/admin-api.md lists them) and a sentence for people.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// What went wrong, as clients match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 404: the server runs without `--admin-token`.
    AdminApiDisabled,
    /// 401: the bearer token is missing or wrong.
    Unauthorized,
    /// 400: the body is not JSON of the expected shape.
    InvalidJson,
    /// 400: the request is well-formed JSON but asks for something impossible.
    InvalidRequest,
    /// 400: the command is not a valid SyncML command.
    InvalidCommand,
    /// 400: the profile's items are refused.
    InvalidProfile,
    /// 404: no enrolled device has that DeviceID.
    DeviceNotFound,
    /// 404: no command has that id.
    CommandNotFound,
    /// 404: no profile has that name.
    ProfileNotFound,
    /// 409: the device is not in the enrolled state.
    DeviceNotEnrolled,
    /// 409: the device's enrollment has already ended.
    DeviceAlreadyUnenrolled,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 408: the request body did not arrive in time.
    RequestTimeout,
    /// 413: the request body is over the size limit.
    BodyTooLarge,
    /// 500: the database failed; the request may be retried.
    StorageFailure,
    /// 500: any other failure of the server.
    InternalError,
    /// 503: metrics cannot be served by this process.
    MetricsUnavailable,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::AdminApiDisabled,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidCommand,
        ErrorCode::InvalidProfile,
        ErrorCode::DeviceNotFound,
        ErrorCode::CommandNotFound,
        ErrorCode::ProfileNotFound,
        ErrorCode::DeviceNotEnrolled,
        ErrorCode::DeviceAlreadyUnenrolled,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::BodyTooLarge,
        ErrorCode::StorageFailure,
        ErrorCode::InternalError,
        ErrorCode::MetricsUnavailable,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The code of a guard's or the framework's plain-text refusal, by its status.
    fn for_status(status: StatusCode) -> ErrorCode {
        match status {
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
            s if s.is_client_error() => ErrorCode::InvalidRequest,
            _ => ErrorCode::InternalError,
        }
    }
}

/// The error body of every admin API refusal.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Says what is wrong; for people, not for matching.
    pub message: String,
}

/// An admin API error response.
pub fn admin_error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.into(),
        },
    };
    (status, Json(body)).into_response()
}

/// Parses a JSON request body; a bad one is a 400 `invalid_json`.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        admin_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!("invalid JSON body: {e}"),
        )
    })
}

/// Middleware outside every admin route: refusals made before the handler (the body
/// guards' 408 and 413, the framework's 405 and path or body rejections), which are
/// plain text, are rewritten to the error shape with their text as the message.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let close = resp.headers().get(header::CONNECTION).cloned();
    let text = match axum::body::to_bytes(resp.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut out = admin_error(status, ErrorCode::for_status(status), message);
    if let Some(v) = close {
        out.headers_mut().insert(header::CONNECTION, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_snake_case_name() {
        let names: std::collections::BTreeSet<String> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert!(names
            .iter()
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
