//! SyncML 1.2 DM messages: parsing a server message and writing the device's reply
//! (OMA-DM 1.2 Representation Protocol, [MS-MDM] §2.2).

use crate::error::ClientError;
use crate::warning::{warn, Warning};
use crate::xml::esc;
use roxmltree::Node;

pub const NS_SYNCML: &str = "SYNCML:SYNCML1.2";
pub const NS_METINF: &str = "syncml:metinf";
pub const CONTENT_TYPE: &str = "application/vnd.syncml.dm+xml";
pub const USER_AGENT: &str = "MSFT OMA DM Client/1.2.0.1";
const STEP: &str = "sync";

/// One `Item` of a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Item {
    pub target: Option<String>,
    pub source: Option<String>,
    pub format: Option<String>,
    pub mime: Option<String>,
    pub data: Option<String>,
}

/// A command from the server. `Atomic` and `Sequence` hold nested commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub verb: String,
    pub cmd_id: Option<String>,
    /// `Data` directly under the command (Alert code).
    pub data: Option<String>,
    pub items: Vec<Item>,
    pub nested: Vec<Command>,
}

/// A `Status` from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCmd {
    pub cmd_id: Option<String>,
    pub msg_ref: Option<String>,
    pub cmd_ref: Option<String>,
    pub cmd: Option<String>,
    pub code: Option<String>,
    /// `Chal/Meta/NextNonce`: the nonce the server wants the next credentials hashed
    /// with (OMA-DM 1.2 Security, syncml:auth-md5), as sent (base64).
    pub next_nonce: Option<String>,
}

/// A parsed server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub session_id: String,
    pub msg_id: String,
    /// Statuses in document order (normally the SyncHdr status first).
    pub statuses: Vec<StatusCmd>,
    pub commands: Vec<Command>,
    pub is_final: bool,
    /// `SyncHdr/Meta/MaxMsgSize`: the largest message the server accepts.
    pub max_msg_size: Option<usize>,
}

fn el<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn el_text(n: Node, name: &str) -> Option<String> {
    el(n, name).map(|c| {
        c.children()
            .filter(|t| t.is_text())
            .filter_map(|t| t.text())
            .collect::<String>()
            .trim()
            .to_string()
    })
}

/// `Data` content: text, or the raw markup of element children (Format xml).
fn data_of(n: Node) -> Option<String> {
    let d = el(n, "Data")?;
    if d.children().any(|c| c.is_element()) {
        let input = d.document().input_text();
        let first = d.first_child()?.range().start;
        let last = d.last_child()?.range().end;
        return input.get(first..last).map(str::to_string);
    }
    Some(d.children().filter_map(|t| t.text()).collect::<String>())
}

fn meta_of(n: Node) -> (Option<String>, Option<String>) {
    match el(n, "Meta") {
        Some(m) => (el_text(m, "Format"), el_text(m, "Type")),
        None => (None, None),
    }
}

fn parse_item(n: Node, cmd_meta: &(Option<String>, Option<String>)) -> Item {
    let (format, mime) = meta_of(n);
    Item {
        target: el(n, "Target").and_then(|t| el_text(t, "LocURI")),
        source: el(n, "Source").and_then(|t| el_text(t, "LocURI")),
        format: format.or_else(|| cmd_meta.0.clone()),
        mime: mime.or_else(|| cmd_meta.1.clone()),
        data: data_of(n),
    }
}

fn parse_command(n: Node) -> Command {
    let meta = meta_of(n);
    let verb = n.tag_name().name().to_string();
    let nested = if verb == "Atomic" || verb == "Sequence" {
        n.children()
            .filter(|c| {
                c.is_element() && !matches!(c.tag_name().name(), "CmdID" | "Meta" | "NoResp")
            })
            .map(parse_command)
            .collect()
    } else {
        Vec::new()
    };
    Command {
        cmd_id: el_text(n, "CmdID").filter(|s| !s.is_empty()),
        data: if verb == "Alert" {
            el_text(n, "Data")
        } else {
            None
        },
        items: n
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "Item")
            .map(|i| parse_item(i, &meta))
            .collect(),
        nested,
        verb,
    }
}

