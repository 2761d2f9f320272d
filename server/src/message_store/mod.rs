//! Storage for one management message (MS-MDM §3.1 OMA-DM session), in as few trips to the
//! database as the backend allows.
//!
//! On SQLite each call is one closure on the writer thread ([`crate::writer`]), so a
//! message costs one hop and shares its COMMIT with the other messages of the moment.
//! On Postgres a message's writes are one statement (see `postgres.rs`).

mod postgres;
mod sqlite;

/// The statements both backends run as they are (SQLite numbers `$n` parameters by first
/// appearance, ascending here; sqlx binds them by number).
mod sql {
    /// The enrollment behind a certificate serial, in one query.
    pub const CERT_IDENTITY: &str = "SELECT d.device_id, d.state, d.retire_after, e.state
         FROM device_certs d JOIN enrollments e ON e.device_id = d.device_id
         WHERE d.cert_serial = $1";
    pub const OPEN_PROFILES: &str = "SELECT 1 FROM profile_assignments
         WHERE device_id = $1 AND state IN ('pending', 'verifying') LIMIT 1";
    /// The target and body of a command sent (not merely queued) to a device.
    pub const SENT_COMMAND: &str = "SELECT target, body_xml FROM commands
         WHERE command_uuid = $1 AND device_id = $2 AND state <> 'pending'";
    /// Pending commands and those sent before `$2` (Unix seconds) without a Status.
    pub const DELIVERABLE: &str = "SELECT command_uuid, verb, body_xml FROM commands
         WHERE device_id = $1 AND (state = 'pending' OR (state = 'sent' AND sent_unix <= $2))
         ORDER BY id";
}

use crate::db::{QueuedCommand, Store};
use crate::error::ServerError;

/// Who a client certificate authenticates.
#[derive(Debug, Clone)]
pub struct CertIdentity {
    pub device_id: String,
    /// The enrollment's state (`enrolled`, `unenroll_pending`, `unenrolled`, ...).
    pub enrollment_state: String,
    /// False for a certificate replaced by a renewal and still in its grace period.
    pub current: bool,
}

/// A Status or Results element to store (owned: it travels to the writer thread).
#[derive(Debug, Clone)]
pub struct ResponseRecord {
    pub cmd_ref: String,
    pub msg_ref: String,
    /// `Status` or `Results`.
    pub kind: String,
    pub status_code: Option<String>,
    pub body_xml: String,
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
    /// Per response: the answered command's (verb, target), None when not from the queue.
    pub answered: Vec<Option<(String, String)>>,
    /// The device acknowledged the server's DMClient Unenroll Exec.
    pub unenroll_acknowledged: bool,
    /// The device answered something and has profile assignments in progress: run
    /// `profiles::advance`, then [`Store::deliver`] (delivery was not attempted).
    pub profiles_open: bool,
    /// The commands claimed for the reply, oldest first; None when delivery did not run.
    pub commands: Option<Vec<QueuedCommand>>,
}

/// A row of [`sql::CERT_IDENTITY`]: DeviceID, certificate state, retire_after,
/// enrollment state.
type CertRow = (String, String, Option<i64>, String);

impl CertIdentity {
    /// Active certificates authenticate; retiring ones (replaced by a renewal) do until
    /// `retire_after` (Unix seconds); others do not.
    fn from_row((device_id, cert_state, retire_after, enrollment_state): CertRow) -> Option<Self> {
        let current = match cert_state.as_str() {
            "active" => true,
            "retiring" if retire_after.is_some_and(|t| t > crate::db::unix_now()) => false,
            _ => return None,
        };
        Some(CertIdentity {
            device_id,
            enrollment_state,
            current,
        })
    }
}

/// The server's own unenrollment command: Exec on `DMClient/Provider/<ID>/Unenroll`.
pub fn is_unenroll_exec(verb: &str, target: &str) -> bool {
    verb == "Exec" && target.contains("/DMClient/Provider/") && target.ends_with("/Unenroll")
}

fn acknowledges_unenroll(
    responses: &[ResponseRecord],
    answered: &[Option<(String, String)>],
) -> bool {
    responses.iter().zip(answered).any(|(r, known)| {
        r.kind == "Status"
            && r.status_code.as_deref() == Some("200")
            && known
                .as_ref()
                .is_some_and(|(verb, target)| is_unenroll_exec(verb, target))
    })
}

/// Most commands sent in one message, whatever the device's MaxMsgSize (also keeps the
/// claiming statement within the databases' parameter limits).
const MAX_COMMANDS_PER_MESSAGE: usize = 500;

impl MessageOutcome {
    /// The outcome once the message's responses are stored (`answered`, per response),
    /// and the delivery still to attempt: none when the device acknowledged its
    /// unenrollment or no delivery was asked for.
    fn stored(
        w: &MessageWork,
        answered: Vec<Option<(String, String)>>,
    ) -> (Self, Option<Delivery>) {
        let out = MessageOutcome {
            unenroll_acknowledged: acknowledges_unenroll(&w.responses, &answered),
            answered,
            ..Default::default()
        };
        let delivery = w.delivery.filter(|_| !out.unenroll_acknowledged);
        (out, delivery)
    }
}

/// Takes commands in order while they fit; the first one always goes.
fn fitting(pending: &[QueuedCommand], d: Delivery) -> Vec<&QueuedCommand> {
    let mut size = d.used;
    let mut out = Vec::new();
    for c in pending.iter().take(MAX_COMMANDS_PER_MESSAGE) {
        size += c.body_xml.len() + 2 * c.command_uuid.len();
        if size > d.limit && !out.is_empty() {
            break;
        }
        out.push(c);
    }
    out
}

impl Store {
    /// The enrollment a certificate (serial, lowercase hex) authenticates; retired
    /// certificates and expired grace periods authenticate nothing.
    pub async fn cert_identity(&self, serial: &str) -> Result<Option<CertIdentity>, ServerError> {
        if let Some(w) = self.writer() {
            let serial = serial.to_string();
            return w.read(move |c| sqlite::cert_identity(c, &serial)).await;
        }
        postgres::cert_identity(self, serial).await
    }

    /// Stores one device message: check-in, Status/Results, and (when asked and nothing
    /// stops it) the claim of the commands for the reply. The writes are atomic: all of a
    /// message is stored or none of it.
    pub async fn record_message(&self, work: MessageWork) -> Result<MessageOutcome, ServerError> {
        if let Some(w) = self.writer() {
            return w.run(move |c| sqlite::record_message(c, &work)).await;
        }
        postgres::record_message(self, &work).await
    }

    /// The target and XML of the command `command_uuid` if it was sent to `device_id`.
    pub async fn sent_command(
        &self,
        device_id: &str,
        command_uuid: &str,
    ) -> Result<Option<(String, String)>, ServerError> {
        if let Some(w) = self.writer() {
            let (d, c) = (device_id.to_string(), command_uuid.to_string());
            return w.read(move |conn| sqlite::sent_command(conn, &d, &c)).await;
        }
        postgres::sent_command(self, device_id, command_uuid).await
    }

    /// Claims the deliverable commands that fit in the reply, oldest first.
    pub async fn deliver(
        &self,
        device_id: &str,
        delivery: Delivery,
    ) -> Result<Vec<QueuedCommand>, ServerError> {
        if let Some(w) = self.writer() {
            let device_id = device_id.to_string();
            return w
                .run(move |c| sqlite::deliver(c, &device_id, delivery))
                .await;
        }
        postgres::deliver(self, device_id, delivery).await
    }
}
