//! Whether a management message authenticates by OMA-DM MD5 digest, and the challenge
//! answering one that does not (OMA-DM 1.2 Security §5.3, `syncml:auth-md5`; wire
//! format in [`crate::codec::digest`]).
//!
//! A message without `Cred` is challenged with SyncHdr status 407, one with wrong or
//! stale credentials with 401; both carry a `Chal` with a fresh nonce, acknowledge the
//! device's commands with the same code and send no command. A DeviceID the server does
//! not know gets the same answers, so a challenge tells nothing about who is enrolled.

use crate::codec::digest::{chal_xml, decode_nonce, expected_digest, Cred, AUTH_MD5};
use crate::model::StoredDigest;
use crate::syncml::{ClientMessage, ServerMessage};

/// Seconds a nonce stays usable after the server sent it.
pub const NONCE_TTL_SECS: i64 = 600;

/// What to do with a message's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The digest matches the device's current nonce: process the message (the nonce is
    /// then used up).
    Accept,
    /// Answer with a challenge: 407 (no credentials) or 401 (refused credentials).
    Challenge(u16),
}

/// Judges `cred` against the device's stored credentials (None: unknown or not an
/// active enrollment) at `now` (Unix seconds).
pub fn judge(cred: Option<&Cred>, stored: Option<&StoredDigest>, now: i64) -> Verdict {
    let Some(cred) = cred else {
        return Verdict::Challenge(407);
    };
    let md5_b64 = cred.kind.eq_ignore_ascii_case(AUTH_MD5)
        && cred
            .format
            .as_deref()
            .is_none_or(|f| f.eq_ignore_ascii_case("b64"));
    let Some(stored) = stored.filter(|_| md5_b64) else {
        return Verdict::Challenge(401);
    };
    if now >= stored.nonce_expires_unix {
        return Verdict::Challenge(401);
    }
    let Some(nonce) = decode_nonce(&stored.nonce) else {
        return Verdict::Challenge(401);
    };
    let expected = expected_digest(&stored.credential_hash, &nonce);
    if crate::secret::constant_time_eq(expected.as_bytes(), cred.data.as_bytes()) {
        Verdict::Accept
    } else {
        Verdict::Challenge(401)
    }
}

/// The answer challenging `msg` with `code` (401 or 407) and `next_nonce` (base64):
/// statuses only, nothing of the message processed.
pub fn challenge(
    msg: &ClientMessage,
    server_url: &str,
    max_msg_size: usize,
    code: u16,
    next_nonce: &str,
) -> String {
    let msg_id = &msg.hdr.msg_id;
    let mut reply = ServerMessage::reply_to(&msg.hdr, server_url, max_msg_size);
    reply.status_with_chal(msg_id, "0", "SyncHdr", code, &chal_xml(next_nonce));
    for cmd in msg.commands.iter().filter(|c| c.verb != "Status") {
        reply.status(msg_id, &cmd.cmd_id, &cmd.verb, code);
    }
    reply.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::digest::credential_hash;

    fn stored() -> StoredDigest {
        StoredDigest {
            credential_hash: credential_hash("dev1", "secret"),
            nonce: "bm9uY2UtMQ==".into(),
            nonce_expires_unix: 1000,
        }
    }

    fn cred(data: &str) -> Cred {
        Cred {
            kind: AUTH_MD5.into(),
            format: Some("b64".into()),
            data: data.into(),
        }
    }

    #[test]
    fn the_published_vector_is_accepted_before_expiry() {
        let good = cred("Mn2bScWUVyRvTB9HhUt69w==");
        assert_eq!(judge(Some(&good), Some(&stored()), 999), Verdict::Accept);
        assert_eq!(
            judge(Some(&good), Some(&stored()), 1000),
            Verdict::Challenge(401)
        );
    }

    #[test]
    fn missing_wrong_or_unknown_credentials_are_challenged() {
        assert_eq!(judge(None, Some(&stored()), 0), Verdict::Challenge(407));
        assert_eq!(judge(None, None, 0), Verdict::Challenge(407));
        let wrong = cred("AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(
            judge(Some(&wrong), Some(&stored()), 0),
            Verdict::Challenge(401)
        );
        let good = cred("Mn2bScWUVyRvTB9HhUt69w==");
        assert_eq!(judge(Some(&good), None, 0), Verdict::Challenge(401));
        let basic = Cred {
            kind: "syncml:auth-basic".into(),
            ..good
        };
        assert_eq!(
            judge(Some(&basic), Some(&stored()), 0),
            Verdict::Challenge(401)
        );
    }
}
