//! The per-message steps on Postgres, in as few round trips as the SQL allows: the
//! claim of the session's replay row, the message's writes, its profile check and the
//! read of the deliverable commands are one statement of data-modifying CTEs (a single
//! statement is atomic), and the claim of commands is one `UPDATE ... RETURNING`.

use sqlx::Row;

use sqlx::{AnyConnection, AnyPool};

use crate::clock::{now, unix_now};
use crate::error::ServerError;
use crate::model::{
    AnsweredCommand, CertIdentity, Delivery, MessageOutcome, MessageWork, QueuedCommand,
    ReplayStamp, SentCommand, Verb,
};
use crate::protocol::delivery::{cert_identity as identity, fitting, stored};
use crate::store::portable::parsed;
use crate::store::statements::{self as sql, placeholders};

/// One message in at most three round trips: its writes (check-in, every Status and
/// Results with the acknowledgements) and the profile check are a single statement,
/// atomic on its own; then the command queue and the claim.
pub async fn record_message(
    pool: &AnyPool,
    w: &MessageWork,
) -> Result<MessageOutcome, ServerError> {
    let stored = record_message_on(&mut *pool.acquire().await?, w, None).await?;
    Ok(stored.unwrap_or_default())
}

/// As [`record_message`], on `conn` (a transaction's, to store more with it). With
/// `claim`, the same statement first claims the session's replay row for the message
/// ([`super::session`]) and writes only if it got it: None when it did not (nothing is
/// written then).
pub async fn record_message_on(
    conn: &mut AnyConnection,
    w: &MessageWork,
    claim: Option<&ReplayStamp>,
) -> Result<Option<MessageOutcome>, ServerError> {
    let stale = w.delivery.map(|d| unix_now() - d.redeliver_after_secs);
    let Some(written) = store_responses(conn, w, claim, stale).await? else {
        return Ok(None);
    };
    let (mut out, delivery) = stored(w, written.answered);
    let Some(delivery) = delivery else {
        return Ok(Some(out));
    };
    // Also at a session's start: an assignment whose last answer was stored by a
    // process that died (or lost the database) before moving it on moves on now.
    if written.profiles_open {
        out.profiles_open = true;
        return Ok(Some(out));
    }
    let pending = match (written.deliverable, stale) {
        (Some(pending), Some(stale)) => (pending, stale),
        _ => read_deliverable(conn, &w.device_id, delivery).await?,
    };
    out.commands = Some(claim_fitting(conn, &w.device_id, delivery, pending).await?);
    Ok(Some(out))
}

pub async fn sent_command(
    pool: &AnyPool,
    device_id: &str,
    command_uuid: &str,
) -> Result<Option<SentCommand>, ServerError> {
    let row: Option<(String, String)> = sqlx::query_as(sql::SENT_COMMAND)
        .bind(command_uuid)
        .bind(device_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(target, body_xml)| SentCommand { target, body_xml }))
}

/// Parameters per response in [`store_responses`]' VALUES rows, and before them.
const RESPONSE_PARAMS: usize = 7;
const FIXED_PARAMS: usize = 9;

/// What the message's statement wrote and read.
struct Written {
    /// Per response, the answered command.
    answered: Vec<Option<AnsweredCommand>>,
    /// A profile assignment of the device is pending or verifying.
    profiles_open: bool,
    /// The commands deliverable once the message's acknowledgements are written, in
    /// queue order; None when the statement did not read them.
    deliverable: Option<Vec<QueuedCommand>>,
}

/// The replay row claimed for a new MsgID (inserted or replaced, answer unknown); a row
/// already holding this MsgID is left as it is, locked, and no row comes back.
const CLAIM_CTE: &str = "claim AS (
         INSERT INTO session_replay (device_id, session_id, msg_id, request_sha256, response, updated_unix)
         VALUES ($1, $2, $6, $7, NULL, $8)
         ON CONFLICT (device_id, session_id) DO UPDATE SET msg_id = excluded.msg_id,
           request_sha256 = excluded.request_sha256, response = NULL, updated_unix = excluded.updated_unix
         WHERE session_replay.msg_id <> excluded.msg_id
         RETURNING 1
     )";

