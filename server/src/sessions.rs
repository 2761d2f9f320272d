//! In-memory record of which queued commands went out in each OMA-DM session, so a
//! command the device has not yet answered is not sent twice within one session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// (DeviceID, SessionID).
pub type SessionKey = (String, String);

/// Sessions idle longer than this are forgotten.
const SESSION_TTL: Duration = Duration::from_secs(3600);

/// Largest large object reassembled from chunks, in bytes.
pub const MAX_LARGE_OBJECT: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<SessionKey, (Instant, Vec<String>)>>,
    /// Large-object chunks received so far, by (DeviceID, CmdRef, LocURI).
    chunks: Mutex<HashMap<(String, String, String), (Instant, String)>>,
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
    /// Command UUIDs already sent in this session.
    pub fn sent_in(&self, key: &SessionKey) -> Vec<String> {
        let Ok(map) = self.inner.lock() else { return Vec::new() };
        map.get(key).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// Records commands sent in this session and forgets stale sessions.
    pub fn record_sent(&self, key: SessionKey, ids: &[String]) {
        let Ok(mut map) = self.inner.lock() else { return };
        let now = Instant::now();
        map.retain(|_, (t, _)| now.duration_since(*t) < SESSION_TTL);
        let entry = map.entry(key).or_insert_with(|| (now, Vec::new()));
        entry.0 = now;
        entry.1.extend_from_slice(ids);
    }
}

impl Sessions {
    /// Whether chunks of this large object are buffered.
    pub fn has_chunks(&self, key: &(String, String, String)) -> bool {
        self.chunks.lock().map(|m| m.contains_key(key)).unwrap_or(false)
    }

    /// Adds a chunk of a large object; `more` is the chunk's MoreData flag.
    pub fn add_chunk(&self, key: (String, String, String), data: &str, more: bool) -> Chunk {
        let Ok(mut map) = self.chunks.lock() else { return Chunk::TooLarge };
        let now = Instant::now();
        map.retain(|_, (t, _)| now.duration_since(*t) < SESSION_TTL);
        let entry = map.entry(key.clone()).or_insert_with(|| (now, String::new()));
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
