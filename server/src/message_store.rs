//! Storage for one management message (MS-MDM §3.1 OMA-DM session), in as few trips to the
//! database as the backend allows.
//!
//! On SQLite each call is one closure on the writer thread ([`crate::writer`]), so a
//! message costs one hop and shares its COMMIT with the other messages of the moment.
//! On Postgres the same steps run as the individual queries of [`Store`].

use rusqlite::{Connection, OptionalExtension};

use crate::db::{now, unix_now, DeviceResponse, QueuedCommand, Store};
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

/// Takes commands in order while they fit; the first one always goes.
fn fitting(pending: &[QueuedCommand], d: Delivery) -> Vec<&QueuedCommand> {
    let mut size = d.used;
    let mut out = Vec::new();
    for c in pending {
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
            return w.run(move |c| sqlite::cert_identity(c, &serial)).await;
        }
        Ok(self
            .enrollment_by_cert_serial(serial)
            .await?
            .map(|(e, current)| CertIdentity {
                device_id: e.device_id,
                enrollment_state: e.state,
                current,
            }))
    }

    /// Stores one device message: check-in, Status/Results, and (when asked and nothing
    /// stops it) the claim of the commands for the reply, atomically on SQLite.
    pub async fn record_message(&self, work: MessageWork) -> Result<MessageOutcome, ServerError> {
        if let Some(w) = self.writer() {
            return w.run(move |c| sqlite::record_message(c, &work)).await;
        }
        if work.first_in_session {
            self.check_in(&work.device_id, work.current_cert).await?;
        }
        let records: Vec<DeviceResponse<'_>> = work
            .responses
            .iter()
            .map(|r| DeviceResponse {
                device_id: &work.device_id,
                cmd_ref: &r.cmd_ref,
                session_id: &work.session_id,
                msg_ref: &r.msg_ref,
                kind: &r.kind,
                status_code: r.status_code.as_deref(),
                body_xml: &r.body_xml,
            })
            .collect();
        let answered = self.record_responses(&records).await?;
        let mut out = MessageOutcome {
            unenroll_acknowledged: acknowledges_unenroll(&work.responses, &answered),
            answered,
            ..Default::default()
        };
        let Some(delivery) = work.delivery.filter(|_| !out.unenroll_acknowledged) else {
            return Ok(out);
        };
        if !work.responses.is_empty() && self.has_open_profiles(&work.device_id).await? {
            out.profiles_open = true;
            return Ok(out);
        }
        out.commands = Some(self.deliver(&work.device_id, delivery).await?);
        Ok(out)
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
        let pending = self
            .deliverable_commands(device_id, delivery.redeliver_after_secs)
            .await?;
        let ids: Vec<&str> = fitting(&pending, delivery)
            .iter()
            .map(|c| c.command_uuid.as_str())
            .collect();
        let claimed = self
            .claim_commands(device_id, &ids, delivery.redeliver_after_secs)
            .await?;
        Ok(pending
            .into_iter()
            .filter(|c| claimed.contains(&c.command_uuid))
            .collect())
    }

    async fn has_open_profiles(&self, device_id: &str) -> Result<bool, ServerError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM profile_assignments WHERE device_id = $1 AND state IN ('pending', 'verifying') LIMIT 1",
        )
        .bind(device_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }
}

/// The same steps as SQL on the writer's connection; each function runs inside the
/// writer's transaction and savepoint.
mod sqlite {
    use super::*;

