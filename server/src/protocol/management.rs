//! What a device's OMA-DM message means and what to answer (MS-MDM §3.1, OMA-DM 1.2),
//! decided without I/O: the HTTP handler parses the message, feeds its commands to an
//! [`Exchange`], fetches what the exchange asks for, stores the [`MessageWork`] it
//! returns and lets it finish the reply from what storing found.

use std::borrow::Cow;

use quick_xml::escape::escape;

use super::reassembly::{self, ChunkKey, ChunkOp, ChunkView, Pending};
use crate::model::{
    CertIdentity, Delivery, MessageOutcome, MessageWork, QueuedCommand, ResponseKind,
    ResponseRecord, SentCommand, Verb,
};
use crate::syncml::{self, ClientCommand, ClientMessage, ResultItem, ServerMessage, SyncHdr};

/// Why a message is refused before it is read (the HTTP layer picks the status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Authenticated, but not allowed (403).
    Forbidden(&'static str),
    /// Not a message this server reads (400).
    BadRequest(&'static str),
}

const NOT_ACTIVE: &str = "client certificate does not belong to an active enrollment";
const SOURCE_MISMATCH: &str =
    "SyncHdr Source LocURI does not match the DeviceID the client certificate was issued to";

/// Who a client certificate lets send a message as `device_id`: its active enrollment
/// of that DeviceID. Returns whether the certificate is the device's current one (not
/// one replaced by a renewal, in its grace period).
pub fn authorise(identity: Option<&CertIdentity>, device_id: &str) -> Result<bool, Refusal> {
    match identity {
        Some(i) if i.enrollment_state.is_active() => {
            if i.device_id == device_id {
                Ok(i.current)
            } else {
                Err(Refusal::Forbidden(SOURCE_MISMATCH))
            }
        }
        _ => Err(Refusal::Forbidden(NOT_ACTIVE)),
    }
}

/// The refusal of a certificate that names no active enrollment.
pub fn not_active() -> Refusal {
    Refusal::Forbidden(NOT_ACTIVE)
}

/// Checks the SyncHdr of an authenticated device's message: it must come from the
/// DeviceID the client certificate was issued to, in OMA-DM 1.2.
pub fn check_header(hdr: &SyncHdr, device_id: &str) -> Result<(), Refusal> {
    if hdr.source != device_id {
        return Err(Refusal::Forbidden(SOURCE_MISMATCH));
    }
    if hdr.ver_proto != "DM/1.2" || hdr.ver_dtd != "1.2" {
        return Err(Refusal::BadRequest("only SyncML 1.2 / DM/1.2 is supported"));
    }
    Ok(())
}

/// What reading one command needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<'c> {
    /// The command is answered.
    Done,
    /// A first large-object chunk: read it again with the command this UUID names, if
    /// it was sent to the device (the store's `sent_command`).
    NeedsSentCommand(&'c str),
}

/// What to do once the message is stored.
#[derive(Debug)]
pub enum Next {
    /// The device left (its unenroll alert, or its 200 to the server's Unenroll Exec):
    /// record it unenrolled; no commands go out.
    Unenrolled,
    /// The package is not complete (no Final): ask for the next message (Alert 1222)
    /// and hold commands until it is.
    AskForMore,
    /// Send these commands (claimed while the message was stored).
    Send(Vec<QueuedCommand>),
    /// Profiles in progress move first (they may queue read-back Gets for this reply):
    /// advance them, then claim with this delivery.
    AdvanceProfiles(Delivery),
}

/// One device message being read and the server's answer being built.
pub struct Exchange<'m> {
    msg: &'m ClientMessage,
    reply: ServerMessage,
    /// Everything the device answered in this message, to store.
    responses: Vec<ResponseRecord>,
    /// Large-object changes, applied once the message is stored.
    chunk_ops: Vec<ChunkOp>,
    unenrolled: bool,
    /// Package 1 sent again after a digest challenge: the session's first stored message.
    opens_session: bool,
}

impl<'m> Exchange<'m> {
    /// Starts the answer to `msg` (its SyncHdr acknowledged), from `server_url`,
    /// announcing `max_msg_size`.
    pub fn new(msg: &'m ClientMessage, server_url: &str, max_msg_size: usize) -> Self {
        Self::with_chal(msg, server_url, max_msg_size, "")
    }

