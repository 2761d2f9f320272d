//! `POST /api/mdm/microsoft/enroll`: MS-WSTEP RequestSecurityToken, RequestType Issue
//! (enrollment) or Renew ([`crate::service::enrollment`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::respond::soap_response;
use crate::soap::{self, Fault, FaultSubcode};
use crate::state::{AppState, PeerCertificate};
use crate::wstep::{parse_rst, ACTION_RST, REQUEST_TYPE_RENEW};

/// `POST /api/mdm/microsoft/enroll`.
pub async fn request_security_token(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<PeerCertificate>,
    body: String,
) -> Response {
    let doc = match soap::parse_xml(&body) {
        Ok(d) => d,
        Err(e) => return Fault::new(FaultSubcode::MessageFormat, e).into_response(),
    };
    let req = match soap::parse_request(&doc, ACTION_RST) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let mid = req.message_id.as_deref();
    let rst = match parse_rst(req.body) {
        Ok(r) => r,
        Err(e) => {
            return Fault::new(FaultSubcode::MessageFormat, e)
                .with_error_type("InvalidEnrollmentData")
                .relating_to(mid)
                .into_response()
        }
    };
    let renew = rst.request_type == REQUEST_TYPE_RENEW;
    let answer = if renew {
        crate::service::enrollment::renew(&state, peer.der(), &rst, mid).await
    } else {
        crate::service::enrollment::issue(&state, &req, &rst).await
    };
    metrics::counter!(
        crate::telemetry::ENROLLMENTS,
        "request_type" => if renew { "renew" } else { "issue" },
        "outcome" => if answer.is_ok() { "issued" } else { "refused" },
    )
    .increment(1);
    match answer {
        Ok(xml) => soap_response(StatusCode::OK, xml),
        Err(f) => f.into_response(),
    }
}
