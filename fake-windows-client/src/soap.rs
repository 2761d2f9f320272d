//! SOAP 1.2 / WS-Addressing envelopes shared by discovery, policy and enrollment
//! ([MS-MDE2] §2.2, [MS-XCEP] §2.2, [MS-WSTEP] §2.2).

use crate::error::{ClientError, SoapFault};
use crate::http::media_type;
use crate::warning::{warn, Warning};
use crate::xml::esc;
use roxmltree::{Document, Node};

pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const NS_ADDRESSING: &str = "http://www.w3.org/2005/08/addressing";
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub const NS_WST: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
pub const NS_AC: &str = "http://schemas.xmlsoap.org/ws/2006/12/authorization";
pub const ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";
pub const USER_TOKEN_VALUE_TYPE: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken";
pub const BASE64_ENCODING_TYPE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary";
pub const CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";
pub const USER_AGENT: &str = "ENROLLClient";

/// A fresh WS-Addressing MessageID.
pub fn new_message_id() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

/// Builds a request envelope. `token` adds a `wsse:Security` header carrying the
/// DeviceEnrollmentUserToken as base64 ([MS-MDE2] §3.3.4.1: the token is opaque).
pub fn envelope(
    action: &str,
    message_id: &str,
    to: &str,
    token: Option<&str>,
    body: &str,
) -> String {
    use base64::Engine;
    let security = match token {
        Some(t) => format!(
            r#"<wsse:Security s:mustUnderstand="1"><wsse:BinarySecurityToken ValueType="{USER_TOKEN_VALUE_TYPE}" EncodingType="{BASE64_ENCODING_TYPE}">{}</wsse:BinarySecurityToken></wsse:Security>"#,
            base64::engine::general_purpose::STANDARD.encode(t.as_bytes())
        ),
        None => String::new(),
    };
    envelope_with_header(action, message_id, to, &security, body)
}

/// The `wsse:Security` header for the enrollment credential: the DeviceEnrollmentUserToken
/// as a base64 BinarySecurityToken, or an OnPremise UsernameToken with a PasswordText
/// password ([MS-MDE2] §2.2.9.1 / WS-Security UsernameToken Profile 1.0).
pub fn security_header(credential: &crate::credential::Credential<'_>) -> String {
    use base64::Engine;
    match credential {
        crate::credential::Credential::Token(t) => format!(
            r#"<wsse:Security s:mustUnderstand="1"><wsse:BinarySecurityToken ValueType="{USER_TOKEN_VALUE_TYPE}" EncodingType="{BASE64_ENCODING_TYPE}">{}</wsse:BinarySecurityToken></wsse:Security>"#,
            base64::engine::general_purpose::STANDARD.encode(t.as_bytes())
        ),
        crate::credential::Credential::UsernamePassword { username, password } => format!(
            r#"<wsse:Security s:mustUnderstand="1"><wsse:UsernameToken u:Id="uuid-{}-1"><wsse:Username>{}</wsse:Username><wsse:Password wsse:Type="{}">{}</wsse:Password></wsse:UsernameToken></wsse:Security>"#,
            uuid::Uuid::new_v4(),
            esc(username),
            crate::credential::PASSWORD_TEXT,
            esc(password)
        ),
    }
}

/// Builds a request envelope with `extra_header` (e.g. a `wsse:Security`) after `a:To`.
pub fn envelope_with_header(
    action: &str,
    message_id: &str,
    to: &str,
    extra_header: &str,
    body: &str,
) -> String {
    format!(
        concat!(
            r#"<s:Envelope xmlns:s="{s}" xmlns:a="{a}" xmlns:u="{u}" xmlns:wsse="{wsse}" xmlns:wst="{wst}" xmlns:ac="{ac}">"#,
            r#"<s:Header><a:Action s:mustUnderstand="1">{action}</a:Action><a:MessageID>{mid}</a:MessageID>"#,
            r#"<a:ReplyTo><a:Address>{anon}</a:Address></a:ReplyTo><a:To s:mustUnderstand="1">{to}</a:To>{security}</s:Header>"#,
            r#"<s:Body>{body}</s:Body></s:Envelope>"#
        ),
        s = NS_SOAP12,
        a = NS_ADDRESSING,
        u = NS_WSU,
        wsse = NS_WSSE,
        wst = NS_WST,
        ac = NS_AC,
        action = esc(action),
        mid = esc(message_id),
        anon = ANONYMOUS,
        to = esc(to),
        security = extra_header,
        body = body
    )
}

