//! SyncML 1.2 messages (OMA-DM 1.2 representation protocol, MS-MDM §2.2): parsing what
//! devices send and building what the server answers.

use quick_xml::escape::escape;

use crate::model::Verb;

pub const NS_SYNCML: &str = "SYNCML:SYNCML1.2";
pub const CONTENT_TYPE: &str = "application/vnd.syncml.dm+xml";

/// The SyncHdr fields the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHdr {
    pub ver_dtd: String,
    pub ver_proto: String,
    pub session_id: String,
    pub msg_id: String,
    pub target: String,
    pub source: String,
    /// `Meta/MaxMsgSize`: the largest message the device accepts.
    pub max_msg_size: Option<usize>,
}

/// One element of a client's SyncBody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCommand {
    /// Element name: Alert, Replace, Status, Results, ...
    pub verb: String,
    pub cmd_id: String,
    /// For Status and Results: the command they answer.
    pub cmd_ref: Option<String>,
    pub msg_ref: Option<String>,
    /// For Status: the verb answered; for Alert: the alert code.
    pub cmd: Option<String>,
    /// Status code or Alert code (the element's own Data).
    pub data: Option<String>,
    /// The element's XML as received.
    pub xml: String,
    /// A Results command's Items, read with the message (empty for other commands).
    pub items: Vec<ResultItem>,
}

/// One Item of a Results command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultItem {
    pub loc_uri: String,
    /// The Item's Meta element as received, if any.
    pub meta_xml: Option<String>,
    pub data: String,
    /// `MoreData`: this is one chunk of a large object (OMA-DM 1.2 §6.1.1, Alert 1222).
    pub more_data: bool,
}

impl ClientCommand {
    /// The command's verb, when its element is an OMA-DM command.
    pub fn kind(&self) -> Option<Verb> {
        self.verb.parse().ok()
    }

    /// The Items of a Results command.
    pub fn result_items(&self) -> &[ResultItem] {
        &self.items
    }
}

/// The Items of a command element (read once, with the message).
fn items(cmd: roxmltree::Node<'_, '_>, input: &str) -> Vec<ResultItem> {
    cmd.children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Item")
        .map(|item| ResultItem {
            loc_uri: loc_uri(item, "Source").unwrap_or_default(),
            meta_xml: child(item, "Meta").map(|m| input[m.range()].to_string()),
            data: child(item, "Data")
                .and_then(|d| d.text())
                .unwrap_or("")
                .to_string(),
            more_data: child(item, "MoreData").is_some(),
        })
        .collect()
}

/// A parsed client message.
#[derive(Debug, Clone)]
pub struct ClientMessage {
    pub hdr: SyncHdr,
    pub commands: Vec<ClientCommand>,
    pub is_final: bool,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn child_text(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).map(|c| c.text().unwrap_or("").trim().to_string())
}

fn loc_uri(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).and_then(|t| child_text(t, "LocURI"))
}