    /// As [`Self::new`], the SyncHdr Status carrying `chal` (the next digest nonce of a
    /// device authenticated by digest, see [`super::digest`]).
    pub fn with_chal(
        msg: &'m ClientMessage,
        server_url: &str,
        max_msg_size: usize,
        chal: &str,
    ) -> Self {
        let mut reply = ServerMessage::reply_to(&msg.hdr, server_url, max_msg_size);
        reply.status_with_chal(&msg.hdr.msg_id, "0", "SyncHdr", 200, chal);
        Exchange {
            msg,
            reply,
            responses: Vec::new(),
            chunk_ops: Vec::new(),
            unenrolled: false,
            // A device challenged for credentials sends package 1 again under the next
            // MsgID (OMA-DM 1.2 Security); its session opening alert (1200/1201) marks it.
            opens_session: !chal.is_empty()
                && msg.commands.iter().any(|c| {
                    c.verb == "Alert" && matches!(c.data.as_deref(), Some("1200" | "1201"))
                }),
        }
    }

    /// Reads one command of the message. `sent` is None unless the previous call for
    /// this command asked for the sent command ([`Read::NeedsSentCommand`]).
    pub fn read<'c>(
        &mut self,
        cmd: &'c ClientCommand,
        device_id: &str,
        chunks: &dyn ChunkView,
        sent: Option<Option<&SentCommand>>,
    ) -> Read<'c> {
        let msg_id = &self.msg.hdr.msg_id;
        match cmd.kind() {
            // Status answers one of our commands; it is not itself acknowledged.
            Some(Verb::Status) => {
                if let Some(cmd_ref) = cmd.cmd_ref.as_deref().filter(|r| *r != "0") {
                    self.responses
                        .push(response_record(cmd_ref, cmd, cmd.xml.clone()));
                }
            }
            Some(Verb::Alert) if is_unenroll_alert(cmd) => {
                self.unenrolled = true;
                self.reply.status(msg_id, &cmd.cmd_id, &cmd.verb, 200);
            }
            Some(Verb::Results) => {
                let (code, store) = match results(device_id, cmd, chunks, sent, &mut self.chunk_ops)
                {
                    Ok(v) => v,
                    Err(command_uuid) => return Read::NeedsSentCommand(command_uuid),
                };
                if let (Some(cmd_ref), Some(xml)) = (cmd.cmd_ref.as_deref(), store) {
                    self.responses
                        .push(response_record(cmd_ref, cmd, xml.into_owned()));
                }
                self.reply.status(msg_id, &cmd.cmd_id, &cmd.verb, code);
            }
            kind => self
                .reply
                .status(msg_id, &cmd.cmd_id, &cmd.verb, Verb::client_status(kind)),
        }
        Read::Done
    }

    /// What the message stores. Commands go out once the device's package is complete
    /// (Final), never to a device that is leaving; MaxMsgSize is honoured, commands that
    /// do not fit wait.
    pub fn work(
        &mut self,
        device_id: &str,
        current_cert: bool,
        redeliver_after_secs: i64,
    ) -> MessageWork {
        let hdr = &self.msg.hdr;
        let delivery = (self.msg.is_final && !self.unenrolled).then(|| Delivery {
            used: self.reply.len(),
            limit: hdr.max_msg_size.unwrap_or(usize::MAX),
            redeliver_after_secs,
        });
        MessageWork {
            device_id: device_id.to_string(),
            session_id: hdr.session_id.clone(),
            // Once per session (its first message): check-in time and certificate retirement.
            first_in_session: hdr.msg_id == "1" || self.opens_session,
            current_cert,
            responses: std::mem::take(&mut self.responses),
            delivery,
        }
    }

    /// The large-object changes to apply now that the message is stored.
    pub fn take_chunk_ops(&mut self) -> Vec<ChunkOp> {
        std::mem::take(&mut self.chunk_ops)
    }

    /// What follows from storing the message (`delivery` as in its [`MessageWork`]).
    pub fn next(&self, delivery: Option<Delivery>, outcome: MessageOutcome) -> Next {
        next(self.unenrolled, delivery, outcome)
    }

    /// The answer without commands.
    pub fn finish(self) -> String {
        self.into_reply().finish()
    }

    /// The answer asking for the package's next message (Alert 1222).
    pub fn ask_for_more(self) -> String {
        self.into_reply().ask_for_more()
    }

    /// The answer carrying `commands`, each under its UUID as CmdID.
    pub fn finish_with(self, commands: &[QueuedCommand]) -> String {
        self.into_reply().finish_with(commands)
    }

    /// The answer still to finish, without the message it reads (once every command is
    /// read and the work taken): it travels to where the message is stored.
    pub fn into_reply(self) -> Reply {
        Reply {
            reply: self.reply,
            unenrolled: self.unenrolled,
        }
    }
}

fn next(unenrolled: bool, delivery: Option<Delivery>, outcome: MessageOutcome) -> Next {
    if unenrolled || outcome.unenroll_acknowledged {
        return Next::Unenrolled;
    }
    let Some(delivery) = delivery else {
        return Next::AskForMore;
    };
    match outcome.commands {
        Some(commands) => Next::Send(commands),
        None => Next::AdvanceProfiles(delivery),
    }
}

