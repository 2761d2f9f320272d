//! One OMA-DM management session as a state machine without I/O: feed it the server's
//! messages, it returns the device's replies ([MS-MDM] §3.1.5, OMA-DM 1.2 Protocol §8).
//!
//! Replies larger than the server's `MaxMsgSize` are split (OMA-DM 1.2 Protocol §7, large
//! objects): the Results item goes out in chunks with `MoreData`, the first carrying
//! `Meta/Size`, each in its own message without `Final`; the server answers 213 and
//! Alert 1222 and the next chunk follows.

use crate::csp::{self, code, BuiltIns, NodeStore, NodeValue};
use crate::csp::{Effects, Tree};
use crate::error::ClientError;
use crate::syncml::{self, Command, OutMessage, ResultItem, ServerMessage};
use crate::warning::{warn, Warning};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

mod challenge;
mod statuses;

const STEP: &str = "sync";
/// Alert codes (OMA-DM 1.2 Representation Protocol §7).
pub const ALERT_CLIENT_INITIATED: u16 = 1201;
pub const ALERT_NEXT_MESSAGE: u16 = 1222;
pub const ALERT_GENERIC: u16 = 1226;
/// `Meta/Type` of the device-initiated unenrollment alert ("disconnecting from MDM").
pub const UNENROLL_ALERT_TYPE: &str = "com.microsoft:mdm.unenrollment.userrequest";
/// A chunk smaller than this is not worth a message of its own.
const MIN_CHUNK: usize = 128;

/// What the device did with one server command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCommandRecord {
    pub verb: String,
    pub cmd_id: String,
    /// Target of the first item, if any.
    pub target: Option<String>,
    /// The status code the device answered with.
    pub status: u16,
}

struct StatusReply {
    cmd_ref: Option<String>,
    verb: String,
    targets: Vec<String>,
    code: u16,
}

enum Reply {
    Status(StatusReply),
    Results {
        cmd_ref: String,
        items: Vec<ResultItem>,
    },
}

/// Results not yet (completely) sent.
struct Pending {
    msg_ref: String,
    cmd_ref: String,
    items: Vec<ResultItem>,
    /// Chunks of the (single) item already went out.
    chunking: bool,
}

/// Device-side session state.
pub struct ManagementSession {
    session_id: String,
    target: String,
    device_id: String,
    msg_id: u32,
    /// (CmdID, verb) of commands in our last message that need a Status.
    awaiting: Vec<(String, String)>,
    /// CmdID of the chunk Results in our last message.
    chunk_sent: Option<String>,
    queue: VecDeque<Pending>,
    max_msg_size: Option<usize>,
    /// Every server command handled in this session.
    pub records: Vec<ServerCommandRecord>,
    /// Actions to take once the session is over.
    pub effects: Effects,
    finished: bool,
    /// Tolerated deviations in the server's messages.
    warnings: Vec<Warning>,
    /// Digest credentials toward the server, when provisioned (see [`crate::digest`]).
    digest: Option<crate::digest::DigestAuth>,
    /// Whether our messages carry `Cred`: from the first digest challenge on.
    send_cred: bool,
    /// Whether our last message carried `Cred`.
    last_had_cred: bool,
    /// Package 1's login status and unenroll flag, to send it again after a challenge.
    first: Option<(String, bool)>,
}

fn escaped_len(c: char) -> usize {
    match c {
        '<' | '>' => 4,
        '&' => 5,
        '"' | '\'' => 6,
        c => c.len_utf8(),
    }
}

/// Splits `data` after at most `budget` bytes of escaped XML (at a char boundary).
fn split_escaped(data: &str, budget: usize) -> (&str, &str) {
    let mut used = 0;
    for (i, c) in data.char_indices() {
        used += escaped_len(c);
        if used > budget {
            return data.split_at(i);
        }
    }
    (data, "")
}

