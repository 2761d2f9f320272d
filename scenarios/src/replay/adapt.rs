//! Edits of a captured request that keep everything else byte for byte: element text
//! and whole elements are replaced at their positions in the original text (no
//! re-serialisation, so prefixes, whitespace, comments and element order stay the
//! device's).

use std::ops::Range;

use fake_windows_client::soap::{NS_SOAP12, NS_WSSE, NS_WSU};
use roxmltree::{Document, Node};

/// Replaces non-overlapping byte ranges of `text`.
pub(super) fn splice(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_string();
    for (r, new) in edits {
        if r.end <= out.len() && r.start <= r.end {
            out.replace_range(r, &new);
        }
    }
    out
}

fn element<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == local)
}

fn descendant<'a, 'i>(doc: &'a Document<'i>, local: &str) -> Option<Node<'a, 'i>> {
    doc.descendants()
        .find(|c| c.is_element() && c.tag_name().name() == local)
}

/// An attribute by local name, whatever its namespace (published samples write
/// `wsse:ValueType`).
pub(super) fn attr_local<'a>(n: Node<'a, '_>, local: &str) -> Option<&'a str> {
    n.attributes()
        .find(|a| a.name() == local)
        .map(|a| a.value())
}

/// The edit setting an element's text (its text child; an empty element is rewritten
/// whole with the same tag name).
fn set_text(xml: &str, n: Node, value: &str) -> (Range<usize>, String) {
    let value = fake_windows_client::xml::esc(value);
    match n.first_child().filter(|c| c.is_text()) {
        Some(t) if n.children().count() == 1 => (t.range(), value),
        _ => {
            let r = n.range();
            let open = &xml[r.clone()];
            let name_end = open
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(open.len());
            let qname = &open[1..name_end];
            let attrs_end = open.find('>').unwrap_or(open.len());
            let attrs = open[name_end..attrs_end].trim_end_matches('/');
            (r, format!("<{qname}{attrs}>{value}</{qname}>"))
        }
    }
}

/// The text of the first element with this local name, trimmed.
pub(super) fn text_of(xml: &str, local: &str) -> Option<String> {
    let doc = Document::parse(xml).ok()?;
    descendant(&doc, local)
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
}

/// An AdditionalContext item's value (`DeviceID`, `HWDevID`, …).
pub(super) fn context_item(xml: &str, name: &str) -> Option<String> {
    let doc = Document::parse(xml).ok()?;
    let item = doc.descendants().find(|n| {
        n.is_element()
            && n.tag_name().name() == "ContextItem"
            && attr_local(*n, "Name") == Some(name)
    })?;
    item.descendants()
        .find(|v| v.is_element() && v.tag_name().name() == "Value")
        .and_then(|v| v.text())
        .map(|t| t.trim().to_string())
}

/// The kind of request token of a WSTEP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind {
    /// A PKCS#10 CSR (enrollment).
    Pkcs10,
    /// A PKCS#7 SignedData around a CSR (renewal, MS-WSTEP §3.1.4.1.1).
    Pkcs7,
}

/// The request token of a WSTEP request: its kind and DER.
pub(super) fn request_token(xml: &str) -> Option<(TokenKind, Vec<u8>)> {
    use base64::Engine;
    let doc = Document::parse(xml).ok()?;
    doc.descendants().find_map(|n| {
        if !(n.is_element() && n.tag_name().name() == "BinarySecurityToken") {
            return None;
        }
        let vt = attr_local(n, "ValueType")?;
        let kind = if vt.ends_with("#PKCS10") {
            TokenKind::Pkcs10
        } else if vt.ends_with("#PKCS7") {
            TokenKind::Pkcs7
        } else {
            return None;
        };
        let compact: String = n.text()?.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()?;
        Some((kind, der))
    })
}