/// First element child with the given namespace and local name.
pub fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| {
        c.is_element() && c.tag_name().name() == name && c.tag_name().namespace() == Some(ns)
    })
}

/// Like [`child`], but a missing element is an error naming `path`.
pub fn req_child<'a, 'i>(
    step: &'static str,
    node: Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Result<Node<'a, 'i>, ClientError> {
    child(node, ns, name)
        .ok_or_else(|| ClientError::missing(step, format!("{}/{}", path_of(node), name)))
}

/// Slash-separated local names from the root to `node`, for error messages.
pub fn path_of(node: Node) -> String {
    let mut parts: Vec<&str> = node
        .ancestors()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    parts.reverse();
    parts.join("/")
}

/// `text` without the whitespace that may wrap base64 content (the same characters
/// `char::is_whitespace` drops, with a fast path for ASCII).
pub fn compact_base64(text: &str) -> String {
    if text.is_ascii() {
        let kept: Vec<u8> = text
            .bytes()
            .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C))
            .collect();
        return String::from_utf8(kept).unwrap_or_default();
    }
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Trimmed text content of an element (concatenated text children).
pub fn text(node: Node) -> String {
    node.children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect::<String>()
        .trim()
        .to_string()
}

/// Text of a required child; empty text counts as missing.
pub fn req_text(
    step: &'static str,
    node: Node,
    ns: &str,
    name: &str,
) -> Result<String, ClientError> {
    let c = req_child(step, node, ns, name)?;
    let t = text(c);
    if t.is_empty() {
        return Err(ClientError::missing(
            step,
            format!("{} (empty)", path_of(c)),
        ));
    }
    Ok(t)
}

/// What came back over HTTP for a SOAP step.
pub struct HttpReply<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub retry_after: Option<&'a str>,
    pub body: &'a str,
}

/// [`check_reply_with`], dropping warnings.
pub fn check_reply(step: &'static str, reply: &HttpReply) -> Result<(), ClientError> {
    check_reply_with(step, reply, &mut Vec::new())
}

/// Checks HTTP status, faults and content type. Returns nothing on success; the caller then
/// parses the envelope with [`parse_envelope_with`].
pub fn check_reply_with(
    step: &'static str,
    reply: &HttpReply,
    warnings: &mut Vec<Warning>,
) -> Result<(), ClientError> {
    // http.throttled (fail): Windows backs off on 429 and retries later; after the
    // retries the step has failed (the caller retries first, see throttle.rs).
    if reply.status == 429 {
        return Err(ClientError::Throttled {
            step,
            retry_after: reply.retry_after.map(str::to_string),
        });
    }
    // soap.fault (fail): a SOAP fault ends enrollment with the MENROLL_E_* error of its
    // subcode / ErrorType ([MS-MDE2] §2.2.10 faults; "MDM enrollment error codes").
    // A body without the text "Fault" holds no Fault element: no need to build a tree
    // that the caller builds again.
    if reply.body.contains("Fault") {
        if let Ok(doc) = crate::xml::parse(step, reply.body) {
            if let Some(fault) = parse_fault(&doc, reply.status) {
                return Err(ClientError::SoapFault(fault));
            }
        }
    }
    // http.status (fail): any other status is an HTTP_E_STATUS_* error (0x8019xxxx,
    // low bits = status) in Windows' enrollment event log.
    if reply.status != 200 {
        return Err(ClientError::Http {
            step,
            status: reply.status,
            body: reply.body.chars().take(2000).collect(),
        });
    }
    // soap.content_type (warn): SOAP 1.2's HTTP binding names application/soap+xml, and
    // every published response uses it (Microsoft's enrollment samples and Fleet:
    // "application/soap+xml; charset=utf-8"). No document says Windows refuses another
    // type; the envelope checks below decide. Parameters and case never matter.
    let ct = reply.content_type.unwrap_or("");
    if media_type(ct) != "application/soap+xml" {
        warn(
            warnings,
            "soap.content_type",
            format!("{step}: Content-Type is {ct:?}, expected application/soap+xml"),
        );
    }
    Ok(())
}

