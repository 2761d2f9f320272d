//! SOAP 1.2 + WS-Addressing envelopes for the enrollment endpoints (MS-MDE2 §2.2).
//!
//! Parsing is namespace-aware and order-independent (Windows sends xsd:all content in
//! any order) and tolerant of the whitespace real captures show around values.
//! Responses carry a WCF-style `ActivityId` header; the HTTP layer sends them with
//! `Content-Length` (`http::respond`).

use quick_xml::escape::escape;

pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_ADDRESSING: &str = "http://www.w3.org/2005/08/addressing";
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub const NS_ENROLLMENT_DISCOVERY: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment";
pub const NS_XCEP: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy";
pub const NS_WSTEP: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment";
pub const NS_WSTRUST: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
pub const NS_AC: &str = "http://schemas.xmlsoap.org/ws/2006/12/authorization";

/// ValueType of the token Windows passes through from `RegisterDeviceWithManagement`.
pub const VALUE_TYPE_USER_TOKEN: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken";
/// EncodingType suffix for base64 binary security tokens.
pub const ENCODING_BASE64: &str = "#base64binary";

/// Content type of SOAP 1.2 messages.
pub const SOAP_CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";

/// Maximum number of XML nodes accepted in a SOAP request.
const MAX_NODES: u32 = 20_000;

/// MS-MDE2 §2.2.9 fault subcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSubcode {
    MessageFormat,
    Authentication,
    Authorization,
    CertificateRequest,
    EnrollmentServer,
    InternalServiceFault,
    InvalidSecurity,
}

impl FaultSubcode {
    /// The QName Windows expects in `s:Subcode/s:Value`.
    pub fn qname(self) -> &'static str {
        match self {
            FaultSubcode::MessageFormat => "s:MessageFormat",
            FaultSubcode::Authentication => "s:Authentication",
            FaultSubcode::Authorization => "s:Authorization",
            FaultSubcode::CertificateRequest => "s:CertificateRequest",
            FaultSubcode::EnrollmentServer => "s:EnrollmentServer",
            FaultSubcode::InternalServiceFault => "a:InternalServiceFault",
            FaultSubcode::InvalidSecurity => "a:InvalidSecurity",
        }
    }
}

/// A SOAP fault to send back: MS-MDE2 §2.2.9, with the optional
/// `DeviceEnrollmentServiceError` detail.
#[derive(Debug, Clone)]
pub struct Fault {
    pub subcode: FaultSubcode,
    pub reason: String,
    pub error_type: Option<&'static str>,
    /// The request's MessageID, echoed in RelatesTo when known.
    pub relates_to: Option<String>,
}

impl Fault {
    pub fn new(subcode: FaultSubcode, reason: impl Into<String>) -> Self {
        Fault {
            subcode,
            reason: reason.into(),
            error_type: None,
            relates_to: None,
        }
    }

    pub fn with_error_type(mut self, error_type: &'static str) -> Self {
        self.error_type = Some(error_type);
        self
    }

    pub fn relating_to(mut self, message_id: Option<&str>) -> Self {
        self.relates_to = message_id.map(str::to_string);
        self
    }

    /// The fault envelope.
    pub fn to_xml(&self) -> String {
        let activity = random_uuid();
        let detail = match self.error_type {
            Some(t) => format!(
                "<s:Detail><DeviceEnrollmentServiceError xmlns=\"{NS_WSTEP}\"><ErrorType>{t}</ErrorType><Message>{}</Message><TraceId>{activity}</TraceId></DeviceEnrollmentServiceError></s:Detail>",
                escape(&self.reason)
            ),
            None => String::new(),
        };
        let relates = relates_to_header(self.relates_to.as_deref());
        format!(
            "<s:Envelope xmlns:s=\"{NS_SOAP12}\" xmlns:a=\"{NS_ADDRESSING}\"><s:Header><a:Action s:mustUnderstand=\"1\">http://www.w3.org/2005/08/addressing/soap/fault</a:Action>{}{relates}</s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{}</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{}</s:Text></s:Reason>{detail}</s:Fault></s:Body></s:Envelope>",
            activity_id(activity),
            self.subcode.qname(),
            escape(&self.reason),
        )
    }
}

/// A version 4 (random) UUID from the thread's CSPRNG (`rand::thread_rng`, seeded from
/// the OS), not a `getrandom` system call each: one per response and one per request id.
pub fn random_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

fn activity_id(id: uuid::Uuid) -> String {
    format!(
        "<ActivityId CorrelationId=\"{id}\" xmlns=\"http://schemas.microsoft.com/2004/09/ServiceModel/Diagnostics\">{id}</ActivityId>"
    )
}

