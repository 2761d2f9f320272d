//! A message resent after a dropped connection (the device did not get the answer, or
//! a load balancer retried it on another replica) gets the answer it got the first
//! time: it is not processed twice. What a session's stored replay record means for a
//! message; the record is the store's, shared by every replica, and written in the
//! transaction that stores the message's effects.

use sha2::{Digest, Sha256};

use crate::model::{MessageWork, ReplayStamp, StoredReplay};
use crate::protocol::reassembly::ChunkOp;

/// Replay records of sessions idle longer than this are deleted.
pub const SESSION_TTL_SECS: i64 = 3600;

/// What to do with a message, given its session's replay record.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// A new message: process it.
    New,
    /// The same message again: answer with the stored response.
    Repeat(String),
    /// The same MsgID with different content: refuse.
    Conflict,
    /// The same message, its effects stored but its answer not (the replica stopped
    /// between the two): build the answer again without storing the effects twice.
    Unanswered,
}

/// The stamp of a message: its session, MsgID and the SHA-256 of its body.
pub fn stamp(device_id: &str, session_id: &str, msg_id: &str, body: &str) -> ReplayStamp {
    let digest = Sha256::digest(body.as_bytes());
    ReplayStamp {
        device_id: device_id.to_string(),
        session_id: session_id.to_string(),
        msg_id: msg_id.to_string(),
        request_sha256: hex::encode(digest),
    }
}

/// Checks a message against its session's last one.
pub fn judge(stored: Option<StoredReplay>, stamp: &ReplayStamp) -> Replay {
    match stored {
        Some(last) if last.msg_id == stamp.msg_id => {
            if last.request_sha256 != stamp.request_sha256 {
                Replay::Conflict
            } else {
                match last.response {
                    Some(xml) => Replay::Repeat(xml),
                    None => Replay::Unanswered,
                }
            }
        }
        _ => Replay::New,
    }
}

/// A [`Replay::Unanswered`] message: its effects (Statuses, Results, the session's
/// first-message work, large-object changes) are stored already, so only its answer is
/// built again.
pub fn answer_only(work: &mut MessageWork, ops: &mut Vec<ChunkOp>) {
    work.responses.clear();
    work.first_in_session = false;
    ops.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(msg_id: &str, body: &str, response: Option<&str>) -> StoredReplay {
        let s = stamp("dev", "1", msg_id, body);
        StoredReplay {
            msg_id: s.msg_id,
            request_sha256: s.request_sha256,
            response: response.map(str::to_string),
        }
    }

    #[test]
    fn a_resent_message_is_answered_and_a_reused_msg_id_refused() {
        let last = || Some(stored("2", "body", Some("answer")));
        assert_eq!(
            judge(last(), &stamp("dev", "1", "2", "body")),
            Replay::Repeat("answer".into())
        );
        assert_eq!(
            judge(last(), &stamp("dev", "1", "2", "other")),
            Replay::Conflict
        );
        assert_eq!(judge(last(), &stamp("dev", "1", "3", "body")), Replay::New);
        assert_eq!(judge(None, &stamp("dev", "1", "2", "body")), Replay::New);
        assert_eq!(
            judge(
                Some(stored("2", "body", None)),
                &stamp("dev", "1", "2", "body")
            ),
            Replay::Unanswered
        );
    }
}
