//! MS-MDE2 §3.1 discovery: the `GET` probe and the SOAP `Discover` call.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::respond::soap_response;
use crate::discovery::{ServiceUrls, ACTION_DISCOVER, ACTION_DISCOVER_RESPONSE};
use crate::paths::{AUTH_PATH, ENROLL_PATH, POLICY_PATH};
use crate::soap::{self, Fault, FaultSubcode};
use crate::state::AppState;

/// `GET` probe: Windows checks the URL answers 200 before POSTing (MS-MDE2 §3.1.5.1).
pub async fn probe() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        "",
    )
        .into_response()
}

/// `POST` Discover: answers with the policy and enrollment service URLs, AuthPolicy
/// OnPremise (the node key is passed through as the security token).
pub async fn discover(State(state): State<Arc<AppState>>, body: String) -> Response {
    let doc = match soap::parse_xml(&body) {
        Ok(d) => d,
        Err(e) => return Fault::new(FaultSubcode::MessageFormat, e).into_response(),
    };
    let req = match soap::parse_request(&doc, ACTION_DISCOVER) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let mid = req.message_id.as_deref();
    let discover = match crate::discovery::parse_discover(req.body) {
        Ok(d) => d,
        Err(e) => {
            return Fault::new(FaultSubcode::MessageFormat, e)
                .relating_to(mid)
                .into_response()
        }
    };
    let answer = match crate::protocol::discovery::answer(
        &discover,
        !state.config.enroll_users.is_empty(),
        mid,
    ) {
        Ok(a) => a,
        Err(f) => return f.into_response(),
    };
    let auth_url = answer.federated.then(|| state.url(AUTH_PATH));
    let body = crate::discovery::response_body(
        answer.federated,
        answer.enrollment_version,
        ServiceUrls {
            policy: &state.url(POLICY_PATH),
            enrollment: &state.url(ENROLL_PATH),
            authentication: auth_url.as_deref(),
        },
    );
    tracing::info!(email = %discover.email, version = %discover.request_version, "discover");
    let (action, relates_to) = match state.config.inject_fault.as_deref() {
        Some("discover-without-relates-to") => (ACTION_DISCOVER_RESPONSE, None),
        Some("discover-wrong-action") => (ACTION_DISCOVER, mid),
        _ => (ACTION_DISCOVER_RESPONSE, mid),
    };
    soap_response(
        StatusCode::OK,
        soap::envelope(action, relates_to, "", &body),
    )
}