/// What changes in a SOAP request sent to the target.
pub(super) struct SoapEdits<'a> {
    /// The target's URL for the role (`a:To`).
    pub to: &'a str,
    /// A `wsse:Security` header (as [`fake_windows_client::soap::security_header`]
    /// builds it) replacing the captured one.
    pub security: Option<String>,
    /// A new request token (base64) replacing the captured CSR or PKCS#7.
    pub token_b64: Option<String>,
    /// Fresh `u:Timestamp` Created and Expires (a renewal's).
    pub timestamp: Option<(String, String)>,
}

/// Applies `edits` to a captured SOAP request.
pub(super) fn soap_request(xml: &str, edits: &SoapEdits) -> Result<String, String> {
    let doc = Document::parse(xml).map_err(|e| format!("the captured request is not XML: {e}"))?;
    let root = doc.root_element();
    let header = element(root, "Header").ok_or("the captured request has no SOAP Header")?;
    let mut out = Vec::new();
    if let Some(to) = element(header, "To") {
        out.push(set_text(xml, to, edits.to));
    }
    if let Some(sec) = &edits.security {
        // Declared here: the captured envelope may not declare wsse, u or s.
        let sec = sec.replacen(
            "<wsse:Security ",
            &format!("<wsse:Security xmlns:s=\"{NS_SOAP12}\" xmlns:wsse=\"{NS_WSSE}\" xmlns:u=\"{NS_WSU}\" "),
            1,
        );
        match element(header, "Security") {
            Some(old) => out.push((old.range(), sec)),
            None => {
                let r = header.range();
                let end = xml[r.clone()]
                    .rfind("</")
                    .map(|i| r.start + i)
                    .unwrap_or(r.end);
                out.push((end..end, sec));
            }
        }
    }
    if let Some(b64) = &edits.token_b64 {
        let token = doc
            .descendants()
            .find(|n| {
                n.is_element()
                    && n.tag_name().name() == "BinarySecurityToken"
                    && attr_local(*n, "ValueType")
                        .is_some_and(|v| v.ends_with("#PKCS10") || v.ends_with("#PKCS7"))
            })
            .ok_or("the captured request has no PKCS#10 or PKCS#7 BinarySecurityToken")?;
        out.push(set_text(xml, token, b64));
    }
    if let Some((created, expires)) = &edits.timestamp {
        if let Some(ts) = descendant(&doc, "Timestamp") {
            if let Some(c) = element(ts, "Created") {
                out.push(set_text(xml, c, created));
            }
            if let Some(e) = element(ts, "Expires") {
                out.push(set_text(xml, e, expires));
            }
        }
    }
    Ok(splice(xml, out))
}

/// A captured SyncML message made consistent with the replayed enrollment.
pub(super) struct SyncmlRequest {
    pub xml: String,
    /// The recorded SessionID.
    pub session_id: String,
    pub msg_id: u32,
    /// (CmdID, verb) of the commands that need a Status back.
    pub awaiting: Vec<(String, String)>,
}

