//! Session state on the writer's connection ([`super::writer`]): a message, its large
//! object changes and its replay record are one job, inside the batch's transaction
//! (which holds SQLite's write lock, so replicas on one file take turns).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use crate::clock::unix_now;
use crate::model::{MessageOutcome, MessageWork, ReplayStamp, StoredReplay};
use crate::protocol::reassembly::{micros_now, ChunkKey, ChunkOp, Entry, Ledger, Limits, Write};
use crate::protocol::replay::{answer_only, judge, Replay};
use crate::store::session::{self as sql, entry, key_of, Recorded};

pub fn replay_record(c: &Connection, s: &ReplayStamp) -> rusqlite::Result<Option<StoredReplay>> {
    c.prepare_cached(sql::SELECT_REPLAY)?
        .query_row((&s.device_id, &s.session_id), |r| {
            Ok(StoredReplay {
                msg_id: r.get(0)?,
                request_sha256: r.get(1)?,
                response: r.get(2)?,
            })
        })
        .optional()
}

pub fn upsert(c: &Connection, s: &ReplayStamp, xml: Option<&str>) -> rusqlite::Result<()> {
    c.prepare_cached(sql::UPSERT_REPLAY)?.execute((
        &s.device_id,
        &s.session_id,
        &s.msg_id,
        &s.request_sha256,
        xml,
        unix_now(),
    ))?;
    Ok(())
}

/// The message, its chunk changes and its replay record, unless the record says it was
/// answered already or its MsgID is taken.
pub fn record<R>(
    c: &Connection,
    mut work: MessageWork,
    (mut ops, unread): (Vec<ChunkOp>, &[ChunkKey]),
    stamp: &ReplayStamp,
    answer: impl FnOnce(MessageOutcome) -> (R, Option<String>),
    sweep: Option<(i64, i64)>,
) -> rusqlite::Result<Recorded<R>> {
    match judge(replay_record(c, stamp)?, stamp) {
        Replay::Repeat(xml) => return Ok(Recorded::Repeat(xml)),
        Replay::Conflict => return Ok(Recorded::Conflict),
        Replay::Unanswered => answer_only(&mut work, &mut ops),
        Replay::New => {}
    }
    for k in unread {
        if c.prepare_cached(sql::CHUNK_EXISTS)?
            .exists((&k.device_id, &k.cmd_ref, &k.loc_uri))?
        {
            return Ok(Recorded::Unread);
        }
    }
    let outcome = super::message::record_message(c, &work)?;
    apply_chunks(c, ops)?;
    let (r, xml) = answer(outcome);
    upsert(c, stamp, xml.as_deref())?;
    if let Some(cutoffs) = sweep {
        self::sweep(c, cutoffs)?;
    }
    Ok(Recorded::Stored(r))
}

/// Deletes replay records and large objects older than the cutoffs (Unix seconds,
/// microseconds).
pub fn sweep(c: &Connection, (replays_before, chunks_before): (i64, i64)) -> rusqlite::Result<()> {
    c.prepare_cached(sql::DELETE_OLD_REPLAYS)?
        .execute([replays_before])?;
    c.prepare_cached(sql::DELETE_OLD_CHUNKS)?
        .execute([chunks_before])?;
    Ok(())
}

/// Applies chunk changes against every stored object (the bounds are global).
fn apply_chunks(c: &Connection, ops: Vec<ChunkOp>) -> rusqlite::Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let entries: Vec<Entry> = c
        .prepare_cached(sql::ALL_CHUNKS)?
        .query_map([], |r| {
            Ok(entry(
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let writes = Ledger::load(entries).apply(ops, micros_now(), &Limits::default());
    for w in &writes {
        let k = key_of(w);
        match w {
            Write::Append { data, updated, .. } => {
                c.prepare_cached(sql::APPEND_CHUNK)?.execute((
                    &k.device_id,
                    &k.cmd_ref,
                    &k.loc_uri,
                    data,
                    data.len() as i64,
                    updated,
                ))?
            }
            Write::Tombstone { at, .. } => c.prepare_cached(sql::TOMBSTONE_CHUNK)?.execute((
                &k.device_id,
                &k.cmd_ref,
                &k.loc_uri,
                at,
            ))?,
            Write::Delete(_) => c.prepare_cached(sql::DELETE_CHUNK)?.execute((
                &k.device_id,
                &k.cmd_ref,
                &k.loc_uri,
            ))?,
        };
    }
    Ok(())
}

/// The device's objects, and the data of those `keys` name.
pub fn chunks(
    c: &Connection,
    device_id: &str,
    keys: &[ChunkKey],
) -> rusqlite::Result<(Vec<Entry>, HashMap<ChunkKey, String>)> {
    let entries: Vec<Entry> = c
        .prepare_cached(sql::DEVICE_CHUNKS)?
        .query_map([device_id], |r| {
            Ok(entry(
                device_id.to_string(),
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut data = HashMap::new();
    for k in keys {
        if !entries.iter().any(|e| &e.key == k && e.bytes.is_some()) {
            continue;
        }
        let d: Option<String> = c
            .prepare_cached(sql::CHUNK_DATA)?
            .query_row((&k.device_id, &k.cmd_ref, &k.loc_uri), |r| r.get(0))
            .optional()?;
        if let Some(d) = d {
            data.insert(k.clone(), d);
        }
    }
    Ok((entries, data))
}
