//! The device-side ledger of a chaos run, read from each device's recorded management
//! exchanges: which commands the server sent (by CmdID, which this server sets to the
//! command's id), which Statuses the device answered, and whether the server answered
//! the message carrying them with HTTP 200 (then it must have stored them: the server
//! commits before it answers).
//!
//! A command sent again after the server answered the device's Status for it is the
//! violation "executed twice by a device that received the answer".

use std::collections::{BTreeMap, BTreeSet};

use fake_windows_client::Exchange;

/// What one device saw of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSeen {
    /// Times the server sent it.
    pub received: u32,
    /// Status codes the device answered with, and whether the server answered each
    /// of those messages with HTTP 200.
    pub answered: Vec<(String, bool)>,
}

/// A violation found on the device side, with the exchange that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub device_id: String,
    pub detail: String,
    pub excerpt: String,
}

/// One device's ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    pub device_id: String,
    pub commands: BTreeMap<String, CommandSeen>,
    /// Command ids whose Status the server answered with HTTP 200.
    acknowledged: BTreeSet<String>,
    pub violations: Vec<Violation>,
    /// Management exchanges read, and those answered with HTTP 200.
    pub messages: u64,
    pub answered_messages: u64,
    /// Whether the session after the drain succeeded (None: not run).
    pub final_session_ok: Option<bool>,
    /// The device's Policy CSP nodes after that session (node path, value).
    pub tree: BTreeMap<String, String>,
    /// Management messages of sessions run wholly while the database was down.
    pub outage: super::OutageAnswers,
}

fn children<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    n.children().filter(|c| c.is_element())
}

