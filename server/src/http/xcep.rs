//! `POST /api/mdm/microsoft/policy`: MS-XCEP GetPolicies.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::respond::soap_response;
use crate::soap::{self, Fault, FaultSubcode};
use crate::state::AppState;
use crate::xcep::{ACTION_GET_POLICIES, ACTION_GET_POLICIES_RESPONSE};

/// `POST /api/mdm/microsoft/policy`.
pub async fn get_policies(State(state): State<Arc<AppState>>, body: String) -> Response {
    let doc = match soap::parse_xml(&body) {
        Ok(d) => d,
        Err(e) => return Fault::new(FaultSubcode::MessageFormat, e).into_response(),
    };
    let req = match soap::parse_request(&doc, ACTION_GET_POLICIES) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let mid = req.message_id.as_deref();
    if !crate::xcep::is_get_policies(req.body) {
        return Fault::new(
            FaultSubcode::MessageFormat,
            "body is not an MS-XCEP GetPolicies element",
        )
        .relating_to(mid)
        .into_response();
    }
    if let Err(f) = state.authenticate_token(&req).await {
        return f.into_response();
    }
    let body = crate::xcep::response_body(
        state.config.cert_validity_days,
        state.config.renewal_period_days,
    );
    soap_response(
        StatusCode::OK,
        soap::envelope(ACTION_GET_POLICIES_RESPONSE, mid, "", &body),
    )
}
