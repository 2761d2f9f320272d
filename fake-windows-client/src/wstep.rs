//! MS-WSTEP RequestSecurityToken and its RequestSecurityTokenResponseCollection
//! ([MS-WSTEP] §3.1.4.1, [MS-MDE2] §3.3).

use crate::error::ClientError;
use crate::soap::{self, NS_WSSE, NS_WST, NS_WSU};
use crate::xml::esc;
use base64::Engine;

pub const ACTION_RST: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
pub const ACTION_RSTRC: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep";
pub const TOKEN_TYPE: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken";
pub const REQUEST_TYPE_ISSUE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
pub const PKCS10_VALUE_TYPE: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
pub const PROVISION_DOC_VALUE_TYPE: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc";
const STEP: &str = "request_security_token";

/// AdditionalContext items, in the given order (names may repeat, as `MAC` does).
fn context_items(context: &[(&str, String)]) -> String {
    context
        .iter()
        .map(|(n, v)| {
            format!(
                r#"<ac:ContextItem Name="{}"><ac:Value>{}</ac:Value></ac:ContextItem>"#,
                esc(n),
                esc(v)
            )
        })
        .collect()
}

/// Builds the RST carrying the CSR and the AdditionalContext items (in the given order;
/// names may repeat, as `MAC` does on Windows).
pub fn build_request(
    message_id: &str,
    to: &str,
    token: &str,
    csr_der: &[u8],
    context: &[(&str, String)],
) -> String {
    build_request_as(
        message_id,
        to,
        &crate::credential::Credential::Token(token),
        csr_der,
        context,
    )
}

/// The RST authenticated with `credential`.
pub fn build_request_as(
    message_id: &str,
    to: &str,
    credential: &crate::credential::Credential<'_>,
    csr_der: &[u8],
    context: &[(&str, String)],
) -> String {
    let items = context_items(context);
    let body = format!(
        concat!(
            "<wst:RequestSecurityToken><wst:TokenType>{tt}</wst:TokenType>",
            "<wst:RequestType>{rt}</wst:RequestType>",
            r#"<wsse:BinarySecurityToken ValueType="{vt}" EncodingType="{et}">{csr}</wsse:BinarySecurityToken>"#,
            r#"<ac:AdditionalContext xmlns="http://schemas.xmlsoap.org/ws/2006/12/authorization">{items}</ac:AdditionalContext>"#,
            "</wst:RequestSecurityToken>"
        ),
        tt = TOKEN_TYPE,
        rt = REQUEST_TYPE_ISSUE,
        vt = PKCS10_VALUE_TYPE,
        et = soap::BASE64_ENCODING_TYPE,
        csr = base64::engine::general_purpose::STANDARD.encode(csr_der),
        items = items
    );
    soap::envelope_with_header(
        ACTION_RST,
        message_id,
        to,
        &soap::security_header(credential),
        &body,
    )
}

/// wstep.chunked_response (fail): "The HTTP server response must not set
/// Transfer-Encoding to Chunked; it must be sent as one message" (Mobile device
/// enrollment, enrollment web service).
pub fn check_not_chunked(step: &'static str, chunked: bool) -> Result<(), ClientError> {
    if chunked {
        return Err(ClientError::invalid(
            step,
            "RequestSecurityTokenResponseCollection sent with Transfer-Encoding: chunked; Windows needs it as one message",
        ));
    }
    Ok(())
}

/// [`parse_response_with`], dropping warnings.
pub fn parse_response(xml: &str, message_id: &str) -> Result<String, ClientError> {
    parse_response_with(xml, message_id, &mut Vec::new())
}