fn relates_to_header(message_id: Option<&str>) -> String {
    message_id
        .map(|m| format!("<a:RelatesTo>{}</a:RelatesTo>", escape(m)))
        .unwrap_or_default()
}

/// Builds a response envelope: Action, ActivityId, RelatesTo, extra header content and body.
pub fn envelope(action: &str, relates_to: Option<&str>, extra_header: &str, body: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{NS_SOAP12}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:u=\"{NS_WSU}\"><s:Header><a:Action s:mustUnderstand=\"1\">{action}</a:Action>{}{}{extra_header}</s:Header><s:Body xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">{body}</s:Body></s:Envelope>",
        activity_id(random_uuid()),
        relates_to_header(relates_to),
    )
}

/// Deepest element nesting accepted; real SOAP and SyncML stay under 20 levels.
const MAX_DEPTH: usize = 64;

/// Whether elements nest deeper than `max` (a linear pre-scan, so that hostile nesting
/// is refused before any tree is built). Comments, CDATA, PIs and quoted attribute
/// values are skipped.
fn nesting_exceeds(text: &str, max: usize) -> bool {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0usize;
    let find = |from: usize, pat: &[u8]| -> usize {
        let from = from.min(b.len());
        memchr::memmem::find(&b[from..], pat)
            .map(|p| from + p + pat.len())
            .unwrap_or(b.len())
    };
    while i < b.len() {
        // Text between tags (the CSR's base64, most of an enrollment request) is
        // skipped with a vectorised search for the next `<`.
        match memchr::memchr(b'<', &b[i..]) {
            Some(p) => i += p,
            None => break,
        }
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            i = find(i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = find(i + 9, b"]]>");
        } else if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
            i = find(i + 2, b">");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            i = find(i + 2, b">");
        } else {
            // A start tag: find its end outside quoted attribute values.
            let mut j = i + 1;
            let mut quote = None;
            while j < b.len() {
                match (quote, b[j]) {
                    (None, b'"') | (None, b'\'') => quote = Some(b[j]),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            if j < b.len() && b[j - 1] != b'/' {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            i = j + 1;
        }
    }
    false
}

/// Parses XML with DTDs refused (no entity expansion, no external entities), a node
/// cap and a nesting cap.
pub fn parse_xml(text: &str) -> Result<roxmltree::Document<'_>, String> {
    if nesting_exceeds(text, MAX_DEPTH) {
        return Err(format!(
            "malformed XML: elements nested deeper than {MAX_DEPTH} levels"
        ));
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    roxmltree::Document::parse_with_options(text, opts).map_err(|e| format!("malformed XML: {e}"))
}

/// The parts of a request envelope the endpoints need.
#[derive(Debug)]
pub struct Request<'a, 'input> {
    pub action: String,
    pub message_id: Option<String>,
    pub header: roxmltree::Node<'a, 'input>,
    /// The first element child of `s:Body`.
    pub body: roxmltree::Node<'a, 'input>,
}

/// Validates the envelope and returns its parts; `expected_action` must match the
/// `a:Action` header (after trimming the whitespace captures show around it).
pub fn parse_request<'a, 'input>(
    doc: &'a roxmltree::Document<'input>,
    expected_action: &str,
) -> Result<Request<'a, 'input>, Fault> {
    let root = doc.root_element();
    if root.tag_name().name() != "Envelope" {
        return Err(Fault::new(
            FaultSubcode::MessageFormat,
            "root element is not a SOAP Envelope",
        ));
    }
    if root.tag_name().namespace() != Some(NS_SOAP12) {
        return Err(Fault::new(
            FaultSubcode::MessageFormat,
            "envelope is not SOAP 1.2 (expected namespace http://www.w3.org/2003/05/soap-envelope)",
        ));
    }
    let header = child(root, NS_SOAP12, "Header")
        .ok_or_else(|| Fault::new(FaultSubcode::MessageFormat, "missing s:Header"))?;
    let message_id = child(header, NS_ADDRESSING, "MessageID").map(text);
    let action = child(header, NS_ADDRESSING, "Action")
        .map(text)
        .ok_or_else(|| {
            Fault::new(FaultSubcode::MessageFormat, "missing a:Action header")
                .relating_to(message_id.as_deref())
        })?;
    if action != expected_action {
        return Err(Fault::new(
            FaultSubcode::MessageFormat,
            format!("unexpected a:Action {action:?} (this endpoint serves {expected_action})"),
        )
        .relating_to(message_id.as_deref()));
    }
    let body = child(root, NS_SOAP12, "Body")
        .and_then(|b| b.children().find(|c| c.is_element()))
        .ok_or_else(|| {
            Fault::new(FaultSubcode::MessageFormat, "missing or empty s:Body")
                .relating_to(message_id.as_deref())
        })?;
    Ok(Request {
        action,
        message_id,
        header,
        body,
    })
}

/// First child element with the given namespace and local name.
pub fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|c| {
        c.is_element() && c.tag_name().name() == name && c.tag_name().namespace() == Some(ns)
    })
}