/// Parses a client SyncML message. Errors name what is missing.
pub fn parse_client_message(doc: &roxmltree::Document<'_>) -> Result<ClientMessage, String> {
    let root = doc.root_element();
    if root.tag_name().name() != "SyncML" {
        return Err("root element is not SyncML".into());
    }
    if !root
        .tag_name()
        .namespace()
        .is_some_and(|ns| ns.eq_ignore_ascii_case(NS_SYNCML))
    {
        return Err("SyncML root is not in namespace SYNCML:SYNCML1.2".into());
    }
    let hdr_node = child(root, "SyncHdr").ok_or("missing SyncHdr")?;
    let req = |name: &str| child_text(hdr_node, name).ok_or(format!("missing SyncHdr/{name}"));
    let hdr = SyncHdr {
        ver_dtd: req("VerDTD")?,
        ver_proto: req("VerProto")?,
        session_id: req("SessionID")?,
        msg_id: req("MsgID")?,
        target: loc_uri(hdr_node, "Target").ok_or("missing SyncHdr/Target/LocURI")?,
        source: loc_uri(hdr_node, "Source").ok_or("missing SyncHdr/Source/LocURI")?,
        max_msg_size: child(hdr_node, "Meta")
            .and_then(|m| child_text(m, "MaxMsgSize"))
            .and_then(|v| v.parse().ok()),
    };
    let body = child(root, "SyncBody").ok_or("missing SyncBody")?;
    let mut commands = Vec::new();
    let mut is_final = false;
    for c in body.children().filter(|c| c.is_element()) {
        let verb = c.tag_name().name().to_string();
        if verb == "Final" {
            is_final = true;
            continue;
        }
        let cmd_id = child_text(c, "CmdID").ok_or(format!("{verb} without CmdID"))?;
        let items = if verb == "Results" {
            items(c, doc.input_text())
        } else {
            Vec::new()
        };
        commands.push(ClientCommand {
            items,
            cmd_ref: child_text(c, "CmdRef"),
            msg_ref: child_text(c, "MsgRef"),
            cmd: child_text(c, "Cmd"),
            data: child_text(c, "Data"),
            xml: doc.input_text()[c.range()].to_string(),
            verb,
            cmd_id,
        });
    }
    Ok(ClientMessage {
        hdr,
        commands,
        is_final,
    })
}

/// Builds a server message.
pub struct ServerMessage {
    hdr: String,
    body: String,
    next_cmd_id: u32,
}

impl ServerMessage {
    /// A message answering `client`, from `server_url`, announcing the largest message
    /// the server accepts (`Meta/MaxMsgSize`, OMA-DM 1.2 representation §5.1.13): larger
    /// device results must come in chunks (Alert 1222, MoreData).
    pub fn reply_to(client: &SyncHdr, server_url: &str, max_msg_size: usize) -> Self {
        let hdr = format!(
            "<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{}</SessionID><MsgID>{}</MsgID><Target><LocURI>{}</LocURI></Target><Source><LocURI>{}</LocURI></Source><Meta><MaxMsgSize xmlns=\"syncml:metinf\">{max_msg_size}</MaxMsgSize></Meta></SyncHdr>",
            escape(&client.session_id),
            escape(&client.msg_id),
            escape(&client.source),
            escape(server_url),
        );
        ServerMessage {
            hdr,
            body: String::new(),
            next_cmd_id: 1,
        }
    }

    fn cmd_id(&mut self) -> u32 {
        let id = self.next_cmd_id;
        self.next_cmd_id += 1;
        id
    }

    /// Appends a Status answering `cmd_ref` (0 = the SyncHdr) of message `msg_ref`.
    pub fn status(&mut self, msg_ref: &str, cmd_ref: &str, cmd: &str, code: u16) {
        self.status_with_chal(msg_ref, cmd_ref, cmd, code, "");
    }

    /// As [`Self::status`], with `chal` (a `Chal` element, or empty) before the Data, as
    /// the OMA-DM 1.2 DTD orders a Status (`Cred?, Chal?, Data`).
    pub fn status_with_chal(
        &mut self,
        msg_ref: &str,
        cmd_ref: &str,
        cmd: &str,
        code: u16,
        chal: &str,
    ) {
        let id = self.cmd_id();
        self.body.push_str(&format!(
            "<Status><CmdID>{id}</CmdID><MsgRef>{}</MsgRef><CmdRef>{}</CmdRef><Cmd>{}</Cmd>{chal}<Data>{code}</Data></Status>",
            escape(msg_ref),
            escape(cmd_ref),
            escape(cmd)
        ));
    }

    /// Appends a queued command under `cmd_id` (the command's UUID, so that the device's
    /// Status maps straight back to the queue entry; nested commands get `<uuid>.<n>`).
    pub fn command(&mut self, cmd_id: &str, body_xml: &str) {
        self.body
            .push_str(&body_xml.replace(CMD_ID_PLACEHOLDER, cmd_id));
    }

