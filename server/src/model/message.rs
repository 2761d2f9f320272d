//! What one device message stores and what storing it found (MS-MDM §3.1 OMA-DM
//! session), as plain data between the protocol core and the store.

use super::{AnsweredCommand, QueuedCommand, ResponseKind};

/// A Status or Results element to store (owned: it travels to the writer thread).
#[derive(Debug, Clone)]
pub struct ResponseRecord {
    /// The command answered: a queued command's UUID, `.n` added for a nested one.
    pub cmd_ref: String,
    pub msg_ref: String,
    pub kind: ResponseKind,
    pub status_code: Option<String>,
    pub body_xml: String,
}

impl ResponseRecord {
    /// The queued command answered: the CmdRef up to its first `.`.
    pub fn command_uuid(&self) -> &str {
        self.cmd_ref.split('.').next().unwrap_or(&self.cmd_ref)
    }

    /// Only a Status for the command itself (not a nested one) acknowledges it.
    pub fn acknowledges(&self) -> bool {
        self.kind == ResponseKind::Status && self.cmd_ref == self.command_uuid()
    }
}

/// How many commands fit in the reply: the reply is `used` bytes so far and the device
/// takes at most `limit`; commands sent `redeliver_after_secs` ago without a Status are
/// sent again.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub used: usize,
    pub limit: usize,
    pub redeliver_after_secs: i64,
}

/// Everything one device message writes.
#[derive(Debug, Clone)]
pub struct MessageWork {
    pub device_id: String,
    pub session_id: String,
    /// The session's first message: record the check-in (and, with the current
    /// certificate, retire the certificates a renewal replaced).
    pub first_in_session: bool,
    pub current_cert: bool,
    pub responses: Vec<ResponseRecord>,
    /// Claim commands for the reply, unless something below stops delivery.
    pub delivery: Option<Delivery>,
}

/// What storing a message found.
#[derive(Debug, Clone, Default)]
pub struct MessageOutcome {
    /// Per response: the answered command, None when not from the queue.
    pub answered: Vec<Option<AnsweredCommand>>,
    /// The device acknowledged the server's DMClient Unenroll Exec.
    pub unenroll_acknowledged: bool,
    /// The device answered something, or started a session, and has profile assignments
    /// in progress: advance them, then deliver (delivery was not attempted).
    pub profiles_open: bool,
    /// The commands claimed for the reply, oldest first; None when delivery did not run.
    pub commands: Option<Vec<QueuedCommand>>,
}

/// A message's place in its session's replay record: the session (device and
/// SessionID), the MsgID and the SHA-256 of the request body (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayStamp {
    pub device_id: String,
    pub session_id: String,
    pub msg_id: String,
    pub request_sha256: String,
}

/// A session's replay record as stored: its last message and the answer sent (None
/// while the message's effects are stored but its answer is not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReplay {
    pub msg_id: String,
    pub request_sha256: String,
    pub response: Option<String>,
}