/// First child element with the given local name, whatever its namespace.
pub fn child_local<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// Trimmed text content of an element.
pub fn text(node: roxmltree::Node<'_, '_>) -> String {
    node.text().unwrap_or("").trim().to_string()
}

/// An attribute by local name, with or without a namespace prefix (captures show both
/// `ValueType` and `wsse:ValueType`).
pub fn attr_local<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.name() == name)
        .map(|a| a.value())
}

/// A WS-Security UsernameToken (OnPremise authentication with a user name and password,
/// MS-MDE2 §3.1.4.1.1.2), if the request carries one.
pub fn username_token(req: &Request<'_, '_>) -> Option<(String, String)> {
    let security = child(req.header, NS_WSSE, "Security")?;
    let token = child(security, NS_WSSE, "UsernameToken")?;
    let username = child(token, NS_WSSE, "Username").map(text)?;
    let password = child(token, NS_WSSE, "Password")
        .map(text)
        .unwrap_or_default();
    Some((username, password))
}

/// Extracts the DeviceEnrollmentUserToken from `wsse:Security` (MS-MDE2 §3.2.4.1,
/// MS-XCEP §3.1.4.1.1.1): a base64 BinarySecurityToken; the decoded bytes are the token.
pub fn user_token(req: &Request<'_, '_>) -> Result<String, Fault> {
    use base64::Engine;
    let mid = req.message_id.as_deref();
    let security = child(req.header, NS_WSSE, "Security").ok_or_else(|| {
        Fault::new(
            FaultSubcode::InvalidSecurity,
            "missing wsse:Security header",
        )
        .relating_to(mid)
    })?;
    if child(security, NS_WSSE, "UsernameToken").is_some() {
        return Err(Fault::new(
            FaultSubcode::Authentication,
            "UsernameToken authentication is not offered by this server; use the DeviceEnrollmentUserToken",
        )
        .relating_to(mid));
    }
    let bst = child(security, NS_WSSE, "BinarySecurityToken").ok_or_else(|| {
        Fault::new(
            FaultSubcode::InvalidSecurity,
            "missing wsse:BinarySecurityToken",
        )
        .relating_to(mid)
    })?;
    let value_type = attr_local(bst, "ValueType").unwrap_or("").trim();
    if value_type != VALUE_TYPE_USER_TOKEN {
        return Err(Fault::new(
            FaultSubcode::InvalidSecurity,
            format!("unsupported BinarySecurityToken ValueType {value_type:?}"),
        )
        .relating_to(mid));
    }
    let encoding = attr_local(bst, "EncodingType").unwrap_or("").trim();
    if !encoding.ends_with(ENCODING_BASE64) {
        return Err(Fault::new(
            FaultSubcode::InvalidSecurity,
            format!("unsupported BinarySecurityToken EncodingType {encoding:?}"),
        )
        .relating_to(mid));
    }
    let b64: String = text(bst).split_whitespace().collect();
    if b64.is_empty() || b64.len() > 8192 {
        return Err(Fault::new(
            FaultSubcode::Authentication,
            "empty or oversized security token",
        )
        .relating_to(mid));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| {
            Fault::new(
                FaultSubcode::InvalidSecurity,
                "security token is not valid base64",
            )
            .relating_to(mid)
        })?;
    String::from_utf8(raw).map_err(|_| {
        Fault::new(
            FaultSubcode::Authentication,
            "security token is not valid UTF-8",
        )
        .relating_to(mid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_eq!(a.get_version(), Some(uuid::Version::Random));
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }

    #[test]
    fn nesting_scan_counts_only_real_elements() {
        let ok = "<a x='>' y=\"<b>\"><!-- <c><c><c> --><![CDATA[<d><d>]]><e/><f></f></a>";
        assert!(!nesting_exceeds(ok, 2));
        assert!(nesting_exceeds("<a><b><c></c></b></a>", 2));
        assert!(!nesting_exceeds("<a><b/><b/><b/></a>", 2));
    }
}
