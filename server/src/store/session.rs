//! What an OMA-DM session needs between its messages, in the database so that each
//! message may reach another replica: the replay record (the session's last answered
//! message, [`crate::protocol::replay`]) and the large objects being reassembled
//! ([`crate::protocol::reassembly`]). The record is written in the transaction that
//! stores the message's effects (on SQLite, inside the writer's job: no extra hop), so
//! an answer is never recorded without its effects, nor the effects without the record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use super::{postgres, sqlite, Store};
use crate::error::ServerError;
use crate::model::{MessageOutcome, MessageWork, ReplayStamp, StoredReplay};
use crate::protocol::management::{authorise, Refusal};
use crate::protocol::reassembly::{micros_now, ChunkKey, ChunkOp, Entry, Snapshot, Write};
use crate::protocol::replay::SESSION_TTL_SECS;

/// What recording a message found.
pub enum Recorded<R> {
    /// The message was already answered: this is the answer.
    Repeat(String),
    /// Its MsgID was already used in the session for another message: nothing stored.
    Conflict,
    /// The message's effects and its replay record are stored; what the answer closure
    /// returned.
    Stored(R),
    /// Nothing stored: one of the objects its Results were read as complete (without a
    /// snapshot) is being reassembled. Read it again against [`Store::chunk_snapshot`].
    Unread,
    /// Nothing stored: the client certificate checked with the message names no active
    /// enrollment of its device.
    Refused(Refusal),
}

/// Statements both backends run as they are.
pub(super) const SELECT_REPLAY: &str =
    "SELECT msg_id, request_sha256, response FROM session_replay WHERE device_id = $1 AND session_id = $2";
/// One row per session: the message's MsgID, hash and answer replace the previous ones.
pub(super) const UPSERT_REPLAY: &str = "INSERT INTO session_replay (device_id, session_id, msg_id, request_sha256, response, updated_unix)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (device_id, session_id) DO UPDATE SET msg_id = excluded.msg_id,
       request_sha256 = excluded.request_sha256, response = excluded.response,
       updated_unix = excluded.updated_unix";
pub(super) const DELETE_OLD_REPLAYS: &str = "DELETE FROM session_replay WHERE updated_unix < $1";
pub(super) const DELETE_OLD_CHUNKS: &str = "DELETE FROM chunk_objects WHERE updated_us < $1";
pub(super) const DEVICE_CHUNKS: &str =
    "SELECT cmd_ref, loc_uri, bytes, refused, updated_us FROM chunk_objects WHERE device_id = $1";
pub(super) const ALL_CHUNKS: &str =
    "SELECT device_id, cmd_ref, loc_uri, bytes, refused, updated_us FROM chunk_objects";
pub(super) const CHUNK_EXISTS: &str =
    "SELECT 1 FROM chunk_objects WHERE device_id = $1 AND cmd_ref = $2 AND loc_uri = $3";
pub(super) const CHUNK_DATA: &str = "SELECT data FROM chunk_objects
     WHERE device_id = $1 AND cmd_ref = $2 AND loc_uri = $3 AND refused = 0";
pub(super) const APPEND_CHUNK: &str = "INSERT INTO chunk_objects (device_id, cmd_ref, loc_uri, data, bytes, refused, updated_us)
     VALUES ($1, $2, $3, $4, $5, 0, $6)
     ON CONFLICT (device_id, cmd_ref, loc_uri) DO UPDATE SET data = chunk_objects.data || excluded.data,
       bytes = chunk_objects.bytes + excluded.bytes, refused = 0, updated_us = excluded.updated_us";
pub(super) const TOMBSTONE_CHUNK: &str =
    "INSERT INTO chunk_objects (device_id, cmd_ref, loc_uri, data, bytes, refused, updated_us)
     VALUES ($1, $2, $3, '', 0, 1, $4)
     ON CONFLICT (device_id, cmd_ref, loc_uri) DO UPDATE SET data = '', bytes = 0, refused = 1,
       updated_us = excluded.updated_us";
pub(super) const DELETE_CHUNK: &str =
    "DELETE FROM chunk_objects WHERE device_id = $1 AND cmd_ref = $2 AND loc_uri = $3";

/// A stored object row: (cmd_ref, loc_uri, bytes, refused, updated_us) as an [`Entry`].
pub(super) fn entry(
    device_id: String,
    cmd_ref: String,
    loc_uri: String,
    bytes: i64,
    refused: i64,
    updated: i64,
) -> Entry {
    Entry {
        key: ChunkKey::new(device_id, cmd_ref, loc_uri),
        bytes: (refused == 0).then(|| usize::try_from(bytes).unwrap_or(usize::MAX)),
        updated,
    }
}

/// How often a replica deletes expired session state, in seconds (with the next
/// message it stores: no timer, no extra round trip in between).
const SWEEP_EVERY_SECS: i64 = 60;
static LAST_SWEEP: AtomicI64 = AtomicI64::new(0);