/// The message's writes, its profile check and (with `stale`, the Unix time before
/// which a sent command without a Status is sent again) the read of the deliverable
/// commands as one statement of data-modifying CTEs, each writing only once the claim
/// (when there is one) returned its row: the claim's row lock is held before anything
/// is written. None when the claim found the row holding this MsgID.
async fn store_responses(
    conn: &mut AnyConnection,
    w: &MessageWork,
    claim: Option<&ReplayStamp>,
    stale: Option<i64>,
) -> Result<Option<Written>, ServerError> {
    let writes = !w.responses.is_empty() || w.first_in_session;
    if !writes && claim.is_none() {
        return Ok(Some(Written {
            answered: Vec::new(),
            profiles_open: false,
            deliverable: None,
        }));
    }
    let mut statement = String::from("WITH ");
    statement.push_str(if claim.is_some() {
        CLAIM_CTE
    } else {
        "claim AS (SELECT 1)"
    });
    // The marker row: the claim held, and the profile check (asked only of a message
    // that writes or starts its session, as before each delivery of commands).
    let marker = if writes {
        "SELECT -1::bigint, 0::bigint, '', '', '', EXISTS (
             SELECT 1 FROM profile_assignments
             WHERE device_id = $1 AND state IN ('pending', 'verifying')) FROM claim"
    } else {
        "SELECT -1::bigint, 0::bigint, '', '', '', false FROM claim"
    };
    if !writes {
        statement.push_str(&format!(" {marker}"));
    } else {
        statement.push_str(
            ", checkin AS (
                 UPDATE enrollments SET last_checkin_at = $3
                 WHERE device_id = $1 AND $4::boolean AND EXISTS (SELECT 1 FROM claim)
             ), retire AS (
                 UPDATE device_certs SET state = 'retired'
                 WHERE device_id = $1 AND state = 'retiring' AND $4::boolean AND $5::boolean
                   AND EXISTS (SELECT 1 FROM claim)
             )",
        );
        if w.responses.is_empty() {
            statement.push_str(&format!(" {marker}"));
        } else {
            // Each parameter's type comes with its bound value (int8, text, bool).
            let rows: Vec<String> = (0..w.responses.len())
                .map(|i| {
                    format!(
                        "({})",
                        placeholders(FIXED_PARAMS + 1 + i * RESPONSE_PARAMS, RESPONSE_PARAMS)
                    )
                })
                .collect();
            statement.push_str(&format!(
                ", input (ord, command_uuid, msg_ref, kind, status_code, body_xml, acks) AS (VALUES {})
                 , known AS (
                     SELECT i.*, c.verb, c.target FROM input i
                     JOIN commands c ON c.command_uuid = i.command_uuid AND c.device_id = $1
                     WHERE EXISTS (SELECT 1 FROM claim)
                 ), stored AS (
                     INSERT INTO command_results (command_uuid, device_id, session_id, msg_ref, kind, status_code, body_xml, received_at)
                     SELECT command_uuid, $1, $2, msg_ref, kind, status_code, body_xml, $3 FROM known ORDER BY ord
                 ), acked AS (
                     UPDATE commands c SET state = 'acknowledged', status_code = k.status_code, acked_at = $3
                     FROM known k WHERE c.command_uuid = k.command_uuid AND c.device_id = $1 AND k.acks
                 )
                 {marker}
                 UNION ALL SELECT ord, 0, verb, target, '', false FROM known",
                rows.join(", ")
            ));
        }
    }
    if stale.is_some() {
        // The statement's snapshot predates its own writes: a command it acknowledges is
        // left out here as the UPDATE above leaves it out of the queue.
        statement.push_str(
            " UNION ALL SELECT -2, c.id, c.command_uuid, c.verb, c.body_xml, false FROM commands c
              WHERE c.device_id = $1 AND c.state IN ('pending', 'sent') AND (c.state = 'pending' OR c.sent_unix <= $9)
                AND EXISTS (SELECT 1 FROM claim)",
        );
        if !w.responses.is_empty() {
            statement.push_str(
                " AND NOT EXISTS (SELECT 1 FROM known k WHERE k.command_uuid = c.command_uuid AND k.acks)",
            );
        }
    }
    let (msg_id, sha, unix) = match claim {
        Some(s) => (s.msg_id.as_str(), s.request_sha256.as_str(), unix_now()),
        None => ("", "", 0),
    };
    let mut q = sqlx::query_as::<_, (i64, i64, String, String, String, bool)>(&statement)
        .bind(&w.device_id)
        .bind(&w.session_id)
        .bind(now())
        .bind(w.first_in_session)
        .bind(w.current_cert)
        .bind(msg_id)
        .bind(sha)
        .bind(unix)
        .bind(stale.unwrap_or(0));
    for (i, r) in w.responses.iter().enumerate() {
        q = q
            .bind(i as i64)
            .bind(r.command_uuid().to_string())
            .bind(&r.msg_ref)
            .bind(r.kind.as_str())
            .bind(&r.status_code)
            .bind(&r.body_xml)
            .bind(r.acknowledges());
    }
    let found = q.fetch_all(&mut *conn).await?;
    let mut written = Written {
        answered: vec![None; w.responses.len()],
        profiles_open: false,
        deliverable: None,
    };
    let mut held = false;
    let mut deliverable = Vec::new();
    for (ord, id, a, b, body_xml, open) in found {
        if ord == -1 {
            held = true;
            written.profiles_open = open;
        } else if ord == -2 {
            deliverable.push((
                id,
                QueuedCommand {
                    command_uuid: a,
                    verb: parsed::<Verb>(b)?,
                    body_xml,
                },
            ));
        } else if let Some(slot) = usize::try_from(ord)
            .ok()
            .and_then(|i| written.answered.get_mut(i))
        {
            *slot = Some(AnsweredCommand {
                verb: parsed(a)?,
                target: b,
            });
        }
    }
    if stale.is_some() {
        deliverable.sort_by_key(|(id, _)| *id);
        written.deliverable = Some(deliverable.into_iter().map(|(_, c)| c).collect());
    }
    Ok(held.then_some(written))
}