    pub fn cert_identity(c: &Connection, serial: &str) -> rusqlite::Result<Option<CertIdentity>> {
        let row = c
            .prepare_cached(
                "SELECT d.device_id, d.state, d.retire_after, e.state
                 FROM device_certs d JOIN enrollments e ON e.device_id = d.device_id
                 WHERE d.cert_serial = ?1",
            )?
            .query_row([serial], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .optional()?;
        let Some((device_id, cert_state, retire_after, enrollment_state)) = row else {
            return Ok(None);
        };
        let current = match cert_state.as_str() {
            "active" => true,
            "retiring" if retire_after.is_some_and(|t| t > unix_now()) => false,
            _ => return Ok(None),
        };
        Ok(Some(CertIdentity {
            device_id,
            enrollment_state,
            current,
        }))
    }

    pub fn record_message(c: &Connection, w: &MessageWork) -> rusqlite::Result<MessageOutcome> {
        let ts = now();
        if w.first_in_session {
            c.prepare_cached("UPDATE enrollments SET last_checkin_at = ?1 WHERE device_id = ?2")?
                .execute((&ts, &w.device_id))?;
            if w.current_cert {
                c.prepare_cached(
                    "UPDATE device_certs SET state = 'retired' WHERE device_id = ?1 AND state = 'retiring'",
                )?
                .execute([&w.device_id])?;
            }
        }
        let mut answered = Vec::with_capacity(w.responses.len());
        for r in &w.responses {
            let command_uuid = r.cmd_ref.split('.').next().unwrap_or(&r.cmd_ref);
            let known: Option<(String, String)> = c
                .prepare_cached(
                    "SELECT verb, target FROM commands WHERE command_uuid = ?1 AND device_id = ?2",
                )?
                .query_row((command_uuid, &w.device_id), |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            if known.is_some() {
                c.prepare_cached(
                    "INSERT INTO command_results (command_uuid, device_id, session_id, msg_ref, kind, status_code, body_xml, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute((
                    command_uuid,
                    &w.device_id,
                    &w.session_id,
                    &r.msg_ref,
                    &r.kind,
                    &r.status_code,
                    &r.body_xml,
                    &ts,
                ))?;
                if r.kind == "Status" && r.cmd_ref == command_uuid {
                    c.prepare_cached(
                        "UPDATE commands SET state = 'acknowledged', status_code = ?1, acked_at = ?2
                         WHERE command_uuid = ?3 AND device_id = ?4",
                    )?
                    .execute((&r.status_code, &ts, command_uuid, &w.device_id))?;
                }
            }
            answered.push(known);
        }
        let mut out = MessageOutcome {
            unenroll_acknowledged: acknowledges_unenroll(&w.responses, &answered),
            answered,
            ..Default::default()
        };
        let Some(delivery) = w.delivery.filter(|_| !out.unenroll_acknowledged) else {
            return Ok(out);
        };
        if !w.responses.is_empty() {
            let open = c
                .prepare_cached(
                    "SELECT 1 FROM profile_assignments WHERE device_id = ?1 AND state IN ('pending', 'verifying') LIMIT 1",
                )?
                .exists([&w.device_id])?;
            if open {
                out.profiles_open = true;
                return Ok(out);
            }
        }
        out.commands = Some(deliver(c, &w.device_id, delivery)?);
        Ok(out)
    }

    pub fn deliver(
        c: &Connection,
        device_id: &str,
        d: Delivery,
    ) -> rusqlite::Result<Vec<QueuedCommand>> {
        let now = unix_now();
        let stale = now - d.redeliver_after_secs;
        let pending: Vec<QueuedCommand> = c
            .prepare_cached(
                "SELECT command_uuid, verb, body_xml FROM commands
                 WHERE device_id = ?1 AND (state = 'pending' OR (state = 'sent' AND sent_unix <= ?2)) ORDER BY id",
            )?
            .query_map((device_id, stale), |r| {
                Ok(QueuedCommand {
                    command_uuid: r.get(0)?,
                    verb: r.get(1)?,
                    body_xml: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let take = fitting(&pending, d).len();
        if take == 0 {
            return Ok(Vec::new());
        }
        let sent_at = crate::db::now();
        let mut claim = c.prepare_cached(
            "UPDATE commands SET state = 'sent', sent_at = ?1, sent_unix = ?2
             WHERE command_uuid = ?3 AND device_id = ?4
               AND (state = 'pending' OR (state = 'sent' AND sent_unix <= ?5))",
        )?;
        // The writer is the only connection writing in this transaction, so every row
        // read above is still claimable; the WHERE clause keeps the claim honest anyway.
        let mut claimed = Vec::with_capacity(take);
        for cmd in pending.into_iter().take(take) {
            if claim.execute((&sent_at, now, &cmd.command_uuid, device_id, stale))? == 1 {
                claimed.push(cmd);
            }
        }
        Ok(claimed)
    }
}