/// Extracts a SOAP 1.2 `s:Fault` from an envelope, if the body carries one.
pub fn parse_fault(doc: &Document, http_status: u16) -> Option<SoapFault> {
    let root = doc.root_element();
    if root.tag_name().name() != "Envelope" {
        return None;
    }
    let ns = root.tag_name().namespace()?;
    let body = child(root, ns, "Body")?;
    let fault = child(body, ns, "Fault")?;
    let code_el = child(fault, ns, "Code");
    let code = code_el
        .and_then(|c| child(c, ns, "Value"))
        .map(text)
        .unwrap_or_default();
    let subcode = code_el
        .and_then(|c| child(c, ns, "Subcode"))
        .and_then(|c| child(c, ns, "Value"))
        .map(text)
        .unwrap_or_default();
    let reason = child(fault, ns, "Reason")
        .and_then(|r| child(r, ns, "Text"))
        .map(text)
        .unwrap_or_default();
    let error_type = child(fault, ns, "Detail")
        .and_then(|d| {
            d.descendants()
                .find(|n| n.is_element() && n.tag_name().name() == "ErrorType")
        })
        .map(text);
    Some(SoapFault {
        http_status,
        code,
        subcode,
        reason,
        error_type,
    })
}

/// [`parse_envelope_with`], dropping warnings.
pub fn parse_envelope<'i>(
    step: &'static str,
    xml: &'i str,
    expected_action: &str,
    message_id: &str,
) -> Result<Document<'i>, ClientError> {
    parse_envelope_with(step, xml, expected_action, message_id, &mut Vec::new())
}

/// Parses a response envelope: SOAP 1.2 namespace, `a:Action` equal to `expected_action`
/// (fail-level), `a:RelatesTo` present (fail-level) and equal to our `message_id` (warn-level). Prefixes, element
/// order, whitespace around values and unknown extra elements do not matter (lookups are
/// by namespace and local name). Returns the document; use [`body_of`] for the payload.
pub fn parse_envelope_with<'i>(
    step: &'static str,
    xml: &'i str,
    expected_action: &str,
    message_id: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Document<'i>, ClientError> {
    let doc = crate::xml::parse(step, xml)?;
    {
        let root = doc.root_element();
        // soap.envelope_root (fail): nothing else is a SOAP message (SOAP 1.2 Part 1 §5.1).
        if root.tag_name().name() != "Envelope" {
            return Err(ClientError::invalid(
                step,
                format!(
                    "root element is {}, expected s:Envelope",
                    root.tag_name().name()
                ),
            ));
        }
        // soap.envelope_namespace (fail): [MS-MDE2] §2.1 and [MS-XCEP]/[MS-WSTEP] §2.1 bind
        // to SOAP 1.2; a SOAP 1.2 node answers any other envelope namespace with a
        // VersionMismatch fault instead of processing it (SOAP 1.2 Part 1 §5.4.7).
        match root.tag_name().namespace() {
            Some(NS_SOAP12) => {}
            Some(NS_SOAP11) => {
                return Err(ClientError::invalid(
                    step,
                    format!("SOAP 1.1 envelope namespace {NS_SOAP11}; the enrollment protocols use SOAP 1.2 ({NS_SOAP12})"),
                ))
            }
            other => {
                return Err(ClientError::invalid(
                    step,
                    format!("envelope namespace {other:?}, expected {NS_SOAP12}"),
                ))
            }
        }
        // soap.header, soap.action (fail): the reply's wsa:Action is REQUIRED
        // (WS-Addressing 1.0 Core §3.2) and names the message: a SOAP stack decodes the
        // reply as the operation's output only when the Action matches ([MS-MDE2]
        // §3.1.4.1, [MS-XCEP] §3.1.4.1, [MS-WSTEP] §3.1.4.1 define each one).
        let header = req_child(step, root, NS_SOAP12, "Header")?;
        let action = req_text(step, header, NS_ADDRESSING, "Action")?;
        if action != expected_action {
            return Err(ClientError::invalid(
                step,
                format!("a:Action is {action:?}, expected {expected_action:?}"),
            ));
        }
        // soap.relates_to_missing (fail): a reply of a request-response operation MUST
        // carry wsa:RelatesTo (WS-Addressing 1.0 Metadata §5.1; the 2004 submission §3:
        // "MUST be present if the message is a reply"), and every response of [MS-MDE2] §4,
        // [MS-XCEP] §4 and [MS-WSTEP] §4 has one; no public capture shows Windows
        // accepting a reply without it.
        let Some(relates) = child(header, NS_ADDRESSING, "RelatesTo").map(text) else {
            return Err(ClientError::missing(step, "Envelope/Header/RelatesTo"));
        };
        // soap.relates_to_mismatch (warn): over HTTP the reply comes back on the request's
        // connection, so the value correlates nothing; Microsoft's own published
        // responses carry RelatesTo values that differ from the request's MessageID
        // ("urn:uuid: 7481…" with a space; see testdata/vectors/SOURCES.md).
        if relates != message_id {
            warn(
                warnings,
                "soap.relates_to_mismatch",
                format!("{step}: a:RelatesTo is {relates:?}, our MessageID was {message_id:?}"),
            );
        }
        // soap.body (fail): the payload is in the Body.
        req_child(step, root, NS_SOAP12, "Body")?;
    }
    Ok(doc)
}