/// [`parse_server_message_with`], dropping warnings.
pub fn parse_server_message(xml: &str) -> Result<ServerMessage, ClientError> {
    parse_server_message_with(xml, &mut Vec::new())
}

/// The media type of a SyncML reply's Content-Type, compared without parameters or case.
pub fn is_syncml_xml(content_type: &str) -> bool {
    crate::http::media_type(content_type) == CONTENT_TYPE
}

/// Parses a server message: SyncML 1.2 namespace, VerDTD 1.2, VerProto DM/1.2, MsgID
/// present (fail-level). Children are looked up by local name, so namespace prefixes, the
/// order of SyncHdr children and unknown extra elements do not matter. Session matching
/// and the SyncHdr Status are checked by the session.
pub fn parse_server_message_with(
    xml: &str,
    warnings: &mut Vec<Warning>,
) -> Result<ServerMessage, ClientError> {
    let doc = crate::xml::parse(STEP, xml)?;
    let root = doc.root_element();
    // syncml.root (fail): a DM message is a SyncML element; another namespace is another
    // SyncML version (OMA-DM 1.2 Representation §5: namespace SYNCML:SYNCML1.2).
    // syncml.namespace (warn): no namespace, or the URN in another case (URN namespace
    // identifiers are case-insensitive, RFC 8141 §3.1), still names SyncML 1.2.
    let ns = root.tag_name().namespace();
    let ns_ok = ns == Some(NS_SYNCML);
    let ns_tolerated = match ns {
        None => true,
        Some(n) => n.eq_ignore_ascii_case(NS_SYNCML),
    };
    if root.tag_name().name() != "SyncML" || !(ns_ok || ns_tolerated) {
        return Err(ClientError::invalid(
            STEP,
            format!(
                "root is {{{}}}{}, expected {{{NS_SYNCML}}}SyncML",
                ns.unwrap_or(""),
                root.tag_name().name()
            ),
        ));
    }
    if !ns_ok {
        warn(
            warnings,
            "syncml.namespace",
            format!("SyncML namespace is {ns:?}, expected {NS_SYNCML}"),
        );
    }
    // syncml.header_body (fail): SyncHdr and SyncBody are mandatory (Representation §5).
    let hdr = el(root, "SyncHdr").ok_or_else(|| ClientError::missing(STEP, "SyncML/SyncHdr"))?;
    let body = el(root, "SyncBody").ok_or_else(|| ClientError::missing(STEP, "SyncML/SyncBody"))?;
    let req = |name: &str| {
        el_text(hdr, name)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ClientError::missing(STEP, format!("SyncHdr/{name}")))
    };
    // syncml.version (fail): the device announced DM 1.2 (w7 APPLICATION CSP PROTOVER);
    // a reply in another version is refused with status 505 (OMA-DM 1.2 Representation
    // §7 "DTD Version not supported").
    let ver_dtd = req("VerDTD")?;
    if ver_dtd != "1.2" {
        return Err(ClientError::invalid(
            STEP,
            format!("SyncHdr/VerDTD is {ver_dtd:?}, expected 1.2"),
        ));
    }
    let ver_proto = req("VerProto")?;
    if ver_proto != "DM/1.2" {
        return Err(ClientError::invalid(
            STEP,
            format!("SyncHdr/VerProto is {ver_proto:?}, expected DM/1.2"),
        ));
    }
    // SessionID is compared with ours by the session (syncml.session_id).
    let session_id = el_text(hdr, "SessionID").unwrap_or_default();
    // syncml.msg_id (fail): the device's Status must reference it (MsgRef), so a message
    // without one cannot be answered (OMA-DM 1.2 Representation: MsgID, MsgRef).
    let msg_id = req("MsgID")?;
    let mut msg = ServerMessage {
        session_id,
        msg_id,
        statuses: Vec::new(),
        commands: Vec::new(),
        is_final: false,
        max_msg_size: el(hdr, "Meta")
            .and_then(|m| el_text(m, "MaxMsgSize"))
            .and_then(|v| v.parse().ok()),
    };
    for c in body.children().filter(|c| c.is_element()) {
        match c.tag_name().name() {
            "Status" => msg.statuses.push(StatusCmd {
                cmd_id: el_text(c, "CmdID"),
                msg_ref: el_text(c, "MsgRef"),
                cmd_ref: el_text(c, "CmdRef"),
                cmd: el_text(c, "Cmd"),
                code: el_text(c, "Data"),
                next_nonce: el(c, "Chal")
                    .and_then(|ch| el(ch, "Meta"))
                    .and_then(|m| el_text(m, "NextNonce")),
            }),
            "Final" => msg.is_final = true,
            _ => msg.commands.push(parse_command(c)),
        }
    }
    // syncml.synchdr_status_order (warn): the Status for our SyncHdr comes first in
    // SyncBody (OMA-DM 1.2 Protocol §8.3 package 2); Windows reads Statuses by CmdRef and
    // MsgRef, so one further down is still found.
    let first = body.children().find(|c| c.is_element());
    if let Some(first) = first {
        let is_hdr_status = first.tag_name().name() == "Status"
            && el_text(first, "Cmd").as_deref() == Some("SyncHdr");
        if !is_hdr_status && msg.synchdr_status().is_some() {
            warn(
                warnings,
                "syncml.synchdr_status_order",
                format!(
                    "first SyncBody element is {}, expected the Status for our SyncHdr",
                    first.tag_name().name()
                ),
            );
        }
    }
    Ok(msg)
}