    /// Appends an Alert (e.g. 1222, "next message").
    pub fn alert(&mut self, code: u16) {
        let id = self.cmd_id();
        self.body.push_str(&format!(
            "<Alert><CmdID>{id}</CmdID><Data>{code}</Data></Alert>"
        ));
    }

    /// Length of the message so far, for MaxMsgSize accounting.
    pub fn len(&self) -> usize {
        self.hdr.len() + self.body.len() + 80
    }

    /// Whether no command has been added yet.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The finished document, ending with Final.
    pub fn finish(self) -> String {
        format!(
            "<SyncML xmlns=\"{NS_SYNCML}\">{}<SyncBody>{}<Final/></SyncBody></SyncML>",
            self.hdr, self.body
        )
    }
}

/// Stands for the command's UUID in stored command XML; replaced at delivery.
pub const CMD_ID_PLACEHOLDER: &str = "{{winmdm:cmdid}}";

/// Normalises a raw command for the queue: checks it is one well-formed command element
/// of a verb the server may queue ([`Verb::queueable`]) and removes its top-level CmdID
/// (assigned at delivery). Returns (verb, first target LocURI, stored XML).
pub fn normalise_command(raw: &str) -> Result<(Verb, String, String), String> {
    let wrapped = format!("<SyncBody xmlns=\"{NS_SYNCML}\">{raw}</SyncBody>");
    let doc = crate::soap::parse_xml(&wrapped)?;
    let mut elems = doc.root_element().children().filter(|c| c.is_element());
    let cmd = elems.next().ok_or("no command element")?;
    if elems.next().is_some() {
        return Err("exactly one command element is allowed per queued command".into());
    }
    let name = cmd.tag_name().name();
    let Some(verb) = name.parse::<Verb>().ok().filter(|v| v.queueable()) else {
        return Err(format!(
            "{name} is not an OMA-DM command the server can send"
        ));
    };
    let target = cmd
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "Target")
        .and_then(|t| child_text(t, "LocURI"))
        .unwrap_or_default();
    Ok((verb, target, assign_cmd_ids(&doc, cmd)))
}

/// Rewrites a command element so that it and every command nested in it carry a
/// placeholder CmdID as first child (any CmdID the caller wrote is dropped).
fn assign_cmd_ids(doc: &roxmltree::Document<'_>, cmd: roxmltree::Node<'_, '_>) -> String {
    // (position, bytes to delete, text to insert), applied back to front.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut nested = 0usize;
    let mut stack = vec![(cmd, CMD_ID_PLACEHOLDER.to_string())];
    while let Some((node, id)) = stack.pop() {
        let insert_at = node
            .children()
            .next()
            .map(|c| c.range().start)
            .unwrap_or(node.range().end);
        edits.push((insert_at, 0, format!("<CmdID>{id}</CmdID>")));
        for c in node.children().filter(|c| c.is_element()) {
            let name = c.tag_name().name();
            if name == "CmdID" {
                edits.push((c.range().start, c.range().len(), String::new()));
            } else if matches!(
                node.tag_name().name().parse(),
                Ok(Verb::Atomic | Verb::Sequence)
            ) && name.parse::<Verb>().is_ok_and(Verb::nestable)
            {
                nested += 1;
                stack.push((c, format!("{CMD_ID_PLACEHOLDER}.{nested}")));
            }
        }
    }
    let base = cmd.range().start;
    let mut xml = doc.input_text()[cmd.range()].to_string();
    edits.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    for (pos, del, ins) in edits {
        xml.replace_range(pos - base..pos - base + del, &ins);
    }
    xml
}

/// The Data of the first Item of a stored Results element.
pub fn results_data(results_xml: &str) -> Option<String> {
    let wrapped = format!("<SyncBody xmlns=\"{NS_SYNCML}\">{results_xml}</SyncBody>");
    let doc = roxmltree::Document::parse(&wrapped).ok()?;
    let item = doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "Item")?;
    Some(
        child(item, "Data")
            .and_then(|d| d.text())
            .unwrap_or("")
            .to_string(),
    )
}

