//! MS-MDE2 discovery: the Discover request and DiscoverResponse ([MS-MDE2] §3.1).

use crate::error::ClientError;
use crate::soap;
use crate::xml::esc;

pub const NS_ENROLLMENT: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment";
pub const ACTION_DISCOVER: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover";
pub const ACTION_DISCOVER_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse";
const STEP: &str = "discover";

/// What the device tells the discovery service about itself.
pub struct DiscoverRequest<'a> {
    pub email: &'a str,
    pub request_version: &'a str,
    pub device_type: &'a str,
    pub application_version: &'a str,
    pub os_edition: &'a str,
    pub auth_policies: &'a [&'a str],
}

/// `DiscoverResponse/DiscoverResult` ([MS-MDE2] §3.1.4.1.1.2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiscoverResult {
    pub auth_policy: String,
    pub enrollment_version: String,
    pub enrollment_policy_service_url: String,
    pub enrollment_service_url: String,
    pub authentication_service_url: Option<String>,
}

/// The SOAP request body as Windows sends it.
pub fn build_request(req: &DiscoverRequest, message_id: &str, to: &str) -> String {
    let policies: String = req
        .auth_policies
        .iter()
        .map(|p| format!("<AuthPolicy>{}</AuthPolicy>", esc(p)))
        .collect();
    let body = format!(
        concat!(
            r#"<Discover xmlns="{ns}"><request xmlns:i="http://www.w3.org/2001/XMLSchema-instance">"#,
            "<EmailAddress>{email}</EmailAddress><RequestVersion>{rv}</RequestVersion>",
            "<DeviceType>{dt}</DeviceType><ApplicationVersion>{av}</ApplicationVersion>",
            "<OSEdition>{ose}</OSEdition><AuthPolicies>{policies}</AuthPolicies></request></Discover>"
        ),
        ns = NS_ENROLLMENT,
        email = esc(req.email),
        rv = esc(req.request_version),
        dt = esc(req.device_type),
        av = esc(req.application_version),
        ose = esc(req.os_edition),
        policies = policies
    );
    soap::envelope(ACTION_DISCOVER, message_id, to, None, &body)
}

/// An address "Access work or school" cannot derive a discovery URL from.
#[derive(Debug, thiserror::Error)]
#[error("{email:?} is not an email address: {why}")]
pub struct NotAnEmail {
    pub email: String,
    pub why: &'static str,
}

/// The discovery URL Windows derives from a user's address when enrolling through
/// "Access work or school": `https://enterpriseenrollment.<domain>/EnrollmentServer/Discovery.svc`
/// (MS-MDE2 §3.1.5; Microsoft's "Mobile device enrollment: Discovery" docs).
pub fn discovery_url_for_email(email: &str) -> Result<String, NotAnEmail> {
    let fail = |why| NotAnEmail {
        email: email.to_string(),
        why,
    };
    let (user, domain) = email.trim().rsplit_once('@').ok_or(fail("no @"))?;
    if user.is_empty() {
        return Err(fail("nothing before the @"));
    }
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !domain.contains('.') || !domain.split('.').all(label_ok) {
        return Err(fail("the part after the @ is not a domain name"));
    }
    Ok(format!(
        "https://enterpriseenrollment.{domain}/EnrollmentServer/Discovery.svc"
    ))
}

fn https_url(name: &str, v: String) -> Result<String, ClientError> {
    if v.to_ascii_lowercase().starts_with("https://") && v.len() > "https://".len() {
        Ok(v)
    } else {
        Err(ClientError::invalid(
            STEP,
            format!("{name} is not an https URL: {v:?}"),
        ))
    }
}

/// [`parse_response_with`], dropping warnings.
pub fn parse_response(xml: &str, message_id: &str) -> Result<DiscoverResult, ClientError> {
    parse_response_with(xml, message_id, &mut Vec::new())
}