impl ManagementSession {
    pub fn new(session_id: &str, target: &str, device_id: &str) -> Self {
        ManagementSession {
            session_id: session_id.to_string(),
            target: target.to_string(),
            device_id: device_id.to_string(),
            msg_id: 0,
            awaiting: Vec::new(),
            chunk_sent: None,
            queue: VecDeque::new(),
            max_msg_size: None,
            records: Vec::new(),
            effects: Effects::default(),
            finished: false,
            warnings: Vec::new(),
            digest: None,
            send_cred: false,
            last_had_cred: false,
            first: None,
        }
    }

    /// Answers digest challenges with these credentials (see [`crate::digest`]).
    pub fn with_digest(mut self, digest: Option<crate::digest::DigestAuth>) -> Self {
        self.digest = digest;
        self
    }

    /// The digest credentials with the latest nonce the server sent, to keep for the
    /// next session.
    pub fn digest(&self) -> Option<&crate::digest::DigestAuth> {
        self.digest.as_ref()
    }

    /// `Cred` for the next message, once the server asked for credentials.
    fn cred(&mut self) -> Option<String> {
        let cred = self
            .digest
            .as_ref()
            .filter(|_| self.send_cred)
            .map(crate::digest::DigestAuth::cred_xml);
        self.last_had_cred = cred.is_some();
        cred
    }