/// Sets SyncHdr Target (the management URL), Source (the DeviceID) and SessionID.
pub(super) fn syncml_request(
    xml: &str,
    target: &str,
    device_id: &str,
    session_id: impl Fn(&str) -> String,
) -> Result<SyncmlRequest, String> {
    let doc = Document::parse(xml).map_err(|e| format!("the captured SyncML is not XML: {e}"))?;
    let root = doc.root_element();
    let hdr = element(root, "SyncHdr").ok_or("the captured SyncML has no SyncHdr")?;
    let recorded_session = element(hdr, "SessionID")
        .and_then(|n| n.text())
        .unwrap_or_default()
        .trim()
        .to_string();
    let msg_id = element(hdr, "MsgID")
        .and_then(|n| n.text())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1);
    let mut edits = Vec::new();
    if let Some(n) = element(hdr, "SessionID") {
        edits.push(set_text(xml, n, &session_id(&recorded_session)));
    }
    for (side, value) in [("Target", target), ("Source", device_id)] {
        if let Some(loc) = element(hdr, side).and_then(|s| element(s, "LocURI")) {
            edits.push(set_text(xml, loc, value));
        }
    }
    let awaiting = element(root, "SyncBody")
        .map(|b| {
            b.children()
                .filter(|c| c.is_element())
                .filter(|c| !matches!(c.tag_name().name(), "Status" | "Results" | "Final"))
                .filter_map(|c| {
                    let id = element(c, "CmdID")?.text()?.trim().to_string();
                    Some((id, c.tag_name().name().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(SyncmlRequest {
        xml: splice(xml, edits),
        session_id: recorded_session,
        msg_id,
        awaiting,
    })
}

/// One line about a recorded response: status and what the body is.
pub(super) fn describe(status: u16, body: &str) -> String {
    let t = body.trim_start();
    let what = if t.is_empty() {
        "empty body".to_string()
    } else if let Ok(doc) = Document::parse(t) {
        let root = doc.root_element();
        match root.tag_name().name() {
            "Envelope" => {
                let action = descendant(&doc, "Action")
                    .and_then(|n| n.text())
                    .map(|a| {
                        // The operation: `…/DiscoverResponse`, `…/RSTRC/wstep`.
                        let mut parts = a.trim().rsplit('/');
                        let last = parts.next().unwrap_or("");
                        match parts.next() {
                            Some(op) if last == "wstep" => format!("{op}/{last}"),
                            _ => last.to_string(),
                        }
                    })
                    .unwrap_or_default();
                let fault = descendant(&doc, "Fault").map(|f| {
                    let texts: Vec<String> = f
                        .descendants()
                        .filter(|n| n.is_text())
                        .filter_map(|n| n.text())
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    texts.join(" ")
                });
                match fault {
                    Some(f) => format!("SOAP fault: {f}"),
                    None => format!("SOAP {action}"),
                }
            }
            "SyncML" => {
                let body = element(root, "SyncBody");
                let n = body
                    .map(|b| {
                        b.children()
                            .filter(|c| c.is_element())
                            .filter(|c| !matches!(c.tag_name().name(), "Status" | "Final"))
                            .count()
                    })
                    .unwrap_or(0);
                format!("SyncML with {n} command(s)")
            }
            other => format!("XML <{other}>"),
        }
    } else {
        let first: String = t.chars().take(80).collect();
        format!("{} bytes: {first:?}", body.len())
    };
    if status == 0 {
        "no response recorded".into()
    } else {
        format!("HTTP {status}, {what}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_the_rest_of_the_message() {
        let xml = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:To s:mustUnderstand="1">
  https://old.example/x </a:To><!-- kept --></s:Header><s:Body/></s:Envelope>"#;
        let out = soap_request(
            xml,
            &SoapEdits {
                to: "https://new.example/y?a=1&b=2",
                security: Some(r#"<wsse:Security s:mustUnderstand="1"><wsse:BinarySecurityToken>x</wsse:BinarySecurityToken></wsse:Security>"#.into()),
                token_b64: None,
                timestamp: None,
            },
        )
        .unwrap();
        assert!(
            out.contains(
                ">https://new.example/y?a=1&amp;b=2</a:To><!-- kept --><wsse:Security xmlns:s="
            ),
            "{out}"
        );
        assert!(Document::parse(&out).is_ok(), "{out}");
        let s = syncml_request(
            "<SyncML><SyncHdr><SessionID>5</SessionID><MsgID>2</MsgID><Target><LocURI>https://a/m</LocURI></Target><Source><LocURI>old</LocURI></Source></SyncHdr><SyncBody><Status><CmdID>1</CmdID></Status><Alert><CmdID>2</CmdID></Alert><Final/></SyncBody></SyncML>",
            "https://b/n",
            "DEV",
            |_| "1".into(),
        )
        .unwrap();
        assert_eq!(s.session_id, "5");
        assert_eq!(s.msg_id, 2);
        assert_eq!(s.awaiting, vec![("2".to_string(), "Alert".to_string())]);
        assert!(
            s.xml.contains("<SessionID>1</SessionID>")
                && s.xml.contains("<LocURI>https://b/n</LocURI>")
                && s.xml.contains("<LocURI>DEV</LocURI>"),
            "{}",
            s.xml
        );
    }
}