/// A message's answer once its commands are read: finished from what storing found.
pub struct Reply {
    reply: ServerMessage,
    unenrolled: bool,
}

/// What storing a message decided about its answer.
pub enum Answered {
    /// The answer is complete; `unenrolled`: record the device unenrolled.
    Done { xml: String, unenrolled: bool },
    /// Profiles move first: advance them, claim with this delivery, then finish.
    AdvanceProfiles(Reply, Delivery),
}

impl Reply {
    /// The answer, decided the moment the message is stored (so it is recorded with it),
    /// unless profile work must come first.
    pub fn answer(self, delivery: Option<Delivery>, outcome: MessageOutcome) -> Answered {
        match next(self.unenrolled, delivery, outcome) {
            Next::Unenrolled => Answered::Done {
                xml: self.finish(),
                unenrolled: true,
            },
            Next::AskForMore => Answered::Done {
                xml: self.ask_for_more(),
                unenrolled: false,
            },
            Next::Send(commands) => Answered::Done {
                xml: self.finish_with(&commands),
                unenrolled: false,
            },
            Next::AdvanceProfiles(d) => Answered::AdvanceProfiles(self, d),
        }
    }

    /// The answer without commands.
    pub fn finish(self) -> String {
        self.reply.finish()
    }

    /// The answer asking for the package's next message (Alert 1222).
    pub fn ask_for_more(mut self) -> String {
        self.reply.alert(1222);
        self.reply.finish()
    }

    /// The answer carrying `commands`, each under its UUID as CmdID.
    pub fn finish_with(mut self, commands: &[QueuedCommand]) -> String {
        for c in commands {
            self.reply.command(&c.command_uuid, &c.body_xml);
        }
        self.reply.finish()
    }
}

/// What to store of `cmd`, answering `cmd_ref`: its XML as received, or `xml` (a
/// reassembled large object).
fn response_record(cmd_ref: &str, cmd: &ClientCommand, xml: String) -> ResponseRecord {
    let kind = if cmd.kind() == Some(Verb::Status) {
        ResponseKind::Status
    } else {
        ResponseKind::Results
    };
    ResponseRecord {
        cmd_ref: cmd_ref.to_string(),
        msg_ref: cmd.msg_ref.clone().unwrap_or_default(),
        kind,
        status_code: if kind == ResponseKind::Status {
            cmd.data.clone()
        } else {
            None
        },
        body_xml: xml,
    }
}

/// Alert 1226 is OMA-DM's generic alert, which Windows sends "when the user triggers an
/// MDM unenrollment action from the device or when a CSP finishes some asynchronous
/// actions" (Microsoft Learn, OMA DM protocol support, DM protocol commands), so only the
/// unenrollment alert unenrolls:
/// - Type `com.microsoft:mdm.unenrollment.userrequest`, the only unenrollment type
///   Microsoft documents (Disconnecting from the management infrastructure, user-initiated
///   disconnection; vectors `omadm-alert-1226-unenroll.xml`,
///   `omadm-pkg1-client-unenroll-1226.xml`);
/// - the same alert with an empty Meta, which Windows 10 1803 to 2004 send
///   (MicrosoftDocs/windows-itpro-docs issues 8376 and 8849; protocol-reference §7): no
///   Type, no Source, Item Data `1`. Alerts of asynchronous CSP work name their Type and
///   the Source node, so they never match this.
pub fn is_unenroll_alert(cmd: &ClientCommand) -> bool {
    const UNENROLL_TYPE: &str = "com.microsoft:mdm.unenrollment.userrequest";
    if cmd.data.as_deref() != Some("1226") {
        return false;
    }
    let wrapped = format!(
        "<SyncBody xmlns=\"{}\">{}</SyncBody>",
        syncml::NS_SYNCML,
        cmd.xml
    );
    let Ok(doc) = roxmltree::Document::parse(&wrapped) else {
        return false;
    };
    fn element<'a, 'i>(
        parent: roxmltree::Node<'a, 'i>,
        name: &str,
    ) -> Option<roxmltree::Node<'a, 'i>> {
        parent
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == name)
    }
    fn text<'a>(n: Option<roxmltree::Node<'a, 'a>>) -> Option<&'a str> {
        n.and_then(|n| n.text()).map(str::trim)
    }
    let Some(item) = element(doc.root_element(), "Item") else {
        return false;
    };
    match text(element(item, "Type")).unwrap_or("") {
        UNENROLL_TYPE => true,
        "" => {
            let item_data = item
                .children()
                .find(|n| n.is_element() && n.tag_name().name() == "Data");
            element(item, "Source").is_none() && text(item_data) == Some("1")
        }
        _ => false,
    }
}

