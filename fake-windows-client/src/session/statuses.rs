//! The device's judgement of the Statuses in a server message: the Status for our
//! SyncHdr (the authentication result), the Status of each of our commands and of a
//! Results chunk.

use super::*;

impl ManagementSession {
    /// Judges the server's reply to a device message this session did not build (a
    /// real device's, replayed from a capture) with the checks of [`Self::handle`]:
    /// the message itself ([`syncml::parse_server_message_with`]) and the Statuses for
    /// our SyncHdr and for `awaiting` (CmdID, verb) of that message. `our_msg_id` is the
    /// device message's MsgID; an empty `xml` is judged as [`Self::handle_empty`] does.
    pub fn judge_reply(
        xml: &str,
        session_id: &str,
        our_msg_id: u32,
        awaiting: Vec<(String, String)>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<ServerMessage>, ClientError> {
        let mut s = ManagementSession::new(session_id, "", "");
        s.msg_id = our_msg_id;
        s.awaiting = awaiting;
        let result = if xml.trim().is_empty() {
            s.handle_empty().map(|()| None)
        } else {
            syncml::parse_server_message_with(xml, &mut s.warnings)
                .and_then(|msg| s.check_statuses(&msg).map(|()| Some(msg)))
        };
        warnings.append(&mut s.warnings);
        result
    }

    pub(super) fn check_statuses(&mut self, msg: &ServerMessage) -> Result<(), ClientError> {
        let mut warnings = Vec::new();
        // syncml.session_id (warn): the server should echo our SessionID (OMA-DM 1.2
        // Representation, SessionID); the reply arrives on our own HTTP exchange, so the
        // device can still tell which session it belongs to.
        if msg.session_id != self.session_id {
            warn(
                &mut warnings,
                "syncml.session_id",
                format!(
                    "SessionID is {:?}, expected ours {:?}",
                    msg.session_id, self.session_id
                ),
            );
        }
        let ours = self.msg_id.to_string();
        // syncml.synchdr_status_missing (fail): the Status for our SyncHdr carries the
        // server's authentication result (OMA-DM 1.2 Protocol §8.3, §9; 212 or 200 when
        // the device is authenticated); without it the session has no outcome.
        let hdr = msg
            .synchdr_status()
            .ok_or_else(|| ClientError::missing(STEP, "Status for our SyncHdr"))?;
        // syncml.synchdr_status_refs (warn): it should reference CmdRef 0 and our MsgID;
        // there is only one SyncHdr it can answer.
        if hdr.cmd_ref.as_deref() != Some("0") || hdr.msg_ref.as_deref() != Some(ours.as_str()) {
            warn(
                &mut warnings,
                "syncml.synchdr_status_refs",
                format!(
                    "SyncHdr Status has CmdRef {:?} MsgRef {:?}, expected 0 and {ours}",
                    hdr.cmd_ref, hdr.msg_ref
                ),
            );
        }
        // syncml.synchdr_status_code (fail): 200 or 212 accept the device; 401/407 ask for
        // credentials, answered before this check when digest credentials were
        // provisioned (challenge.rs), else the device has none; other codes refuse the
        // message (OMA-DM 1.2 Representation §7 status codes).
        match hdr.code.as_deref() {
            Some("200") | Some("212") => {}
            other => {
                return Err(ClientError::invalid(
                    STEP,
                    format!("server answered our SyncHdr with status {other:?}"),
                ))
            }
        }
        let status_of = |id: &str| {
            msg.statuses.iter().find(|s| {
                s.cmd_ref.as_deref() == Some(id) && s.msg_ref.as_deref() == Some(ours.as_str())
            })
        };
        // syncml.command_status_missing (warn): OMA-DM 1.2 Representation asks for a Status
        // per command, but the device acts on none of them: a reply holding only the
        // SyncHdr Status is a normal end of session. Fleet's server (fleetdm/fleet
        // server/service/microsoft_mdm.go, getManagementResponse) answers every message
        // but the session-opening one, the unenrollment Alert 1226 included, that way.
        for (id, verb) in &self.awaiting {
            if status_of(id).is_none() {
                warn(
                    &mut warnings,
                    "syncml.command_status_missing",
                    format!("no Status for our {verb} CmdID {id}"),
                );
            }
        }
        // syncml.chunk_status (fail): a large object goes on only after 213 (or 200 for its
        // last chunk); another code refuses the object (OMA-DM 1.2 Protocol §7).
        if let Some(id) = &self.chunk_sent {
            if let Some(s) = status_of(id) {
                if !matches!(s.code.as_deref(), Some("200") | Some("213")) {
                    return Err(ClientError::invalid(
                        STEP,
                        format!("server refused our Results chunk with status {:?}", s.code),
                    ));
                }
            }
        }
        self.warnings.append(&mut warnings);
        Ok(())
    }
}
