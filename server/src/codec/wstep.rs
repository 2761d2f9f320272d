//! MS-WSTEP RequestSecurityToken and its response (MS-WSTEP §3.1.4.1.2): the request's
//! parts and the RequestSecurityTokenResponseCollection carrying the provisioning
//! document.

use std::collections::BTreeMap;

use base64::Engine;
use time::format_description::well_known::Rfc3339;

use crate::soap::{self, NS_AC, NS_WSSE, NS_WSTEP, NS_WSTRUST};

pub const ACTION_RST: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
pub const ACTION_RSTRC: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep";
pub const TOKEN_TYPE: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken";
pub const REQUEST_TYPE_ISSUE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
pub const REQUEST_TYPE_RENEW: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew";
pub const VALUE_TYPE_PKCS10: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
pub const VALUE_TYPE_PROVISION_DOC: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc";

/// The parts of a RequestSecurityToken the server uses.
#[derive(Debug)]
pub struct RstRequest {
    pub request_type: String,
    /// ValueType of the request token: PKCS#10, or PKCS#7 for renewals.
    pub token_value_type: String,
    /// The decoded request token: a DER PKCS#10, or a CMS SignedData wrapping one.
    pub csr_der: Vec<u8>,
    /// AdditionalContext items; repeated names (MAC) keep every value.
    pub context: BTreeMap<String, Vec<String>>,
}

impl RstRequest {
    /// First value of a context item, if present and non-empty.
    pub fn context(&self, name: &str) -> Option<&str> {
        self.context
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Parses `wst:RequestSecurityToken` (MS-WSTEP §3.1.4.1.2; children in any order).
pub fn parse_rst(body: roxmltree::Node<'_, '_>) -> Result<RstRequest, String> {
    if body.tag_name().name() != "RequestSecurityToken"
        || body.tag_name().namespace() != Some(NS_WSTRUST)
    {
        return Err("body is not a wst:RequestSecurityToken".into());
    }
    let token_type = soap::child(body, NS_WSTRUST, "TokenType")
        .map(soap::text)
        .ok_or("missing wst:TokenType")?;
    if token_type != TOKEN_TYPE {
        return Err(format!("unsupported TokenType {token_type:?}"));
    }
    let request_type = soap::child(body, NS_WSTRUST, "RequestType")
        .map(soap::text)
        .ok_or("missing wst:RequestType")?;
    let bst = soap::child(body, NS_WSSE, "BinarySecurityToken")
        .ok_or("missing wsse:BinarySecurityToken (the CSR)")?;
    let value_type = soap::attr_local(bst, "ValueType").unwrap_or("").trim();
    if value_type != VALUE_TYPE_PKCS10 && !value_type.ends_with("#PKCS7") {
        return Err(format!(
            "unsupported BinarySecurityToken ValueType {value_type:?}; expected PKCS#10 or PKCS#7"
        ));
    }
    let b64: String = soap::text(bst).split_whitespace().collect();
    let csr_der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| "the PKCS#10 BinarySecurityToken is not valid base64".to_string())?;
    let mut context: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(ac) = soap::child(body, NS_AC, "AdditionalContext") {
        for item in ac
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "ContextItem")
        {
            let Some(name) = item.attribute("Name") else {
                continue;
            };
            let value = soap::child_local(item, "Value")
                .map(soap::text)
                .unwrap_or_default();
            context.entry(name.to_string()).or_default().push(value);
        }
    }
    Ok(RstRequest {
        request_type,
        token_value_type: value_type.to_string(),
        csr_der,
        context,
    })
}

/// The RequestSecurityTokenResponseCollection envelope (MS-WSTEP §3.1.4.1.2.2).
pub fn rstrc(relates_to: Option<&str>, provisioning_doc: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    let created = now.format(&Rfc3339).unwrap_or_default();
    let expires = (now + time::Duration::minutes(5))
        .format(&Rfc3339)
        .unwrap_or_default();
    let security = format!(
        "<o:Security s:mustUnderstand=\"1\" xmlns:o=\"{NS_WSSE}\"><u:Timestamp u:Id=\"_0\"><u:Created>{created}</u:Created><u:Expires>{expires}</u:Expires></u:Timestamp></o:Security>"
    );
    let token = base64::engine::general_purpose::STANDARD.encode(provisioning_doc.as_bytes());
    let body = format!(
        "<RequestSecurityTokenResponseCollection xmlns=\"{NS_WSTRUST}\"><RequestSecurityTokenResponse><TokenType>{TOKEN_TYPE}</TokenType><DispositionMessage xmlns=\"{NS_WSTEP}\"></DispositionMessage><RequestedSecurityToken><BinarySecurityToken ValueType=\"{VALUE_TYPE_PROVISION_DOC}\" EncodingType=\"{NS_WSSE}#base64binary\" xmlns=\"{NS_WSSE}\">{token}</BinarySecurityToken></RequestedSecurityToken><RequestID xmlns=\"{NS_WSTEP}\">0</RequestID></RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection>"
    );
    soap::envelope(ACTION_RSTRC, relates_to, &security, &body)
}
