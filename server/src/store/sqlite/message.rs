//! The per-message steps as SQL on the writer's connection ([`super::writer`]); each
//! function runs inside the writer's batch transaction and its own savepoint.

use rusqlite::{Connection, OptionalExtension};

use crate::clock::{now, unix_now};
use crate::model::{
    AnsweredCommand, CertIdentity, Delivery, MessageOutcome, MessageWork, QueuedCommand,
    SentCommand,
};
use crate::protocol::delivery::{cert_identity as identity, fitting, stored};
use crate::store::statements as sql;

pub fn cert_identity(c: &Connection, serial: &str) -> rusqlite::Result<Option<CertIdentity>> {
    c.prepare_cached(sql::CERT_IDENTITY)?
        .query_row([serial], |r| {
            Ok(identity(
                r.get(0)?,
                r.get_ref(1)?.as_str()?,
                r.get(2)?,
                r.get_ref(3)?.as_str()?,
                unix_now(),
            ))
        })
        .optional()
        .map(Option::flatten)
}

pub fn sent_command(
    c: &Connection,
    device_id: &str,
    command_uuid: &str,
) -> rusqlite::Result<Option<SentCommand>> {
    c.prepare_cached(sql::SENT_COMMAND)?
        .query_row([command_uuid, device_id], |r| {
            Ok(SentCommand {
                target: r.get(0)?,
                body_xml: r.get(1)?,
            })
        })
        .optional()
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
        let command_uuid = r.command_uuid();
        let known: Option<AnsweredCommand> = c
            .prepare_cached(
                "SELECT verb, target FROM commands WHERE command_uuid = ?1 AND device_id = ?2",
            )?
            .query_row((command_uuid, &w.device_id), |row| {
                Ok(AnsweredCommand {
                    verb: row.get(0)?,
                    target: row.get(1)?,
                })
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
                r.kind.as_str(),
                &r.status_code,
                &r.body_xml,
                &ts,
            ))?;
            if r.acknowledges() {
                c.prepare_cached(
                    "UPDATE commands SET state = 'acknowledged', status_code = ?1, acked_at = ?2
                     WHERE command_uuid = ?3 AND device_id = ?4",
                )?
                .execute((&r.status_code, &ts, command_uuid, &w.device_id))?;
            }
        }
        answered.push(known);
    }
    let (mut out, delivery): (MessageOutcome, _) = stored(w, answered);
    let Some(delivery) = delivery else {
        return Ok(out);
    };
    // Also at a session's start: an assignment whose last answer was stored by a
    // process that died (or lost the database) before moving it on moves on now.
    if !w.responses.is_empty() || w.first_in_session {
        let open = c
            .prepare_cached(sql::OPEN_PROFILES)?
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
    let now_unix = unix_now();
    let stale = now_unix - d.redeliver_after_secs;
    let pending: Vec<QueuedCommand> = c
        .prepare_cached(sql::DELIVERABLE)?
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
    let sent_at = now();
    let mut claim = c.prepare_cached(
        "UPDATE commands SET state = 'sent', sent_at = ?1, sent_unix = ?2
         WHERE command_uuid = ?3 AND device_id = ?4
           AND (state = 'pending' OR (state = 'sent' AND sent_unix <= ?5))",
    )?;
    // The writer is the only connection writing in this transaction, so every row
    // read above is still claimable; the WHERE clause keeps the claim honest anyway.
    let mut claimed = Vec::with_capacity(take);
    for cmd in pending.into_iter().take(take) {
        if claim.execute((&sent_at, now_unix, &cmd.command_uuid, device_id, stale))? == 1 {
            claimed.push(cmd);
        }
    }
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::store::migrate::SQLITE_MIGRATIONS;
    use crate::store::statements as sql;

    /// The deliverable commands are found through the index on (device_id, state), not by
    /// reading every command the device has acknowledged.
    #[test]
    fn deliverable_commands_are_sought_by_device_and_state() {
        let c = Connection::open_in_memory().expect("in-memory database");
        for m in SQLITE_MIGRATIONS {
            c.execute_batch(m).expect("migration");
        }
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", sql::DELIVERABLE))
            .expect("plan")
            .query_map(("device", 0_i64), |r| r.get::<_, String>(3))
            .expect("plan rows")
            .collect::<rusqlite::Result<_>>()
            .expect("plan rows");
        assert!(
            plan.iter()
                .any(|p| p.contains("commands_device_state (device_id=? AND state=?)")),
            "{plan:?}"
        );
    }
}
