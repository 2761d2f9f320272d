//! Session state on Postgres: a message, its large object changes and its replay record
//! in one transaction. The session's row is claimed first (an upsert that locks it), so
//! two replicas given the same message at once store it once: the second waits, then
//! finds it answered.

use std::collections::HashMap;

use sqlx::{AnyConnection, AnyPool, Row};

use crate::clock::unix_now;
use crate::error::ServerError;
use crate::model::{MessageOutcome, MessageWork, ReplayStamp, StoredReplay};
use crate::protocol::reassembly::{micros_now, ChunkKey, ChunkOp, Entry, Ledger, Limits, Write};
use crate::protocol::replay::{answer_only, judge, Replay};
use crate::store::session::{self as sql, entry, key_of, Recorded};

/// Advisory lock serialising the changes to large objects across replicas (the bounds
/// are global).
const CHUNK_LOCK: i64 = 7261738;

const SET_ANSWER: &str = "UPDATE session_replay SET response = $3, updated_unix = $4
     WHERE device_id = $1 AND session_id = $2";

pub async fn replay_record(
    pool: &AnyPool,
    s: &ReplayStamp,
) -> Result<Option<StoredReplay>, ServerError> {
    let mut conn = pool.acquire().await?;
    select(&mut conn, s).await
}

async fn select(
    conn: &mut AnyConnection,
    s: &ReplayStamp,
) -> Result<Option<StoredReplay>, ServerError> {
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(sql::SELECT_REPLAY)
        .bind(&s.device_id)
        .bind(&s.session_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|(msg_id, request_sha256, response)| StoredReplay {
        msg_id,
        request_sha256,
        response,
    }))
}

/// The message, its chunk changes and its replay record in one transaction, unless the
/// record says it was answered already or its MsgID is taken.
pub async fn record<R>(
    pool: &AnyPool,
    mut work: MessageWork,
    (mut ops, unread): (Vec<ChunkOp>, &[ChunkKey]),
    s: &ReplayStamp,
    answer: impl FnOnce(MessageOutcome) -> (R, Option<String>),
    sweep: Option<(i64, i64)>,
) -> Result<Recorded<R>, ServerError> {
    let mut tx = pool.begin().await?;
    // The claim and the message's writes are one statement: it writes only if it got
    // the row, whose lock it then holds until the commit.
    let outcome = match super::message::record_message_on(&mut tx, &work, Some(s)).await? {
        Some(outcome) => outcome,
        None => {
            match judge(select(&mut tx, s).await?, s) {
                Replay::Repeat(xml) => return Ok(Recorded::Repeat(xml)),
                Replay::Conflict => return Ok(Recorded::Conflict),
                Replay::Unanswered => answer_only(&mut work, &mut ops),
                Replay::New => {}
            }
            super::message::record_message_on(&mut tx, &work, None)
                .await?
                .unwrap_or_default()
        }
    };
    for k in unread {
        let held: Option<i32> = sqlx::query_scalar(sql::CHUNK_EXISTS)
            .bind(&k.device_id)
            .bind(&k.cmd_ref)
            .bind(&k.loc_uri)
            .fetch_optional(&mut *tx)
            .await?;
        if held.is_some() {
            // Rolled back (the claim of the row and the writes too) when `tx` drops.
            return Ok(Recorded::Unread);
        }
    }
    apply_chunks(&mut tx, ops).await?;
    let (r, xml) = answer(outcome);
    if let Some(xml) = xml {
        set_answer(&mut tx, s, &xml).await?;
    }
    if let Some(cutoffs) = sweep {
        self::sweep(&mut tx, cutoffs).await?;
    }
    tx.commit().await?;
    Ok(Recorded::Stored(r))
}

/// Deletes replay records and large objects older than the cutoffs (Unix seconds,
/// microseconds).
pub async fn sweep(
    conn: &mut AnyConnection,
    (replays_before, chunks_before): (i64, i64),
) -> Result<(), ServerError> {
    sqlx::query(sql::DELETE_OLD_REPLAYS)
        .bind(replays_before)
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql::DELETE_OLD_CHUNKS)
        .bind(chunks_before)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn set_answer(
    conn: &mut AnyConnection,
    s: &ReplayStamp,
    xml: &str,
) -> Result<(), ServerError> {
    sqlx::query(SET_ANSWER)
        .bind(&s.device_id)
        .bind(&s.session_id)
        .bind(xml)
        .bind(unix_now())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records the answer of a message stored without one.
pub async fn record_answer(pool: &AnyPool, s: &ReplayStamp, xml: &str) -> Result<(), ServerError> {
    let mut conn = pool.acquire().await?;
    sqlx::query(sql::UPSERT_REPLAY)
        .bind(&s.device_id)
        .bind(&s.session_id)
        .bind(&s.msg_id)
        .bind(&s.request_sha256)
        .bind(xml)
        .bind(unix_now())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Applies chunk changes against every stored object, replicas taking turns.
async fn apply_chunks(conn: &mut AnyConnection, ops: Vec<ChunkOp>) -> Result<(), ServerError> {
    if ops.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!("SELECT pg_advisory_xact_lock({CHUNK_LOCK})"))
        .execute(&mut *conn)
        .await?;
    let rows = sqlx::query(sql::ALL_CHUNKS).fetch_all(&mut *conn).await?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(entry(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            ))
        })
        .collect::<Result<Vec<Entry>, sqlx::Error>>()?;
    let writes = Ledger::load(entries).apply(ops, micros_now(), &Limits::default());
    for w in &writes {
        let k = key_of(w);
        let q = match w {
            Write::Append { data, updated, .. } => sqlx::query(sql::APPEND_CHUNK)
                .bind(&k.device_id)
                .bind(&k.cmd_ref)
                .bind(&k.loc_uri)
                .bind(data)
                .bind(data.len() as i64)
                .bind(*updated),
            Write::Tombstone { at, .. } => sqlx::query(sql::TOMBSTONE_CHUNK)
                .bind(&k.device_id)
                .bind(&k.cmd_ref)
                .bind(&k.loc_uri)
                .bind(*at),
            Write::Delete(_) => sqlx::query(sql::DELETE_CHUNK)
                .bind(&k.device_id)
                .bind(&k.cmd_ref)
                .bind(&k.loc_uri),
        };
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The device's objects, and the data of those `keys` name.
pub async fn chunks(
    pool: &AnyPool,
    device_id: &str,
    keys: &[ChunkKey],
) -> Result<(Vec<Entry>, HashMap<ChunkKey, String>), ServerError> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(sql::DEVICE_CHUNKS)
        .bind(device_id)
        .fetch_all(&mut *conn)
        .await?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(entry(
                device_id.to_string(),
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ))
        })
        .collect::<Result<Vec<Entry>, sqlx::Error>>()?;
    let mut data = HashMap::new();
    for k in keys {
        if !entries.iter().any(|e| &e.key == k && e.bytes.is_some()) {
            continue;
        }
        let d: Option<String> = sqlx::query_scalar(sql::CHUNK_DATA)
            .bind(&k.device_id)
            .bind(&k.cmd_ref)
            .bind(&k.loc_uri)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(d) = d {
            data.insert(k.clone(), d);
        }
    }
    Ok((entries, data))
}
