//! MS-MDE2 §3.1 discovery: the `GET` probe and the SOAP `Discover` call.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use quick_xml::escape::escape;

use crate::app::AppState;
use crate::soap::{self, Fault, FaultSubcode, NS_ENROLLMENT_DISCOVERY};

/// The discovery path Windows itself tries: "Access work or school" turns the user's
/// address `user@<domain>` into `https://enterpriseenrollment.<domain>` + this path
/// (MS-MDE2 §3.1.5; Microsoft's "Mobile device enrollment: Discovery" docs). Served
/// exactly like `app::DISCOVERY_PATH`; the URLs it discovers stay the same.
pub const WINDOWS_DISCOVERY_PATH: &str = "/EnrollmentServer/Discovery.svc";

pub const ACTION_DISCOVER: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover";
pub const ACTION_DISCOVER_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse";

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

/// The fields of `Discover/request` this server uses; the rest are accepted and ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DiscoverRequest {
    pub email: String,
    pub request_version: String,
    pub device_type: String,
    pub auth_policies: Vec<String>,
}

/// Parses `Discover/request` (children in any order, xsd:all). The namespace is matched
/// without a trailing slash, since Microsoft's own published sample carries one.
pub fn parse_discover(body: roxmltree::Node<'_, '_>) -> Result<DiscoverRequest, String> {
    let ns_ok = |n: roxmltree::Node<'_, '_>| {
        n.tag_name()
            .namespace()
            .map(|ns| ns.trim_end_matches('/') == NS_ENROLLMENT_DISCOVERY)
            .unwrap_or(false)
    };
    if body.tag_name().name() != "Discover" || !ns_ok(body) {
        return Err("body is not an enrollment Discover element".into());
    }
    let request = soap::child_local(body, "request").ok_or("missing Discover/request")?;
    let mut out = DiscoverRequest::default();
    for c in request.children().filter(|c| c.is_element()) {
        match c.tag_name().name() {
            "EmailAddress" => out.email = soap::text(c),
            "RequestVersion" => out.request_version = soap::text(c),
            "DeviceType" => out.device_type = soap::text(c),
            "AuthPolicies" => {
                out.auth_policies = c
                    .children()
                    .filter(|p| p.is_element() && p.tag_name().name() == "AuthPolicy")
                    .map(soap::text)
                    .collect()
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The EnrollmentVersion to answer with: the device's RequestVersion capped at 5.0
/// (the highest version whose wire format this server implements).
fn enrollment_version(requested: &str) -> &'static str {
    match requested.parse::<f32>() {
        Ok(v) if v < 4.0 => "3.0",
        Ok(v) if v < 5.0 => "4.0",
        _ => "5.0",
    }
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
    let discover = match parse_discover(req.body) {
        Ok(d) => d,
        Err(e) => {
            return Fault::new(FaultSubcode::MessageFormat, e)
                .relating_to(mid)
                .into_response()
        }
    };
    let offers = |p: &str| discover.auth_policies.iter().any(|a| a == p);
    // OnPremise (node key or user name and password) when the device offers it;
    // Federated, through the login page, for devices that only offer that and when
    // enrollment users are configured.
    let federated = !discover.auth_policies.is_empty()
        && !offers("OnPremise")
        && offers("Federated")
        && !state.config.enroll_users.is_empty();
    if !discover.auth_policies.is_empty() && !offers("OnPremise") && !federated {
        return Fault::new(
            FaultSubcode::MessageFormat,
            "this server only offers the OnPremise authentication policy",
        )
        .with_error_type("NotSupported")
        .relating_to(mid)
        .into_response();
    }
    let body = format!(
        "<DiscoverResponse xmlns=\"{NS_ENROLLMENT_DISCOVERY}\"><DiscoverResult><AuthPolicy>{}</AuthPolicy><EnrollmentVersion>{}</EnrollmentVersion><EnrollmentPolicyServiceUrl>{}</EnrollmentPolicyServiceUrl><EnrollmentServiceUrl>{}</EnrollmentServiceUrl>{}</DiscoverResult></DiscoverResponse>",
        if federated { "Federated" } else { "OnPremise" },
        enrollment_version(&discover.request_version),
        escape(state.url(crate::app::POLICY_PATH)),
        escape(state.url(crate::app::ENROLL_PATH)),
        if federated {
            format!(
                "<AuthenticationServiceUrl>{}</AuthenticationServiceUrl>",
                escape(state.url(crate::app::AUTH_PATH))
            )
        } else {
            String::new()
        },
    );
    tracing::info!(email = %discover.email, version = %discover.request_version, "discover");
    let (action, relates_to) = match state.config.inject_fault.as_deref() {
        Some("discover-without-relates-to") => (ACTION_DISCOVER_RESPONSE, None),
        Some("discover-wrong-action") => (ACTION_DISCOVER, mid),
        _ => (ACTION_DISCOVER_RESPONSE, mid),
    };
    soap::soap_response(
        StatusCode::OK,
        soap::envelope(action, relates_to, "", &body),
    )
}
