//! MS-MDE2 §3.1 Discover: the request's fields and the DiscoverResponse body.

use quick_xml::escape::escape;

use crate::soap::{self, NS_ENROLLMENT_DISCOVERY};

pub const ACTION_DISCOVER: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover";
pub const ACTION_DISCOVER_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse";

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

/// The service URLs a DiscoverResponse names.
#[derive(Debug, Clone, Copy)]
pub struct ServiceUrls<'a> {
    pub policy: &'a str,
    pub enrollment: &'a str,
    /// The Federated login page, when that policy is answered.
    pub authentication: Option<&'a str>,
}

/// The DiscoverResponse body (MS-MDE2 §3.1.4.1.1.2).
pub fn response_body(federated: bool, enrollment_version: &str, urls: ServiceUrls<'_>) -> String {
    format!(
        "<DiscoverResponse xmlns=\"{NS_ENROLLMENT_DISCOVERY}\"><DiscoverResult><AuthPolicy>{}</AuthPolicy><EnrollmentVersion>{}</EnrollmentVersion><EnrollmentPolicyServiceUrl>{}</EnrollmentPolicyServiceUrl><EnrollmentServiceUrl>{}</EnrollmentServiceUrl>{}</DiscoverResult></DiscoverResponse>",
        if federated { "Federated" } else { "OnPremise" },
        enrollment_version,
        escape(urls.policy),
        escape(urls.enrollment),
        match urls.authentication {
            Some(url) => format!(
                "<AuthenticationServiceUrl>{}</AuthenticationServiceUrl>",
                escape(url)
            ),
            None => String::new(),
        },
    )
}