fn child_text(n: roxmltree::Node, name: &str) -> Option<String> {
    children(n)
        .find(|c| c.tag_name().name() == name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

fn sync_body(xml: &str) -> Option<(roxmltree::Document<'_>, roxmltree::NodeId)> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let id = doc
        .descendants()
        .find(|n| n.tag_name().name() == "SyncBody")?
        .id();
    Some((doc, id))
}

/// The Statuses (CmdRef, code) for server commands in a device message.
fn statuses(xml: &str) -> Vec<(String, String)> {
    let Some((doc, body)) = sync_body(xml) else {
        return Vec::new();
    };
    let Some(body) = doc.get_node(body) else {
        return Vec::new();
    };
    children(body)
        .filter(|c| c.tag_name().name() == "Status")
        .filter(|c| child_text(*c, "Cmd").as_deref() != Some("SyncHdr"))
        .filter_map(|c| Some((child_text(c, "CmdRef")?, child_text(c, "Data")?)))
        .collect()
}

/// CmdIDs of the top-level commands of a server message (not Status or Results).
fn commands(xml: &str) -> Vec<String> {
    let Some((doc, body)) = sync_body(xml) else {
        return Vec::new();
    };
    let Some(body) = doc.get_node(body) else {
        return Vec::new();
    };
    children(body)
        .filter(|c| !matches!(c.tag_name().name(), "Status" | "Results" | "Final"))
        .filter_map(|c| child_text(c, "CmdID"))
        .collect()
}

/// The command id a CmdRef names (an Atomic's children are `ID.n`).
fn command_of(cmd_ref: &str) -> &str {
    cmd_ref.split('.').next().unwrap_or(cmd_ref)
}

impl Ledger {
    pub fn new(device_id: &str) -> Ledger {
        Ledger {
            device_id: device_id.to_string(),
            ..Ledger::default()
        }
    }

    /// Reads the device's exchanges in order (only management sessions count).
    pub fn read(&mut self, exchanges: &[Exchange]) {
        for e in exchanges.iter().filter(|e| e.step == "sync") {
            self.messages += 1;
            let answered = e.status == Some(200);
            self.answered_messages += u64::from(answered);
            for (cmd_ref, code) in statuses(&e.request_body) {
                let id = command_of(&cmd_ref).to_string();
                if cmd_ref != id {
                    continue; // one Status per command: the Atomic's own
                }
                self.commands
                    .entry(id.clone())
                    .or_default()
                    .answered
                    .push((code, answered));
                if answered {
                    self.acknowledged.insert(id);
                }
            }
            if !answered {
                continue;
            }
            for id in commands(&e.response_body) {
                if self.acknowledged.contains(&id) {
                    self.violations.push(Violation {
                        invariant: "no_command_twice",
                        device_id: self.device_id.clone(),
                        detail: format!(
                            "command {id} sent again after the server answered its Status"
                        ),
                        excerpt: e.response_body.chars().take(600).collect(),
                    });
                }
                self.commands.entry(id).or_default().received += 1;
            }
        }
    }

    /// Counts the answers to management messages of a session begun while the
    /// database was down (`wholly`: it also ended before the database was started
    /// again). Read the exchanges with [`Ledger::read`] too.
    pub fn read_during_outage(&mut self, exchanges: &[Exchange], wholly: bool) {
        for e in exchanges.iter().filter(|e| e.step == "sync") {
            self.outage.messages += 1;
            match e.status {
                Some(s) if s >= 500 => self.outage.answered_5xx += 1,
                Some(200) if wholly => self.outage.answered_200_while_down += 1,
                Some(200) => self.outage.answered_200_after += 1,
                _ => self.outage.other += 1,
            }
        }
    }

    /// Commands whose Status the server answered with HTTP 200, with the code sent.
    pub fn acknowledged(&self) -> impl Iterator<Item = (&String, &str)> {
        self.commands.iter().filter_map(|(id, seen)| {
            seen.answered
                .iter()
                .rev()
                .find(|(_, ok)| *ok)
                .map(|(code, _)| (id, code.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(request: &str, status: Option<u16>, response: &str) -> Exchange {
        Exchange {
            step: "sync".into(),
            method: "POST".into(),
            url: "https://x/m".into(),
            request_headers: Vec::new(),
            request_body: request.into(),
            status,
            response_headers: Vec::new(),
            response_body: response.into(),
            error: None,
        }
    }

    fn msg(body: &str) -> String {
        format!("<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr/><SyncBody>{body}<Final/></SyncBody></SyncML>")
    }

    const GET: &str = "<Get><CmdID>c1</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>";
    const STATUS: &str = "<Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>c1</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>";

    #[test]
    fn a_command_sent_again_after_its_answered_status_is_a_violation() {
        let mut l = Ledger::new("dev");
        l.read(&[
            exchange(&msg(""), Some(200), &msg(GET)),
            exchange(&msg(STATUS), Some(200), &msg("")),
            exchange(&msg(""), Some(200), &msg(GET)),
        ]);
        assert_eq!(l.violations.len(), 1);
        assert_eq!(l.violations[0].invariant, "no_command_twice");
        assert_eq!(
            l.acknowledged().collect::<Vec<_>>(),
            [(&"c1".to_string(), "200")]
        );
    }

    #[test]
    fn answers_during_an_outage_are_counted_by_kind() {
        let mut l = Ledger::new("dev");
        let down = [
            exchange(&msg(""), Some(500), ""),
            exchange(&msg(""), None, ""),
            exchange(&msg(""), Some(200), &msg("")),
        ];
        l.read_during_outage(&down, false);
        l.read_during_outage(&down[2..], true);
        assert_eq!(
            (
                l.outage.messages,
                l.outage.answered_5xx,
                l.outage.other,
                l.outage.answered_200_after,
                l.outage.answered_200_while_down
            ),
            (4, 1, 1, 1, 1)
        );
    }

    #[test]
    fn a_command_sent_again_when_the_answer_was_lost_is_allowed() {
        let mut l = Ledger::new("dev");
        l.read(&[
            exchange(&msg(""), Some(200), &msg(GET)),
            // The server died before answering the Status: the device never knew.
            exchange(&msg(STATUS), None, ""),
            exchange(&msg(""), Some(200), &msg(GET)),
            exchange(&msg(STATUS), Some(200), &msg("")),
        ]);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        assert_eq!(l.commands["c1"].received, 2);
        assert_eq!(l.commands["c1"].answered.len(), 2);
    }
}