/// Whether this message's transaction also deletes expired replay records and objects:
/// the cutoffs (Unix seconds, microseconds), once a minute.
pub(super) fn sweep_due() -> Option<(i64, i64)> {
    let now = crate::clock::unix_now();
    let last = LAST_SWEEP.load(Ordering::Relaxed);
    if now - last < SWEEP_EVERY_SECS
        || LAST_SWEEP
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return None;
    }
    // Objects outlive their TTL by one more (the ledger turns a stale buffer into a
    // tombstone for one TTL); older ones are gone either way.
    let chunk_ttl_us =
        i64::try_from(2 * crate::protocol::reassembly::CHUNK_TTL.as_micros()).unwrap_or(i64::MAX);
    Some((
        now - SESSION_TTL_SECS,
        micros_now().saturating_sub(chunk_ttl_us),
    ))
}

/// The key's columns, for binding.
pub(super) fn key_of(w: &Write) -> &ChunkKey {
    match w {
        Write::Append { key, .. } | Write::Delete(key) | Write::Tombstone { key, .. } => key,
    }
}

impl Store {
    /// The session's replay record (for a check before authentication uses anything up:
    /// the digest nonce).
    pub async fn replay_record(
        &self,
        stamp: &ReplayStamp,
    ) -> Result<Option<StoredReplay>, ServerError> {
        if let Some(w) = self.writer() {
            let stamp = stamp.clone();
            return w
                .read(move |c| sqlite::session::replay_record(c, &stamp))
                .await;
        }
        postgres::session::replay_record(&self.pool, stamp).await
    }

    /// Stores one device message (as [`Store::record_message`]), the changes to its
    /// large objects and its replay record, atomically, unless the session's record says
    /// it was answered already ([`Recorded::Repeat`]) or its MsgID is taken. `answer`
    /// turns what storing found into the caller's result and the answer to record
    /// (None when it is not known yet: [`Store::record_answer`] adds it later).
    /// `unread`: objects the message's Results were read as not being reassembled,
    /// without a snapshot (which costs a round trip); checked here, in the transaction
    /// ([`Recorded::Unread`] when one is).
    /// `cert_serial`: a client certificate not checked yet, checked first
    /// ([`authorise`]: an active enrollment of the message's device, which also tells
    /// whether it is the current certificate); on SQLite in the same job, so a message
    /// costs one trip to the writer thread ([`Recorded::Refused`] when it does not).
    pub async fn record_session_message<R, F>(
        &self,
        mut work: MessageWork,
        (chunk_ops, unread): (Vec<ChunkOp>, Vec<ChunkKey>),
        stamp: ReplayStamp,
        cert_serial: Option<String>,
        answer: F,
    ) -> Result<Recorded<R>, ServerError>
    where
        R: Send + 'static,
        F: FnOnce(MessageOutcome) -> (R, Option<String>) + Send + 'static,
    {
        let sweep = sweep_due();
        if let Some(w) = self.writer() {
            return w
                .run(move |c| {
                    if let Some(serial) = cert_serial {
                        let identity = sqlite::message::cert_identity(c, &serial)?;
                        match authorise(identity.as_ref(), &work.device_id) {
                            Ok(current) => work.current_cert = current,
                            Err(r) => return Ok(Recorded::Refused(r)),
                        }
                    }
                    sqlite::session::record(c, work, (chunk_ops, &unread), &stamp, answer, sweep)
                })
                .await;
        }
        if let Some(serial) = cert_serial {
            let identity = postgres::message::cert_identity(&self.pool, &serial).await?;
            match authorise(identity.as_ref(), &work.device_id) {
                Ok(current) => work.current_cert = current,
                Err(r) => return Ok(Recorded::Refused(r)),
            }
        }
        postgres::session::record(
            &self.pool,
            work,
            (chunk_ops, &unread),
            &stamp,
            answer,
            sweep,
        )
        .await
    }

    /// Records the answer of a message stored without one.
    pub async fn record_answer(&self, stamp: ReplayStamp, xml: String) -> Result<(), ServerError> {
        if let Some(w) = self.writer() {
            return w
                .run(move |c| sqlite::session::upsert(c, &stamp, Some(&xml)))
                .await;
        }
        postgres::session::record_answer(&self.pool, &stamp, &xml).await
    }

    /// Deletes the replay records idle since before `replays_before` (Unix seconds) and
    /// the large objects unchanged since before `chunks_before` (microseconds); the
    /// messages' transactions do this once a minute ([`sweep_due`]).
    pub async fn delete_expired_session_state(
        &self,
        replays_before: i64,
        chunks_before: i64,
    ) -> Result<(), ServerError> {
        let cutoffs = (replays_before, chunks_before);
        if let Some(w) = self.writer() {
            return w.run(move |c| sqlite::session::sweep(c, cutoffs)).await;
        }
        let mut conn = self.pool.acquire().await?;
        postgres::session::sweep(&mut conn, cutoffs).await
    }

    /// The device's large objects being reassembled, with the data of those `keys`
    /// name (the objects the message may complete).
    pub async fn chunk_snapshot(
        &self,
        device_id: &str,
        keys: Vec<ChunkKey>,
    ) -> Result<Snapshot, ServerError> {
        let (entries, data): (Vec<Entry>, HashMap<ChunkKey, String>) =
            if let Some(w) = self.writer() {
                let device_id = device_id.to_string();
                w.read(move |c| sqlite::session::chunks(c, &device_id, &keys))
                    .await?
            } else {
                postgres::session::chunks(&self.pool, device_id, &keys).await?
            };
        Ok(Snapshot::new(entries, data, micros_now()))
    }
}