/// Whether a Results chunk about `loc_uri` answers `sent`: about one of the command's
/// nodes (its target or below, or a LocURI of its XML).
pub fn answers_sent_command(sent: &SentCommand, loc_uri: &str) -> bool {
    let target = sent.target.as_str();
    let escaped = escape(loc_uri);
    !loc_uri.is_empty()
        && (loc_uri == target
            || loc_uri
                .strip_prefix(target)
                .is_some_and(|rest| rest.starts_with('/'))
            || sent
                .body_xml
                .contains(&format!("<LocURI>{escaped}</LocURI>")))
}

/// Reads a Results command, reassembling large objects sent in chunks with MoreData.
/// Returns the status code to answer it with (200; 213 chunk accepted; 404 a chunk for
/// no command sent to this device; 413 "Request entity too large", OMA-DM 1.2, for an
/// object over the reassembly bounds; 414 "URI too long" for a chunk's LocURI over
/// [`reassembly::MAX_KEY_PART`]) and the element to store, once complete; or, for a
/// first chunk read with `sent` None, `Err` with the UUID of the command to look up.
/// Changes to the reassembly buffers go to `ops`, applied once the message is stored.
/// The XML to store is the command's own, or the reassembled object's.
fn results<'c>(
    device_id: &str,
    cmd: &'c ClientCommand,
    chunks: &dyn ChunkView,
    sent: Option<Option<&SentCommand>>,
    ops: &mut Vec<ChunkOp>,
) -> Result<(u16, Option<Cow<'c, str>>), &'c str> {
    let Some(cmd_ref) = cmd.cmd_ref.as_deref() else {
        return Ok((200, None));
    };
    let items = cmd.result_items();
    let key = |item: &ResultItem| ChunkKey::new(device_id, cmd_ref, item.loc_uri.as_str());
    if let Some(item) = items.iter().find(|i| i.more_data) {
        // Keys are charged against the bounds, but refused outright when long: a
        // CmdRef we send is short (a command's ID, `.n` added when nested), so a longer one answers nothing we
        // sent (404); a LocURI over the bound gets 414 "URI too long" (OMA-DM 1.2
        // RepPro §10). Checked before any lookup, and nothing is buffered.
        if cmd_ref.len() > reassembly::MAX_KEY_PART {
            tracing::info!(%device_id, "large-object chunk with an over-long CmdRef refused");
            return Ok((404, None));
        }
        if item.loc_uri.len() > reassembly::MAX_KEY_PART {
            tracing::info!(%device_id, cmd_ref, "large-object chunk with an over-long LocURI refused");
            return Ok((414, None));
        }
        let k = key(item);
        match chunks.pending(&k) {
            Pending::Refused => return Ok((413, None)),
            // A first chunk opens a buffer only for a command really sent to the device.
            Pending::None => {
                let Some(sent) = sent else {
                    return Err(cmd_ref.split('.').next().unwrap_or(cmd_ref));
                };
                if !sent.is_some_and(|s| answers_sent_command(s, &item.loc_uri)) {
                    tracing::info!(%device_id, cmd_ref, loc_uri = %item.loc_uri, "large-object chunk for no command sent to this device refused");
                    return Ok((404, None));
                }
            }
            Pending::Buffered(_) => {}
        }
        if !chunks.fits(&k, item.data.len()) {
            ops.push(ChunkOp::Refuse(k));
            return Ok((413, None));
        }
        ops.push(ChunkOp::Append(k, item.data.clone()));
        return Ok((213, None));
    }
    // The last chunk completes a buffered object; a plain Results is stored as sent.
    if let Some(item) = items.first() {
        let k = key(item);
        match chunks.pending(&k) {
            Pending::Buffered(held) if held + item.data.len() <= chunks.object_limit() => {
                let Some(data) = chunks.whole(&k, &item.data) else {
                    // Expired or evicted since `pending`, a moment ago.
                    ops.push(ChunkOp::Finish(k));
                    return Ok((413, None));
                };
                let whole = syncml::reassembled_results(cmd, item, &data);
                ops.push(ChunkOp::Finish(k));
                return Ok((200, Some(Cow::Owned(whole))));
            }
            Pending::Buffered(_) | Pending::Refused => {
                ops.push(ChunkOp::Finish(k));
                return Ok((413, None));
            }
            Pending::None => {}
        }
    }
    Ok((200, Some(Cow::Borrowed(cmd.xml.as_str()))))
}

#[cfg(test)]
mod tests;