impl ServerMessage {
    /// The Status answering our SyncHdr (`Cmd` SyncHdr, or `CmdRef` 0).
    pub fn synchdr_status(&self) -> Option<&StatusCmd> {
        self.statuses
            .iter()
            .find(|s| s.cmd.as_deref() == Some("SyncHdr"))
            .or_else(|| {
                self.statuses
                    .iter()
                    .find(|s| s.cmd_ref.as_deref() == Some("0"))
            })
    }
}

/// Writes one device message. Commands are appended as XML fragments; CmdIDs come from
/// [`OutMessage::next_id`] so they are unique in the message.
#[derive(Debug, Clone)]
pub struct OutMessage {
    pub session_id: String,
    pub msg_id: u32,
    pub target: String,
    pub source: String,
    /// Whether the message ends its package (`Final`); false while sending chunks.
    pub is_final: bool,
    /// `SyncHdr/Cred` markup (digest authentication), placed after `Source`.
    pub cred: Option<String>,
    next: u32,
    parts: Vec<String>,
}

/// One `Results` item; `size` and `more_data` for large objects (OMA-DM 1.2 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultItem {
    pub uri: String,
    pub format: String,
    pub mime: Option<String>,
    pub data: String,
    /// `Meta/Size`: total size of a chunked object, on its first chunk.
    pub size: Option<usize>,
    pub more_data: bool,
}

