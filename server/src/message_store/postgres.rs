//! The per-message steps on Postgres: one transaction, and as few round trips as the SQL
//! allows (data-modifying CTEs fold a lookup and its writes into one statement).

use sqlx::{Any, Row, Transaction};

use super::{acknowledges_unenroll, fitting, Delivery, MessageOutcome, MessageWork};
use crate::db::{now, unix_now, QueuedCommand, Store};
use crate::error::ServerError;

pub async fn record_message(store: &Store, w: &MessageWork) -> Result<MessageOutcome, ServerError> {
    let ts = now();
    let mut tx = store.begin_write().await?;
    if w.first_in_session {
        sqlx::query(
            "WITH checkin AS (UPDATE enrollments SET last_checkin_at = $1 WHERE device_id = $2)
             UPDATE device_certs SET state = 'retired'
             WHERE device_id = $2 AND state = 'retiring' AND $3",
        )
        .bind(&ts)
        .bind(&w.device_id)
        .bind(w.current_cert)
        .execute(&mut *tx)
        .await?;
    }
    let mut answered = Vec::with_capacity(w.responses.len());
    for r in &w.responses {
        let command_uuid = r.cmd_ref.split('.').next().unwrap_or(&r.cmd_ref);
        // Only a Status for the command itself (not a nested one) acknowledges it.
        let acknowledges = r.kind == "Status" && r.cmd_ref == command_uuid;
        let known: Option<(String, String)> = sqlx::query_as(
            "WITH known AS (
                 SELECT verb, target FROM commands WHERE command_uuid = $1 AND device_id = $2 LIMIT 1
             ), stored AS (
                 INSERT INTO command_results (command_uuid, device_id, session_id, msg_ref, kind, status_code, body_xml, received_at)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM known
             ), acked AS (
                 UPDATE commands SET state = 'acknowledged', status_code = $6, acked_at = $8
                 WHERE command_uuid = $1 AND device_id = $2 AND $9 AND EXISTS (SELECT 1 FROM known)
             )
             SELECT verb, target FROM known",
        )
        .bind(command_uuid)
        .bind(&w.device_id)
        .bind(&w.session_id)
        .bind(&r.msg_ref)
        .bind(&r.kind)
        .bind(&r.status_code)
        .bind(&r.body_xml)
        .bind(&ts)
        .bind(acknowledges)
        .fetch_optional(&mut *tx)
        .await?;
        answered.push(known);
    }
    let mut out = MessageOutcome {
        unenroll_acknowledged: acknowledges_unenroll(&w.responses, &answered),
        answered,
        ..Default::default()
    };
    if let Some(delivery) = w.delivery.filter(|_| !out.unenroll_acknowledged) {
        let open: Option<i32> = if w.responses.is_empty() {
            None
        } else {
            sqlx::query_scalar(
                "SELECT 1 FROM profile_assignments WHERE device_id = $1 AND state IN ('pending', 'verifying') LIMIT 1",
            )
            .bind(&w.device_id)
            .fetch_optional(&mut *tx)
            .await?
        };
        if open.is_some() {
            out.profiles_open = true;
        } else {
            out.commands = Some(deliver(&mut tx, &w.device_id, delivery).await?);
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// Reads the deliverable commands and claims, in one UPDATE, those that fit.
pub async fn deliver(
    tx: &mut Transaction<'static, Any>,
    device_id: &str,
    d: Delivery,
) -> Result<Vec<QueuedCommand>, ServerError> {
    let now_unix = unix_now();
    let stale = now_unix - d.redeliver_after_secs;
    let rows = sqlx::query(
        "SELECT command_uuid, verb, body_xml FROM commands
         WHERE device_id = $1 AND (state = 'pending' OR (state = 'sent' AND sent_unix <= $2)) ORDER BY id",
    )
    .bind(device_id)
    .bind(stale)
    .fetch_all(&mut **tx)
    .await?;
    let pending = rows
        .iter()
        .map(|r| {
            Ok(QueuedCommand {
                command_uuid: r.try_get("command_uuid")?,
                verb: r.try_get("verb")?,
                body_xml: r.try_get("body_xml")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let take = fitting(&pending, d).len();
    if take == 0 {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..take).map(|i| format!("${}", i + 5)).collect();
    let sql = format!(
        "UPDATE commands SET state = 'sent', sent_at = $1, sent_unix = $2
         WHERE device_id = $3 AND (state = 'pending' OR (state = 'sent' AND sent_unix <= $4))
           AND command_uuid IN ({})
         RETURNING command_uuid",
        marks.join(", ")
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql)
        .bind(now())
        .bind(now_unix)
        .bind(device_id)
        .bind(stale);
    for c in &pending[..take] {
        q = q.bind(&c.command_uuid);
    }
    let claimed: Vec<String> = q.fetch_all(&mut **tx).await?;
    // Concurrent sessions of one device may have taken some: keep the queue's order.
    Ok(pending
        .into_iter()
        .take(take)
        .filter(|c| claimed.contains(&c.command_uuid))
        .collect())
}

/// The enrollment behind a certificate serial, in one query.
pub async fn cert_identity(
    store: &Store,
    serial: &str,
) -> Result<Option<super::CertIdentity>, ServerError> {
    let row: Option<(String, String, Option<i64>, String)> = sqlx::query_as(
        "SELECT d.device_id, d.state, d.retire_after, e.state
         FROM device_certs d JOIN enrollments e ON e.device_id = d.device_id
         WHERE d.cert_serial = $1",
    )
    .bind(serial)
    .fetch_optional(store.pool())
    .await?;
    let Some((device_id, cert_state, retire_after, enrollment_state)) = row else {
        return Ok(None);
    };
    Ok(
        super::current_cert(&cert_state, retire_after).map(|current| super::CertIdentity {
            device_id,
            enrollment_state,
            current,
        }),
    )
}
