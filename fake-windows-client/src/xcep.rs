//! MS-XCEP GetPolicies: which key and hash the certificate request must use ([MS-XCEP] §3.1.4.1).

use crate::csr::HashAlg;
use crate::error::ClientError;
use crate::soap;

pub const NS_POLICY: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy";
pub const ACTION_GET_POLICIES: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies";
pub const ACTION_GET_POLICIES_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse";
const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const STEP: &str = "get_policies";
const OID_SHA1_RSA_OIW: &str = "1.3.14.3.2.29";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
/// Key length when the policy leaves it open.
pub const DEFAULT_KEY_BITS: u32 = 2048;

/// The parts of the first policy the device acts on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnrollmentPolicy {
    pub policy_schema: u32,
    pub minimal_key_length: u32,
    /// Resolved hash OID, `None` when the policy leaves it nil.
    pub hash_oid: Option<String>,
    pub hash: HashAlg,
    pub validity_period_seconds: Option<u64>,
    pub renewal_period_seconds: Option<u64>,
}

/// The GetPolicies request with the DeviceEnrollmentUserToken in the security header.
pub fn build_request(message_id: &str, to: &str, token: &str) -> String {
    build_request_as(message_id, to, &crate::credential::Credential::Token(token))
}

/// The GetPolicies request authenticated with `credential`.
pub fn build_request_as(
    message_id: &str,
    to: &str,
    credential: &crate::credential::Credential<'_>,
) -> String {
    let body = format!(
        concat!(
            r#"<GetPolicies xmlns="{ns}"><client><lastUpdate xsi:nil="true" xmlns:xsi="{xsi}"/>"#,
            r#"<preferredLanguage xsi:nil="true" xmlns:xsi="{xsi}"/></client>"#,
            r#"<requestFilter xsi:nil="true" xmlns:xsi="{xsi}"/></GetPolicies>"#
        ),
        ns = NS_POLICY,
        xsi = NS_XSI
    );
    soap::envelope_with_header(
        ACTION_GET_POLICIES,
        message_id,
        to,
        &soap::security_header(credential),
        &body,
    )
}

fn is_nil(n: roxmltree::Node) -> bool {
    n.attribute((NS_XSI, "nil")) == Some("true")
}

fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ClientError> {
    text.parse()
        .map_err(|_| ClientError::invalid(STEP, format!("{name} is not a number: {text:?}")))
}

/// [`parse_response_with`], dropping warnings.
pub fn parse_response(xml: &str, message_id: &str) -> Result<EnrollmentPolicy, ClientError> {
    parse_response_with(xml, message_id, &mut Vec::new())
}