/// A Results element holding a large object reassembled from its chunks.
pub fn reassembled_results(cmd: &ClientCommand, item: &ResultItem, data: &str) -> String {
    format!(
        "<Results><CmdID>{}</CmdID><MsgRef>{}</MsgRef><CmdRef>{}</CmdRef><Item><Source><LocURI>{}</LocURI></Source>{}<Data>{}</Data></Item></Results>",
        escape(&cmd.cmd_id),
        escape(cmd.msg_ref.as_deref().unwrap_or("")),
        escape(cmd.cmd_ref.as_deref().unwrap_or("")),
        escape(&item.loc_uri),
        item.meta_xml.as_deref().unwrap_or(""),
        escape(data),
    )
}

/// Builds a command from its parts (`{"verb","target","format","type","data"}`).
pub fn build_command(
    verb: &str,
    target: &str,
    format: Option<&str>,
    mime_type: Option<&str>,
    data: Option<&str>,
) -> Result<String, String> {
    if !verb
        .parse::<Verb>()
        .is_ok_and(|v| Verb::BUILDABLE.contains(&v))
    {
        return Err(format!(
            "verb {verb:?} is not one of {}",
            Verb::list(Verb::BUILDABLE)
        ));
    }
    if !target.starts_with("./") {
        return Err(format!(
            "target {target:?} must be an absolute OMA-DM URI starting with ./"
        ));
    }
    let mut meta = String::new();
    if let Some(f) = format {
        meta.push_str(&format!(
            "<Format xmlns=\"syncml:metinf\">{}</Format>",
            escape(f)
        ));
    }
    if let Some(t) = mime_type {
        meta.push_str(&format!(
            "<Type xmlns=\"syncml:metinf\">{}</Type>",
            escape(t)
        ));
    }
    let meta = if meta.is_empty() {
        meta
    } else {
        format!("<Meta>{meta}</Meta>")
    };
    let data = data
        .map(|d| format!("<Data>{}</Data>", escape(d)))
        .unwrap_or_default();
    Ok(format!(
        "<{verb}><Item><Target><LocURI>{}</LocURI></Target>{meta}{data}</Item></{verb}>",
        escape(target)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(raw: &str, id: &str) -> String {
        let (_, _, xml) = normalise_command(raw).unwrap();
        xml.replace(CMD_ID_PLACEHOLDER, id)
    }

    #[test]
    fn cmd_id_is_replaced_at_delivery() {
        let raw = "<Get><CmdID>xxcmdidxx</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>";
        let (verb, target, xml) = normalise_command(raw).unwrap();
        assert_eq!(verb, Verb::Get);
        assert_eq!(target, "./DevDetail/SwV");
        assert!(!xml.contains("xxcmdidxx"));
        assert!(delivered(raw, "abc").starts_with("<Get><CmdID>abc</CmdID><Item>"));
    }

    #[test]
    fn nested_commands_get_their_own_ids() {
        let raw = include_str!("../../../testdata/vectors/syncml-cmd-add-new-privileged-user.xml");
        let xml = delivered(raw, "U");
        assert!(xml.starts_with("<Atomic><CmdID>U</CmdID>"), "{xml}");
        for n in 1..=3 {
            assert!(xml.contains(&format!("<CmdID>U.{n}</CmdID>")), "{xml}");
        }
        assert!(!xml.contains("xxcmdidxx"), "{xml}");
        assert!(roxmltree::Document::parse(&xml).is_ok());
    }

    #[test]
    fn foreign_elements_are_refused() {
        assert!(normalise_command("<Status><CmdID>1</CmdID></Status>").is_err());
        assert!(normalise_command("<Get/><Get/>").is_err());
        assert!(normalise_command("<A:Format>x</A:Format>").is_err());
    }
}