impl ResultItem {
    fn to_xml(&self) -> String {
        let mime = self
            .mime
            .as_deref()
            .map(|m| format!(r#"<Type xmlns="{NS_METINF}">{}</Type>"#, esc(m)))
            .unwrap_or_default();
        let size = self
            .size
            .map(|n| format!(r#"<Size xmlns="{NS_METINF}">{n}</Size>"#))
            .unwrap_or_default();
        format!(
            r#"<Item><Source><LocURI>{}</LocURI></Source><Meta><Format xmlns="{NS_METINF}">{}</Format>{mime}{size}</Meta><Data>{}</Data>{}</Item>"#,
            esc(&self.uri),
            esc(&self.format),
            esc(&self.data),
            if self.more_data { "<MoreData/>" } else { "" }
        )
    }
}

impl OutMessage {
    pub fn new(
        session_id: &str,
        msg_id: u32,
        target: &str,
        source: &str,
        first_cmd_id: u32,
    ) -> Self {
        OutMessage {
            session_id: session_id.to_string(),
            msg_id,
            target: target.to_string(),
            source: source.to_string(),
            is_final: true,
            cred: None,
            next: first_cmd_id,
            parts: Vec::new(),
        }
    }

    pub fn next_id(&mut self) -> u32 {
        let id = self.next;
        self.next += 1;
        id
    }

    pub fn push(&mut self, fragment: String) {
        self.parts.push(fragment);
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// A `Status` answering a server command (or the SyncHdr with `cmd_ref` "0").
    pub fn status(
        &mut self,
        msg_ref: &str,
        cmd_ref: Option<&str>,
        cmd: &str,
        targets: &[String],
        code: u16,
    ) {
        let id = self.next_id();
        let targets: String = targets
            .iter()
            .map(|t| format!("<TargetRef>{}</TargetRef>", esc(t)))
            .collect();
        self.push(format!(
            "<Status><CmdID>{id}</CmdID><MsgRef>{}</MsgRef><CmdRef>{}</CmdRef><Cmd>{}</Cmd>{targets}<Data>{code}</Data></Status>",
            esc(msg_ref),
            esc(cmd_ref.unwrap_or("")),
            esc(cmd)
        ));
    }

    /// `Results` for a Get: (LocURI, Format, Type, Data) per item.
    pub fn results(
        &mut self,
        msg_ref: &str,
        cmd_ref: &str,
        items: &[(String, String, Option<String>, String)],
    ) {
        let items: Vec<ResultItem> = items
            .iter()
            .map(|(uri, format, mime, data)| ResultItem {
                uri: uri.clone(),
                format: format.clone(),
                mime: mime.clone(),
                data: data.clone(),
                size: None,
                more_data: false,
            })
            .collect();
        self.results_items(msg_ref, cmd_ref, &items);
    }

    /// `Results` with explicit items; returns its CmdID.
    pub fn results_items(&mut self, msg_ref: &str, cmd_ref: &str, items: &[ResultItem]) -> u32 {
        let id = self.next_id();
        let items: String = items.iter().map(ResultItem::to_xml).collect();
        self.push(format!(
            "<Results><CmdID>{id}</CmdID><MsgRef>{}</MsgRef><CmdRef>{}</CmdRef>{items}</Results>",
            esc(msg_ref),
            esc(cmd_ref)
        ));
        id
    }

    /// An `Alert` without items (e.g. 1222, "next message"); returns its CmdID.
    pub fn alert(&mut self, code: u16) -> u32 {
        let id = self.next_id();
        self.push(format!(
            "<Alert><CmdID>{id}</CmdID><Data>{code}</Data></Alert>"
        ));
        id
    }

    /// Size in bytes of the message as [`OutMessage::to_xml`] would write it.
    pub fn xml_len(&self) -> usize {
        self.to_xml().len()
    }

    pub fn to_xml(&self) -> String {
        format!(
            concat!(
                r#"<SyncML xmlns="{ns}"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>"#,
                "<SessionID>{sid}</SessionID><MsgID>{mid}</MsgID><Target><LocURI>{t}</LocURI></Target>",
                "<Source><LocURI>{s}</LocURI></Source>{cred}</SyncHdr><SyncBody>{body}{fin}</SyncBody></SyncML>"
            ),
            ns = NS_SYNCML,
            sid = esc(&self.session_id),
            mid = self.msg_id,
            t = esc(&self.target),
            s = esc(&self.source),
            cred = self.cred.as_deref().unwrap_or(""),
            body = self.parts.concat(),
            fin = if self.is_final { "<Final/>" } else { "" }
        )
    }
}
/// Query Windows appends to the management URL (seen in published captures of Windows 10/11).
const MANAGEMENT_QUERY: &str = "mode=Maintenance&Platform=WoA";

/// The management URL as Windows requests it: the provisioned ADDR with
/// [`MANAGEMENT_QUERY`] appended.
pub fn with_management_query(addr: &str) -> String {
    if addr.contains('?') {
        format!("{addr}&{MANAGEMENT_QUERY}")
    } else {
        format!("{addr}?{MANAGEMENT_QUERY}")
    }
}
