//! One OMA-DM management session as a state machine without I/O: feed it the server's
//! messages, it returns the device's replies ([MS-MDM] §3.1.5, OMA-DM 1.2 Protocol §8).

use crate::csp::{self, code, BuiltIns, NodeStore, NodeValue};
use crate::error::ClientError;
use crate::syncml::{self, Command, OutMessage, ServerMessage};
use serde::{Deserialize, Serialize};

const STEP: &str = "sync";

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

enum Reply {
    Status {
        cmd_ref: Option<String>,
        verb: String,
        targets: Vec<String>,
        code: u16,
    },
    Results {
        cmd_ref: String,
        items: Vec<(String, String, Option<String>, String)>,
    },
}

/// Device-side session state.
pub struct ManagementSession {
    session_id: String,
    target: String,
    device_id: String,
    msg_id: u32,
    /// (CmdID, verb) of commands in our last message that need a Status.
    awaiting: Vec<(String, String)>,
    /// Every server command handled in this session.
    pub records: Vec<ServerCommandRecord>,
    finished: bool,
}

impl ManagementSession {
    pub fn new(session_id: &str, target: &str, device_id: &str) -> Self {
        ManagementSession {
            session_id: session_id.to_string(),
            target: target.to_string(),
            device_id: device_id.to_string(),
            msg_id: 0,
            awaiting: Vec::new(),
            records: Vec::new(),
            finished: false,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Package 1: Alert 1201 (client-initiated), Alert 1224 login status, Replace of the
    /// DevInfo nodes. CmdIDs start at 2 as in a published Windows capture.
    pub fn first_message(&mut self, builtins: &BuiltIns, login_status: &str) -> String {
        self.msg_id = 1;
        let mut out = OutMessage::new(
            &self.session_id,
            self.msg_id,
            &self.target,
            &self.device_id,
            2,
        );
        let a1 = out.next_id();
        out.push(format!(
            "<Alert><CmdID>{a1}</CmdID><Data>1201</Data></Alert>"
        ));
        let a2 = out.next_id();
        out.push(format!(
            r#"<Alert><CmdID>{a2}</CmdID><Data>1224</Data><Item><Meta><Type xmlns="{ns}">com.microsoft/MDM/LoginStatus</Type><Format xmlns="{ns}">chr</Format></Meta><Data>{}</Data></Item></Alert>"#,
            crate::soap::esc(login_status),
            ns = syncml::NS_METINF
        ));
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
                            crate::soap::esc(p),
                            crate::soap::esc(v)
                        )
                    })
            })
            .collect();
        out.push(format!("<Replace><CmdID>{r}</CmdID>{items}</Replace>"));
        self.awaiting = vec![
            (a1.to_string(), "Alert".into()),
            (a2.to_string(), "Alert".into()),
            (r.to_string(), "Replace".into()),
        ];
        out.to_xml()
    }

    /// Handles a server message. Returns the device's next message, or `None` when the
    /// server sent nothing but Status (the session is over).
    pub fn handle(
        &mut self,
        xml: &str,
        store: &mut NodeStore,
        builtins: &BuiltIns,
    ) -> Result<Option<String>, ClientError> {
        let msg = syncml::parse_server_message(xml)?;
        self.check_statuses(&msg)?;
        if !msg.is_final {
            return Err(ClientError::missing(
                STEP,
                "SyncBody/Final (multi-message packages are not supported)",
            ));
        }
        if msg.commands.is_empty() {
            self.finished = true;
            return Ok(None);
        }
        self.msg_id += 1;
        let mut out = OutMessage::new(
            &self.session_id,
            self.msg_id,
            &self.target,
            &self.device_id,
            1,
        );
        out.status(&msg.msg_id, Some("0"), "SyncHdr", &[], code::OK);
        let mut replies = Vec::new();
        for cmd in &msg.commands {
            self.execute(cmd, store, builtins, false, &mut replies);
        }
        for r in replies {
            match r {
                Reply::Status {
                    cmd_ref,
                    verb,
                    targets,
                    code,
                } => out.status(&msg.msg_id, cmd_ref.as_deref(), &verb, &targets, code),
                Reply::Results { cmd_ref, items } => out.results(&msg.msg_id, &cmd_ref, &items),
            }
        }
        // Status and Results need no Status back (Results' Status is optional in OMA-DM 1.2).
        self.awaiting.clear();
        Ok(Some(out.to_xml()))
    }

    /// An empty HTTP 200 body ends the session when our last message needed no answer
    /// (seen in a published Windows capture).
    pub fn handle_empty(&mut self) -> Result<(), ClientError> {
        if self.msg_id > 1 && self.awaiting.is_empty() {
            self.finished = true;
            Ok(())
        } else {
            Err(ClientError::missing(
                STEP,
                "SyncML message (empty response body)",
            ))
        }
    }

    fn check_statuses(&self, msg: &ServerMessage) -> Result<(), ClientError> {
        if msg.session_id != self.session_id {
            return Err(ClientError::invalid(
                STEP,
                format!(
                    "SessionID is {:?}, expected ours {:?}",
                    msg.session_id, self.session_id
                ),
            ));
        }
        let ours = self.msg_id.to_string();
        let hdr = msg
            .statuses
            .first()
            .ok_or_else(|| ClientError::missing(STEP, "Status for our SyncHdr"))?;
        if hdr.cmd_ref.as_deref() != Some("0") || hdr.msg_ref.as_deref() != Some(ours.as_str()) {
            return Err(ClientError::invalid(
                STEP,
                format!(
                    "SyncHdr Status has CmdRef {:?} MsgRef {:?}, expected 0 and {ours}",
                    hdr.cmd_ref, hdr.msg_ref
                ),
            ));
        }
        match hdr.code.as_deref() {
            Some("200") | Some("212") => {}
            other => {
                return Err(ClientError::invalid(
                    STEP,
                    format!("server answered our SyncHdr with status {other:?}"),
                ))
            }
        }
        for (id, verb) in &self.awaiting {
            let found = msg.statuses.iter().any(|s| {
                s.cmd_ref.as_deref() == Some(id.as_str())
                    && s.msg_ref.as_deref() == Some(ours.as_str())
            });
            if !found {
                return Err(ClientError::missing(
                    STEP,
                    format!("Status for our {verb} CmdID {id}"),
                ));
            }
        }
        Ok(())
    }

    fn record(&mut self, cmd: &Command, status: u16) {
        self.records.push(ServerCommandRecord {
            verb: cmd.verb.clone(),
            cmd_id: cmd.cmd_id.clone().unwrap_or_default(),
            target: cmd.items.first().and_then(|i| i.target.clone()),
            status,
        });
    }

    fn execute(
        &mut self,
        cmd: &Command,
        store: &mut NodeStore,
        builtins: &BuiltIns,
        in_atomic: bool,
        replies: &mut Vec<Reply>,
    ) -> u16 {
        let targets: Vec<String> = cmd.items.iter().filter_map(|i| i.target.clone()).collect();
        let status = |code: u16| Reply::Status {
            cmd_ref: cmd.cmd_id.clone(),
            verb: cmd.verb.clone(),
            targets: targets.clone(),
            code,
        };
        // Windows answers a command without CmdID with 400 and an empty CmdRef.
        let Some(cmd_id) = cmd.cmd_id.clone() else {
            replies.push(status(code::BAD_REQUEST));
            self.record(cmd, code::BAD_REQUEST);
            return code::BAD_REQUEST;
        };
        let code = match cmd.verb.as_str() {
            "Get" if in_atomic => code::COMMAND_FAILED,
            "Get" => {
                let mut worst = code::OK;
                let mut items = Vec::new();
                for it in &cmd.items {
                    match it.target.as_deref().and_then(csp::normalise) {
                        None => worst = code::BAD_REQUEST,
                        Some(p) => match store.get(builtins, &p) {
                            Ok(r) => items.push((
                                it.target.clone().unwrap_or_default(),
                                r.format,
                                r.mime,
                                r.data,
                            )),
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
                self.record(cmd, worst);
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
                                format: it.format.clone().unwrap_or_else(|| "chr".into()),
                                mime: it.mime.clone(),
                                data: it.data.clone(),
                            };
                            match cmd.verb.as_str() {
                                "Add" => store.add(builtins, &p, value),
                                "Replace" => store.replace(&p, value),
                                "Delete" => store.delete(builtins, &p),
                                _ => store.exec(builtins, &p),
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
            "Atomic" if in_atomic => code::COMMAND_FAILED,
            "Atomic" => {
                let snapshot = store.clone();
                let mut inner = Vec::new();
                // Every nested command runs (and gets a Status) even after a failure.
                let codes: Vec<u16> = cmd
                    .nested
                    .iter()
                    .map(|c| self.execute(c, store, builtins, true, &mut inner))
                    .collect();
                let ok = codes.iter().all(|c| *c == code::OK);
                let code = if ok { code::OK } else { code::ATOMIC_FAILED };
                if !ok {
                    *store = snapshot;
                    inner = inner
                        .into_iter()
                        .filter_map(|r| match r {
                            Reply::Status {
                                cmd_ref,
                                verb,
                                targets,
                                code,
                            } => Some(Reply::Status {
                                cmd_ref,
                                verb,
                                targets,
                                code: if code == code::OK {
                                    code::ATOMIC_ROLLBACK_OK
                                } else {
                                    code
                                },
                            }),
                            Reply::Results { .. } => None,
                        })
                        .collect();
                }
                replies.push(status(code));
                replies.extend(inner);
                self.record(cmd, code);
                return code;
            }
            "Sequence" => {
                let mut inner = Vec::new();
                for c in &cmd.nested {
                    self.execute(c, store, builtins, in_atomic, &mut inner);
                }
                replies.push(status(code::OK));
                replies.extend(inner);
                self.record(cmd, code::OK);
                return code::OK;
            }
            _ => code::BAD_REQUEST,
        };
        replies.push(status(code));
        self.record(cmd, code);
        code
    }
}
