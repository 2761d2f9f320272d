//! In-memory per-session state of OMA-DM sessions: the last answered message (so a
//! message resent after a dropped connection gets the same answer instead of being
//! processed twice) and large objects being reassembled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// (DeviceID, SessionID).
pub type SessionKey = (String, String);

/// A large object being reassembled: (DeviceID, CmdRef, LocURI).
pub type ChunkKey = (String, String, String);

/// Sessions idle longer than this are forgotten.
const SESSION_TTL: Duration = Duration::from_secs(3600);

/// Largest large object reassembled from chunks, in bytes.
pub const MAX_LARGE_OBJECT: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub struct Sessions {
    /// The last message of each session.
    last: Mutex<HashMap<SessionKey, LastMessage>>,
    /// Large-object chunks received so far, by (DeviceID, CmdRef, LocURI).
    chunks: Mutex<HashMap<ChunkKey, (Instant, String)>>,
}

/// A session's last answered message.
struct LastMessage {
    at: Instant,
    msg_id: String,
    /// SHA-256 of the request body.
    digest: [u8; 32],
    response: String,
}

/// What to do with one chunk of a large object.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// More chunks are expected (answer 213).
    Buffered,
    /// The object is complete: its whole data.
    Complete(String),
    /// The object exceeds [`MAX_LARGE_OBJECT`] (answer 413).
    TooLarge,
}

impl Sessions {
    /// Whether chunks of this large object are buffered.
    pub fn has_chunks(&self, key: &ChunkKey) -> bool {
        self.chunks
            .lock()
            .map(|m| m.contains_key(key))
            .unwrap_or(false)
    }

    /// Adds a chunk of a large object; `more` is the chunk's MoreData flag.
    pub fn add_chunk(&self, key: ChunkKey, data: &str, more: bool) -> Chunk {
        let Ok(mut map) = self.chunks.lock() else {
            return Chunk::TooLarge;
        };
        let now = Instant::now();
        map.retain(|_, (t, _)| now.duration_since(*t) < SESSION_TTL);
        let entry = map
            .entry(key.clone())
            .or_insert_with(|| (now, String::new()));
        if entry.1.len() + data.len() > MAX_LARGE_OBJECT {
            map.remove(&key);
            return Chunk::TooLarge;
        }
        entry.0 = now;
        entry.1.push_str(data);
        if more {
            Chunk::Buffered
        } else {
            Chunk::Complete(map.remove(&key).map(|(_, d)| d).unwrap_or_default())
        }
    }
}

/// What to do with a message, given the session's last one.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// A new message: process it.
    New,
    /// The same message again: answer with the stored response.
    Repeat(String),
    /// The same MsgID with different content: refuse.
    Conflict,
}

impl Sessions {
    /// Checks a message against the session's last one.
    pub fn check_replay(&self, key: &SessionKey, msg_id: &str, digest: &[u8; 32]) -> Replay {
        let Ok(map) = self.last.lock() else {
            return Replay::New;
        };
        match map.get(key) {
            Some(last) if last.msg_id == msg_id && last.digest == *digest => {
                Replay::Repeat(last.response.clone())
            }
            Some(last) if last.msg_id == msg_id => Replay::Conflict,
            _ => Replay::New,
        }
    }

    /// Remembers the answer to a session's latest message.
    pub fn remember(&self, key: SessionKey, msg_id: &str, digest: [u8; 32], response: &str) {
        let Ok(mut map) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        if map.len() > 10_000 {
            map.retain(|_, v| now.duration_since(v.at) < SESSION_TTL);
        }
        let last = LastMessage {
            at: now,
            msg_id: msg_id.to_string(),
            digest,
            response: response.to_string(),
        };
        map.insert(key, last);
    }
}