    /// Warnings recorded so far (see [`crate::warning`]).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Returns the recorded warnings and clears the list.
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.warnings)
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The server's latest `MaxMsgSize`.
    pub fn max_msg_size(&self) -> Option<usize> {
        self.max_msg_size
    }

    /// Package 1: Alert 1201 (client-initiated), Alert 1224 login status, Replace of the
    /// DevInfo nodes. CmdIDs start at 2 as in a published Windows capture.
    pub fn first_message(&mut self, builtins: &BuiltIns, login_status: &str) -> String {
        self.package_one(builtins, login_status, false)
    }

    /// Package 1 of a device-initiated unenrollment: as [`Self::first_message`] plus the
    /// generic Alert 1226 with Type `com.microsoft:mdm.unenrollment.userrequest`
    /// (Microsoft's "disconnecting from MDM").
    pub fn first_message_unenroll(&mut self, builtins: &BuiltIns, login_status: &str) -> String {
        self.package_one(builtins, login_status, true)
    }

    fn package_one(&mut self, builtins: &BuiltIns, login_status: &str, unenroll: bool) -> String {
        // MsgID 1, or the next one when package 1 goes again after a digest challenge.
        self.msg_id += 1;
        self.first = Some((login_status.to_string(), unenroll));
        let ns = syncml::NS_METINF;
        let mut out = OutMessage::new(
            &self.session_id,
            self.msg_id,
            &self.target,
            &self.device_id,
            2,
        );
        out.cred = self.cred();
        let a1 = out.next_id();
        out.push(format!(
            "<Alert><CmdID>{a1}</CmdID><Data>{ALERT_CLIENT_INITIATED}</Data></Alert>"
        ));
        let a2 = out.next_id();
        out.push(format!(
            r#"<Alert><CmdID>{a2}</CmdID><Data>1224</Data><Item><Meta><Type xmlns="{ns}">com.microsoft/MDM/LoginStatus</Type><Format xmlns="{ns}">chr</Format></Meta><Data>{}</Data></Item></Alert>"#,
            crate::xml::esc(login_status),
        ));
        self.awaiting = vec![
            (a1.to_string(), "Alert".into()),
            (a2.to_string(), "Alert".into()),
        ];
        if unenroll {
            let a3 = out.next_id();
            out.push(format!(
                r#"<Alert><CmdID>{a3}</CmdID><Data>{ALERT_GENERIC}</Data><Item><Meta><Type xmlns="{ns}">{UNENROLL_ALERT_TYPE}</Type><Format xmlns="{ns}">int</Format></Meta><Data>1</Data></Item></Alert>"#
            ));
            self.awaiting.push((a3.to_string(), "Alert".into()));
        }
        let r = out.next_id();
        let items: String = ["DevId", "Man", "Mod", "DmV", "Lang"]
            .iter()
            .filter_map(|n| {
                let path = format!("./DevInfo/{n}");
                builtins
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map(|(p, _, v)| {
                        format!(
                            "<Item><Source><LocURI>{}</LocURI></Source><Data>{}</Data></Item>",
                            crate::xml::esc(p),
                            crate::xml::esc(v)
                        )
                    })
            })
            .collect();
        out.push(format!("<Replace><CmdID>{r}</CmdID>{items}</Replace>"));
        self.awaiting.push((r.to_string(), "Replace".into()));
        out.to_xml()
    }

    /// Handles a server message. Returns the device's next message, or `None` when the
    /// server sent nothing but Status with `Final` and nothing is left to send.
    pub fn handle(
        &mut self,
        xml: &str,
        store: &mut NodeStore,
        builtins: &BuiltIns,
    ) -> Result<Option<String>, ClientError> {
        let msg = syncml::parse_server_message_with(xml, &mut self.warnings)?;
        if let Some(again) = self.answer_challenge(&msg, builtins)? {
            return Ok(Some(again));
        }
        self.check_statuses(&msg)?;
        if let Some(m) = msg.max_msg_size {
            self.max_msg_size = Some(m);
        }
        if msg.commands.is_empty() && msg.is_final && self.queue.is_empty() {
            self.finished = true;
            return Ok(None);
        }
        self.msg_id += 1;
        let mut replies = Vec::new();
        for cmd in &msg.commands {
            let mut tree = Tree {
                store: &mut *store,
                builtins,
                effects: &mut self.effects,
            };
            Self::execute(&mut self.records, cmd, &mut tree, false, &mut replies);
        }
        let mut out = OutMessage::new(
            &self.session_id,
            self.msg_id,
            &self.target,
            &self.device_id,
            1,
        );
        out.cred = self.cred();
        out.status(&msg.msg_id, Some("0"), "SyncHdr", &[], code::OK);
        for r in replies {
            match r {
                Reply::Status(s) => out.status(
                    &msg.msg_id,
                    s.cmd_ref.as_deref(),
                    &s.verb,
                    &s.targets,
                    s.code,
                ),
                Reply::Results { cmd_ref, items } => self.queue.push_back(Pending {
                    msg_ref: msg.msg_id.clone(),
                    cmd_ref,
                    items,
                    chunking: false,
                }),
            }
        }
        // Status and Results need no Status back (Results' Status is optional in OMA-DM 1.2).
        self.awaiting.clear();
        self.chunk_sent = None;
        // A server package split over messages: ask for the next one (OMA-DM 1.2 §8).
        if !msg.is_final {
            let id = out.alert(ALERT_NEXT_MESSAGE);
            self.awaiting.push((id.to_string(), "Alert".into()));
        }
        self.fill(&mut out)?;
        Ok(Some(out.to_xml()))
    }

    /// Adds queued Results while they fit in the server's MaxMsgSize, chunking a large item.
    fn fill(&mut self, out: &mut OutMessage) -> Result<(), ClientError> {
        let limit = self.max_msg_size.unwrap_or(usize::MAX);
        while let Some(front) = self.queue.front_mut() {
            let mut trial = out.clone();
            trial.results_items(&front.msg_ref, &front.cmd_ref, &front.items);
            if trial.xml_len() <= limit && !front.chunking {
                out.results_items(&front.msg_ref, &front.cmd_ref, &front.items);
                self.queue.pop_front();
                continue;
            }
            if front.items.len() > 1 {
                // Send the items one by one (same CmdRef), so only the large one is chunked.
                if let Some(p) = self.queue.pop_front() {
                    for item in p.items.into_iter().rev() {
                        self.queue.push_front(Pending {
                            msg_ref: p.msg_ref.clone(),
                            cmd_ref: p.cmd_ref.clone(),
                            items: vec![item],
                            chunking: false,
                        });
                    }
                }
                continue;
            }
            let Some(item) = front.items.first().cloned() else {
                self.queue.pop_front();
                continue;
            };
            let mut shell = item.clone();
            shell.data.clear();
            shell.more_data = true;
            shell.size = (!front.chunking).then_some(item.data.len());
            let mut trial = out.clone();
            trial.results_items(&front.msg_ref, &front.cmd_ref, std::slice::from_ref(&shell));
            let budget = limit.saturating_sub(trial.xml_len());
            // syncml.max_msg_size (fail): the device must not exceed the server's
            // MaxMsgSize (OMA-DM 1.2 Representation, Meta/MaxMsgSize); a limit that leaves
            // no room for any chunk makes the object impossible to send.
            if budget < MIN_CHUNK {
                // Only the SyncHdr Status (and an Alert) in the message: nothing to defer.
                if out.len() <= 2 {
                    return Err(ClientError::invalid(
                        STEP,
                        format!("server MaxMsgSize {limit} leaves no room for a Results chunk"),
                    ));
                }
                break;
            }
            let (chunk, rest) = split_escaped(&item.data, budget);
            let mut sent = shell;
            sent.data = chunk.to_string();
            sent.more_data = !rest.is_empty();
            let id = out.results_items(&front.msg_ref, &front.cmd_ref, &[sent]);
            self.chunk_sent = Some(id.to_string());
            if rest.is_empty() {
                self.queue.pop_front();
            } else {
                front.chunking = true;
                if let Some(it) = front.items.first_mut() {
                    it.data = rest.to_string();
                    it.size = None;
                }
                break;
            }
        }
        out.is_final = self.queue.is_empty();
        Ok(())
    }

    /// An empty HTTP 200 body ends the session when our last message needed no answer
    /// (seen in a published Windows capture).
    pub fn handle_empty(&mut self) -> Result<(), ClientError> {
        // syncml.empty_body (fail): package 1 must be answered with a message carrying the
        // Status for our SyncHdr, which reports the authentication result (OMA-DM 1.2
        // Protocol §8.3 package 2, §9 authentication); an empty body before that, or while
        // a large object is still being sent, leaves the session unfinished.
        if self.msg_id > 1 && self.queue.is_empty() {
            // syncml.command_status_missing (warn): see check_statuses.
            for (id, verb) in std::mem::take(&mut self.awaiting) {
                warn(
                    &mut self.warnings,
                    "syncml.command_status_missing",
                    format!("empty response: no Status for our {verb} CmdID {id}"),
                );
            }
            self.finished = true;
            Ok(())
        } else {
            Err(ClientError::missing(
                STEP,
                "SyncML message (empty response body)",
            ))
        }
    }

    fn record(records: &mut Vec<ServerCommandRecord>, cmd: &Command, status: u16) {
        records.push(ServerCommandRecord {
            verb: cmd.verb.clone(),
            cmd_id: cmd.cmd_id.clone().unwrap_or_default(),
            target: cmd.items.first().and_then(|i| i.target.clone()),
            status,
        });
    }

    fn execute(
        records: &mut Vec<ServerCommandRecord>,
        cmd: &Command,
        tree: &mut Tree,
        in_atomic: bool,
        replies: &mut Vec<Reply>,
    ) -> u16 {
        let targets: Vec<String> = cmd.items.iter().filter_map(|i| i.target.clone()).collect();
        let status = |code: u16| {
            Reply::Status(StatusReply {
                cmd_ref: cmd.cmd_id.clone(),
                verb: cmd.verb.clone(),
                targets: targets.clone(),
                code,
            })
        };
        // Windows answers a command without CmdID with 400 and an empty CmdRef.
        let Some(cmd_id) = cmd.cmd_id.clone() else {
            replies.push(status(code::BAD_REQUEST));
            Self::record(records, cmd, code::BAD_REQUEST);
            return code::BAD_REQUEST;
        };
        let code = match cmd.verb.as_str() {
            // "OMA DM protocol support": Get inside Atomic is not allowed (500).
            "Get" if in_atomic => code::COMMAND_FAILED,
            "Get" => {
                let mut worst = code::OK;
                let mut items = Vec::new();
                for it in &cmd.items {
                    match it.target.as_deref().and_then(csp::normalise) {
                        None => worst = code::BAD_REQUEST,
                        Some(p) => match tree.get(&p) {
                            Ok(r) => items.push(ResultItem {
                                uri: it.target.clone().unwrap_or_default(),
                                format: r.format,
                                mime: r.mime,
                                data: r.data,
                                size: None,
                                more_data: false,
                            }),
                            Err(c) => worst = c,
                        },
                    }
                }
                if cmd.items.is_empty() {
                    worst = code::BAD_REQUEST;
                }
                replies.push(status(worst));
                if !items.is_empty() {
                    replies.push(Reply::Results {
                        cmd_ref: cmd_id.clone(),
                        items,
                    });
                }
                Self::record(records, cmd, worst);
                return worst;
            }
            "Add" | "Replace" | "Delete" | "Exec" => {
                let mut worst = code::OK;
                if cmd.items.is_empty() {
                    worst = code::BAD_REQUEST;
                }
                for it in &cmd.items {
                    let c = match it.target.as_deref().and_then(csp::normalise) {
                        None => code::BAD_REQUEST,
                        Some(p) => {
                            let value = NodeValue {
                                format: it.format.clone().unwrap_or_default(),
                                mime: it.mime.clone(),
                                data: it.data.clone(),
                            };
                            match cmd.verb.as_str() {
                                "Add" => tree.set(&p, value, false),
                                "Replace" => tree.set(&p, value, true),
                                "Delete" => tree.delete(&p),
                                _ => tree.exec(&p),
                            }
                        }
                    };
                    if c != code::OK {
                        worst = c;
                    }
                }
                worst
            }
            "Alert" => code::OK,
            // Nested Atomic: 500 for the inner one, 507 for the parent.
            "Atomic" if in_atomic => code::COMMAND_FAILED,
            "Atomic" => {
                let snapshot = (tree.store.clone(), tree.effects.clone());
                let mut inner = Vec::new();
                // Every nested command runs (and gets a Status) even after a failure.
                let codes: Vec<u16> = cmd
                    .nested
                    .iter()
                    .map(|c| Self::execute(records, c, tree, true, &mut inner))
                    .collect();
                let ok = codes.iter().all(|c| *c == code::OK);
                let code = if ok { code::OK } else { code::ATOMIC_FAILED };
                if !ok {
                    *tree.store = snapshot.0;
                    *tree.effects = snapshot.1;
                    inner = inner
                        .into_iter()
                        .filter_map(|r| match r {
                            Reply::Status(mut s) => {
                                if s.code == code::OK {
                                    s.code = code::ATOMIC_ROLLBACK_OK;
                                }
                                Some(Reply::Status(s))
                            }
                            Reply::Results { .. } => None,
                        })
                        .collect();
                }
                replies.push(status(code));
                replies.extend(inner);
                Self::record(records, cmd, code);
                return code;
            }
            "Sequence" => {
                let mut inner = Vec::new();
                for c in &cmd.nested {
                    Self::execute(records, c, tree, in_atomic, &mut inner);
                }
                replies.push(status(code::OK));
                replies.extend(inner);
                Self::record(records, cmd, code::OK);
                return code::OK;
            }
            _ => code::BAD_REQUEST,
        };
        replies.push(status(code));
        Self::record(records, cmd, code);
        code
    }
}