/// Parses the RSTRC envelope and returns the decoded provisioning document (UTF-8 XML).
pub fn parse_response_with(
    xml: &str,
    message_id: &str,
    warnings: &mut Vec<crate::Warning>,
) -> Result<String, ClientError> {
    let doc = soap::parse_envelope_with(STEP, xml, ACTION_RSTRC, message_id, warnings)?;
    let root = doc.root_element();
    let header = soap::req_child(STEP, root, soap::NS_SOAP12, "Header")?;
    // wstep.security_timestamp (warn): Microsoft's RSTRC sample carries a wsse:Security
    // u:Timestamp, but the response is protected by TLS, not by message security, and no
    // document says the client requires the header.
    let ts =
        soap::child(header, NS_WSSE, "Security").and_then(|s| soap::child(s, NS_WSU, "Timestamp"));
    let complete = ts.is_some_and(|ts| {
        ["Created", "Expires"]
            .iter()
            .all(|n| soap::child(ts, NS_WSU, n).is_some_and(|c| !soap::text(c).is_empty()))
    });
    if !complete {
        crate::warning::warn(
            warnings,
            "wstep.security_timestamp",
            "response header has no wsse:Security/u:Timestamp with Created and Expires",
        );
    }
    let body = soap::body_of(STEP, &doc)?;
    // wstep.response_element (fail): the collection, its response and the requested token
    // carry the provisioning document ([MS-WSTEP] §3.1.4.1.2.3, [MS-MDE2] §3.3.4.2).
    let coll = soap::req_child(STEP, body, NS_WST, "RequestSecurityTokenResponseCollection")?;
    let rstr = soap::req_child(STEP, coll, NS_WST, "RequestSecurityTokenResponse")?;
    // wstep.token_type, wstep.value_type, wstep.encoding_type (fail): [MS-MDE2]
    // §3.3.4.2 fixes TokenType DeviceEnrollmentToken and the BinarySecurityToken
    // ValueType DeviceEnrollmentProvisionDoc; they say what the token is, and Windows
    // hands only a provisioning document to the configuration manager.
    let token_type = soap::req_text(STEP, rstr, NS_WST, "TokenType")?;
    if token_type != TOKEN_TYPE {
        return Err(ClientError::invalid(
            STEP,
            format!("TokenType is {token_type:?}, expected {TOKEN_TYPE}"),
        ));
    }
    let rst = soap::req_child(STEP, rstr, NS_WST, "RequestedSecurityToken")?;
    let bst = soap::req_child(STEP, rst, NS_WSSE, "BinarySecurityToken")?;
    let vt = bst.attribute("ValueType").unwrap_or("");
    if vt != PROVISION_DOC_VALUE_TYPE {
        return Err(ClientError::invalid(
            STEP,
            format!("BinarySecurityToken ValueType is {vt:?}, expected {PROVISION_DOC_VALUE_TYPE}"),
        ));
    }
    if let Some(et) = bst.attribute("EncodingType") {
        if et != soap::BASE64_ENCODING_TYPE {
            return Err(ClientError::invalid(
                STEP,
                format!("BinarySecurityToken EncodingType is {et:?}"),
            ));
        }
    }
    // wstep.token_content (fail): base64 of a UTF-8 wap-provisioningdoc (§3.3.4.2);
    // whitespace inside the base64 is ignored.
    let b64 = soap::compact_base64(&soap::text(bst));
    if b64.is_empty() {
        return Err(ClientError::missing(STEP, "BinarySecurityToken content"));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| {
            ClientError::invalid(STEP, format!("BinarySecurityToken is not base64: {e}"))
        })?;
    String::from_utf8(raw)
        .map_err(|_| ClientError::invalid(STEP, "provisioning document is not UTF-8"))
}

pub const REQUEST_TYPE_RENEW: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew";
pub const PKCS7_VALUE_TYPE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#PKCS7";
const PASSWORD_TEXT: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";

/// What a renewal request carries besides the PKCS#7.
pub struct RenewRequest<'a> {
    pub message_id: &'a str,
    pub to: &'a str,
    pub upn: &'a str,
    /// `u:Timestamp` Created / Expires (RFC 3339, UTC).
    pub created: &'a str,
    pub expires: &'a str,
    pub pkcs7_der: &'a [u8],
    pub context: &'a [(&'a str, String)],
}

/// The RST with RequestType Renew: `wsse:Security` holds a `u:Timestamp` and a
/// UsernameToken with the UPN and an empty password (the request is authenticated by the
/// TLS client certificate and the PKCS#7 signature), as in Microsoft's renewal sample.
pub fn build_renew_request(r: &RenewRequest) -> String {
    let security = format!(
        concat!(
            r#"<wsse:Security s:mustUnderstand="1"><u:Timestamp u:Id="_0"><u:Created>{c}</u:Created><u:Expires>{e}</u:Expires></u:Timestamp>"#,
            r#"<wsse:UsernameToken u:Id="uuid-{id}-1"><wsse:Username>{upn}</wsse:Username><wsse:Password wsse:Type="{pt}"></wsse:Password></wsse:UsernameToken></wsse:Security>"#
        ),
        c = esc(r.created),
        e = esc(r.expires),
        id = uuid::Uuid::new_v4(),
        upn = esc(r.upn),
        pt = PASSWORD_TEXT
    );
    let items = context_items(r.context);
    let body = format!(
        concat!(
            "<wst:RequestSecurityToken><wst:TokenType>{tt}</wst:TokenType>",
            "<wst:RequestType>{rt}</wst:RequestType>",
            r#"<wsse:BinarySecurityToken ValueType="{vt}" EncodingType="{et}">{p7}</wsse:BinarySecurityToken>"#,
            "<ac:AdditionalContext>{items}</ac:AdditionalContext>",
            "</wst:RequestSecurityToken>"
        ),
        tt = TOKEN_TYPE,
        rt = REQUEST_TYPE_RENEW,
        vt = PKCS7_VALUE_TYPE,
        et = soap::BASE64_ENCODING_TYPE,
        p7 = base64::engine::general_purpose::STANDARD.encode(r.pkcs7_der),
        items = items
    );
    soap::envelope_with_header(ACTION_RST, r.message_id, r.to, &security, &body)
}
