//! In-memory per-session state of OMA-DM sessions: the last answered message (so a
//! message resent after a dropped connection gets the same answer instead of being
//! processed twice) and large objects being reassembled ([`crate::protocol::reassembly`]).

use std::collections::HashMap;

use axum::body::Bytes;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An OMA-DM session: the device and its SessionID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub device_id: String,
    pub session_id: String,
}

/// Sessions idle longer than this are forgotten.
const SESSION_TTL: Duration = Duration::from_secs(3600);

/// The replay records are kept in two generations: new records go into the current one,
/// which becomes the previous one (dropping the old previous) once it is
/// [`GENERATION_AGE`] old or holds [`GENERATION_BYTES`] of responses. A record thus lives
/// between one and two generations, and memory stays bounded however many sessions run.
const GENERATION_AGE: Duration = Duration::from_secs(SESSION_TTL.as_secs() / 2);
/// Response bytes one generation holds before it is rotated: a bound on memory that a
/// fleet reaches only at thousands of messages per second, when records then live
/// shorter than [`GENERATION_AGE`] (logged).
const GENERATION_BYTES: usize = 128 * 1024 * 1024;

#[derive(Default)]
pub struct Sessions {
    /// The last message of each session.
    last: Mutex<Generations>,
    /// Large objects being reassembled.
    pub chunks: crate::protocol::reassembly::Reassembly,
}

/// A session's last answered message.
struct LastMessage {
    msg_id: String,
    /// SHA-256 of the request body.
    digest: [u8; 32],
    response: Bytes,
}

/// Current and previous generation of replay records.
struct Generations {
    started: Instant,
    bytes: usize,
    current: HashMap<SessionKey, LastMessage>,
    previous: HashMap<SessionKey, LastMessage>,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            started: Instant::now(),
            bytes: 0,
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }
}

impl Generations {
    fn get(&self, key: &SessionKey) -> Option<&LastMessage> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    fn insert(&mut self, key: SessionKey, last: LastMessage) {
        let full = self.bytes >= GENERATION_BYTES;
        if full || self.started.elapsed() >= GENERATION_AGE {
            if full {
                tracing::warn!(
                    age_secs = self.started.elapsed().as_secs(),
                    "replay records rotated early: the memory bound was reached"
                );
            }
            self.previous = std::mem::take(&mut self.current);
            self.started = Instant::now();
            self.bytes = 0;
        }
        self.previous.remove(&key);
        self.bytes += last.response.len();
        self.current.insert(key, last);
    }
}

/// What to do with a message, given the session's last one.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// A new message: process it.
    New,
    /// The same message again: answer with the stored response.
    Repeat(Bytes),
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
    pub fn remember(&self, key: SessionKey, msg_id: &str, digest: [u8; 32], response: Bytes) {
        let Ok(mut map) = self.last.lock() else {
            return;
        };
        map.insert(
            key,
            LastMessage {
                msg_id: msg_id.to_string(),
                digest,
                response,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> SessionKey {
        SessionKey {
            device_id: format!("device-{i}"),
            session_id: "1".to_string(),
        }
    }

    #[test]
    fn a_resent_message_is_answered_and_a_reused_msg_id_refused() {
        let s = Sessions::default();
        s.remember(key(1), "2", [1; 32], Bytes::from_static(b"answer"));
        assert_eq!(
            s.check_replay(&key(1), "2", &[1; 32]),
            Replay::Repeat(Bytes::from_static(b"answer"))
        );
        assert_eq!(s.check_replay(&key(1), "2", &[2; 32]), Replay::Conflict);
        assert_eq!(s.check_replay(&key(1), "3", &[1; 32]), Replay::New);
    }

    #[test]
    fn replay_memory_is_bounded_by_two_generations() {
        let s = Sessions::default();
        let response = Bytes::from(vec![b'x'; 64 * 1024]);
        // Four generations' worth of responses.
        let n = 4 * GENERATION_BYTES / response.len();
        for i in 0..n {
            s.remember(key(i), "1", [0; 32], response.clone());
        }
        let g = s.last.lock().expect("lock");
        let held: usize = g.current.len() + g.previous.len();
        assert!(held * response.len() <= 2 * GENERATION_BYTES + response.len());
        // The newest record is still answered from memory, the oldest is gone.
        drop(g);
        assert_eq!(
            s.check_replay(&key(n - 1), "1", &[0; 32]),
            Replay::Repeat(response)
        );
        assert_eq!(s.check_replay(&key(0), "1", &[0; 32]), Replay::New);
    }
}