/// Reads the deliverable commands and claims, in one UPDATE, those that fit.
pub async fn deliver(
    pool: &AnyPool,
    device_id: &str,
    d: Delivery,
) -> Result<Vec<QueuedCommand>, ServerError> {
    let conn = &mut *pool.acquire().await?;
    let pending = read_deliverable(conn, device_id, d).await?;
    claim_fitting(conn, device_id, d, pending).await
}

/// The deliverable commands in queue order, and the time [`claim_fitting`] takes as
/// stale.
async fn read_deliverable(
    conn: &mut AnyConnection,
    device_id: &str,
    d: Delivery,
) -> Result<(Vec<QueuedCommand>, i64), ServerError> {
    let stale = unix_now() - d.redeliver_after_secs;
    let rows = sqlx::query(sql::DELIVERABLE)
        .bind(device_id)
        .bind(stale)
        .fetch_all(&mut *conn)
        .await?;
    let pending = rows
        .iter()
        .map(|r| {
            Ok(QueuedCommand {
                command_uuid: r.try_get("command_uuid")?,
                verb: parsed::<Verb>(r.try_get("verb")?)?,
                body_xml: r.try_get("body_xml")?,
            })
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    Ok((pending, stale))
}

/// Claims, in one UPDATE, those of the `pending` commands (read as deliverable before
/// `stale`) that fit in the message; a concurrent session of the device may have
/// claimed some already: those are left out.
async fn claim_fitting(
    conn: &mut AnyConnection,
    device_id: &str,
    d: Delivery,
    (pending, stale): (Vec<QueuedCommand>, i64),
) -> Result<Vec<QueuedCommand>, ServerError> {
    let now_unix = unix_now();
    let take = fitting(&pending, d).len();
    if take == 0 {
        return Ok(Vec::new());
    }
    let claim = format!(
        "UPDATE commands SET state = 'sent', sent_at = $1, sent_unix = $2
         WHERE device_id = $3 AND state IN ('pending', 'sent') AND (state = 'pending' OR sent_unix <= $4)
           AND command_uuid IN ({})
         RETURNING command_uuid",
        placeholders(5, take)
    );
    let mut q = sqlx::query_scalar::<_, String>(&claim)
        .bind(now())
        .bind(now_unix)
        .bind(device_id)
        .bind(stale);
    for c in &pending[..take] {
        q = q.bind(&c.command_uuid);
    }
    let claimed: Vec<String> = q.fetch_all(&mut *conn).await?;
    // Concurrent sessions of one device may have taken some: keep the queue's order.
    Ok(pending
        .into_iter()
        .take(take)
        .filter(|c| claimed.contains(&c.command_uuid))
        .collect())
}

/// The enrollment behind a certificate serial, in one query.
pub async fn cert_identity(
    pool: &AnyPool,
    serial: &str,
) -> Result<Option<CertIdentity>, ServerError> {
    let row: Option<(String, String, Option<i64>, String)> = sqlx::query_as(sql::CERT_IDENTITY)
        .bind(serial)
        .fetch_optional(pool)
        .await?;
    Ok(
        row.and_then(|(device_id, cert_state, retire_after, enrollment_state)| {
            identity(
                device_id,
                &cert_state,
                retire_after,
                &enrollment_state,
                unix_now(),
            )
        }),
    )
}