/// Parses a DiscoverResponse envelope (the caller has checked HTTP status and faults).
/// `DiscoverResult` is an `xsd:all` ([MS-MDE2] §3.1.4.1.3.2): its children may come in
/// any order.
pub fn parse_response_with(
    xml: &str,
    message_id: &str,
    warnings: &mut Vec<crate::Warning>,
) -> Result<DiscoverResult, ClientError> {
    let doc = soap::parse_envelope_with(STEP, xml, ACTION_DISCOVER_RESPONSE, message_id, warnings)?;
    let body = soap::body_of(STEP, &doc)?;
    // discovery.response_element (fail): nothing to enroll with otherwise.
    let resp = soap::req_child(STEP, body, NS_ENROLLMENT, "DiscoverResponse")?;
    let result = soap::req_child(STEP, resp, NS_ENROLLMENT, "DiscoverResult")?;
    let get = |name: &str| soap::req_text(STEP, result, NS_ENROLLMENT, name);
    let optional = |name: &str| {
        soap::child(result, NS_ENROLLMENT, name)
            .map(soap::text)
            .filter(|t| !t.is_empty())
    };
    // discovery.auth_policy, discovery.enrollment_service_url (fail): minOccurs="1" in
    // [MS-MDE2] §3.1.4.1.3.2; without them there is no way to authenticate or enroll.
    // discovery.https_url (fail): the enrollment services are reached over HTTPS only
    // ([MS-MDE2] §2.1 transport: SOAP over HTTPS).
    let auth_policy = get("AuthPolicy")?;
    let enroll_url = https_url("EnrollmentServiceUrl", get("EnrollmentServiceUrl")?)?;
    // EnrollmentVersion: minOccurs="0" nillable (§3.1.4.1.3.2): no check, no warning.
    let enrollment_version = optional("EnrollmentVersion").unwrap_or_default();
    // discovery.enrollment_policy_service_url (warn): minOccurs="0" nillable in the
    // schema, but §3.2 has the client call MS-XCEP there and every published response
    // carries it. The emulation then asks the enrollment service for the policy (the
    // documentation examples serve both from one URL).
    let policy_url = match optional("EnrollmentPolicyServiceUrl") {
        Some(u) => https_url("EnrollmentPolicyServiceUrl", u)?,
        None => {
            crate::warning::warn(
                warnings,
                "discovery.enrollment_policy_service_url",
                "DiscoverResult has no EnrollmentPolicyServiceUrl; GetPolicies goes to EnrollmentServiceUrl",
            );
            enroll_url.clone()
        }
    };
    let authentication_service_url = optional("AuthenticationServiceUrl");
    // discovery.authentication_service_url (fail): Federated authentication starts at
    // this URL (§3.1.4.1.3.2, §3.2); Windows cannot get a token without it.
    if auth_policy == "Federated" && authentication_service_url.is_none() {
        return Err(ClientError::missing(
            STEP,
            "DiscoverResult/AuthenticationServiceUrl (required for Federated)",
        ));
    }
    Ok(DiscoverResult {
        auth_policy,
        enrollment_version,
        enrollment_policy_service_url: policy_url,
        enrollment_service_url: enroll_url,
        authentication_service_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_comes_from_the_email_domain() {
        assert_eq!(
            discovery_url_for_email("Alice@Contoso.COM").unwrap(),
            "https://enterpriseenrollment.contoso.com/EnrollmentServer/Discovery.svc"
        );
        assert_eq!(
            discovery_url_for_email("a.b@corp.example.org.").unwrap(),
            "https://enterpriseenrollment.corp.example.org/EnrollmentServer/Discovery.svc"
        );
    }

    #[test]
    fn addresses_without_a_domain_are_refused() {
        for bad in [
            "alice",
            "@contoso.com",
            "alice@",
            "alice@localhost",
            "alice@contoso..com",
            "alice@-contoso.com",
            "alice@contoso.com/evil",
        ] {
            assert!(discovery_url_for_email(bad).is_err(), "{bad}");
        }
    }
}