/// The `s:Body` element of a document accepted by [`parse_envelope`].
pub fn body_of<'a, 'i>(
    step: &'static str,
    doc: &'a Document<'i>,
) -> Result<Node<'a, 'i>, ClientError> {
    req_child(step, doc.root_element(), NS_SOAP12, "Body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_is_structured() {
        let xml = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstepfault</a:Action></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>s:Authentication</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">token rejected</s:Text></s:Reason><s:Detail><DeviceEnrollmentServiceError xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment"><ErrorType>InvalidEnrollmentData</ErrorType><Message>x</Message></DeviceEnrollmentServiceError></s:Detail></s:Fault></s:Body></s:Envelope>"#;
        let reply = HttpReply {
            status: 500,
            content_type: Some(CONTENT_TYPE),
            retry_after: None,
            body: xml,
        };
        let err = check_reply("enroll", &reply).err();
        let fault = err.as_ref().and_then(|e| e.soap_fault()).cloned();
        assert_eq!(
            fault,
            Some(SoapFault {
                http_status: 500,
                code: "s:Receiver".into(),
                subcode: "s:Authentication".into(),
                reason: "token rejected".into(),
                error_type: Some("InvalidEnrollmentData".into()),
            })
        );
    }

    #[test]
    fn throttle_carries_retry_after() {
        let reply = HttpReply {
            status: 429,
            content_type: None,
            retry_after: Some("120"),
            body: "",
        };
        match check_reply("discover", &reply) {
            Err(ClientError::Throttled { retry_after, .. }) => {
                assert_eq!(retry_after.as_deref(), Some("120"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn content_type_is_compared_as_a_media_type() {
        for (ct, warned) in [
            (Some("application/soap+xml; charset=utf-8"), false),
            (Some("Application/SOAP+XML"), false),
            (
                Some("application/soap+xml;charset=\"UTF-8\"; action=x"),
                false,
            ),
            (Some("text/html"), true),
            (None, true),
        ] {
            let reply = HttpReply {
                status: 200,
                content_type: ct,
                retry_after: None,
                body: "<x/>",
            };
            let mut w = Vec::new();
            assert!(check_reply_with("discover", &reply, &mut w).is_ok());
            assert_eq!(!w.is_empty(), warned, "{ct:?}");
        }
    }
}