/// Parses a GetPoliciesResponse envelope (HTTP status and faults already checked).
pub fn parse_response_with(
    xml: &str,
    message_id: &str,
    warnings: &mut Vec<crate::Warning>,
) -> Result<EnrollmentPolicy, ClientError> {
    let doc = soap::parse_envelope_with(
        STEP,
        xml,
        ACTION_GET_POLICIES_RESPONSE,
        message_id,
        warnings,
    )?;
    let body = soap::body_of(STEP, &doc)?;
    // xcep.policy_element (fail): response/policies/policy/attributes are required
    // ([MS-XCEP] §3.1.4.1.3.23 Response, §3.1.4.1.3.4 Attributes); without a policy the
    // client has no key or hash to request with.
    let resp = soap::req_child(STEP, body, NS_POLICY, "GetPoliciesResponse")?;
    let response = soap::req_child(STEP, resp, NS_POLICY, "response")?;
    let policies = soap::req_child(STEP, response, NS_POLICY, "policies")?;
    let policy = soap::req_child(STEP, policies, NS_POLICY, "policy")?;
    let attrs = soap::req_child(STEP, policy, NS_POLICY, "attributes")?;
    let policy_schema: u32 = number(
        "policySchema",
        &soap::req_text(STEP, attrs, NS_POLICY, "policySchema")?,
    )?;
    // xcep.policy_schema (fail): policySchema is required and is 1, 2 or 3
    // ([MS-XCEP] §3.1.4.1.3.4); another value is a schema Windows does not implement.
    if !(1..=3).contains(&policy_schema) {
        return Err(ClientError::invalid(
            STEP,
            format!("policySchema {policy_schema} is not 1, 2 or 3"),
        ));
    }
    // xcep.minimal_key_length (fail): privateKeyAttributes/minimalKeyLength is required
    // and not nillable ([MS-XCEP] §3.1.4.1.3.20); the key is generated from it.
    let pka = soap::req_child(STEP, attrs, NS_POLICY, "privateKeyAttributes")?;
    let minimal_key_length: u32 = number(
        "minimalKeyLength",
        &soap::req_text(STEP, pka, NS_POLICY, "minimalKeyLength")?,
    )?;
    if !(512..=16384).contains(&minimal_key_length) {
        return Err(ClientError::invalid(
            STEP,
            format!("minimalKeyLength {minimal_key_length} out of range"),
        ));
    }
    let hash_ref = soap::child(attrs, NS_POLICY, "hashAlgorithmOIDReference")
        .filter(|n| !is_nil(*n))
        .map(soap::text)
        .filter(|t| !t.is_empty());
    // xcep.hash_algorithm (fail): a reference must resolve in oIDs ([MS-XCEP]
    // §3.1.4.1.3.16) to a hash the client can sign with; MS-MDE2 §3.2 allows SHA-1 and
    // SHA-256 only.
    // A nil reference leaves the choice to the client; Windows then signs with sha1RSA
    // (1.3.14.3.2.29), as a published capture of a Windows 10 enrollment shows.
    let (hash_oid, hash) = match hash_ref {
        None => (None, HashAlg::Sha1),
        Some(r) => {
            let value = resolve_oid(resp, &r)?;
            let hash = match value.as_str() {
                OID_SHA1_RSA_OIW => HashAlg::Sha1,
                OID_SHA256 => HashAlg::Sha256,
                other => {
                    return Err(ClientError::invalid(
                        STEP,
                        format!("hashAlgorithmOIDReference {r} names unsupported OID {other}"),
                    ))
                }
            };
            (Some(value), hash)
        }
    };
    // xcep.validity_period (fail): validityPeriodSeconds / renewalPeriodSeconds are
    // xs:unsignedLong ([MS-XCEP] §3.1.4.1.3.6); text that is not a number is malformed.
    let validity = soap::child(attrs, NS_POLICY, "certificateValidity").filter(|n| !is_nil(*n));
    let period = |name: &str| -> Result<Option<u64>, ClientError> {
        match validity.and_then(|v| soap::child(v, NS_POLICY, name)) {
            Some(n) if !is_nil(n) => number(name, &soap::text(n)).map(Some),
            _ => Ok(None),
        }
    };
    Ok(EnrollmentPolicy {
        policy_schema,
        minimal_key_length,
        hash_oid,
        hash,
        validity_period_seconds: period("validityPeriodSeconds")?,
        renewal_period_seconds: period("renewalPeriodSeconds")?,
    })
}

/// Finds `oIDs/oID[oIDReferenceID = r]/value` ([MS-XCEP] §3.1.4.1.3.16).
fn resolve_oid(resp: roxmltree::Node, r: &str) -> Result<String, ClientError> {
    let oids = soap::req_child(STEP, resp, NS_POLICY, "oIDs")?;
    for oid in oids
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "oID")
    {
        let id = soap::child(oid, NS_POLICY, "oIDReferenceID").map(soap::text);
        if id.as_deref() == Some(r) {
            return soap::req_text(STEP, oid, NS_POLICY, "value");
        }
    }
    Err(ClientError::missing(
        STEP,
        format!("GetPoliciesResponse/oIDs/oID with oIDReferenceID {r}"),
    ))
}
