//! OMA-DM MD5 digest authentication of management messages over the store
//! (`--management-auth digest | mtls-or-digest`; decisions in
//! [`crate::protocol::digest`]): credentials provisioned at enrollment, and one
//! single-use nonce per device, kept in the database so that it survives a restart.

use crate::clock::unix_now;
use crate::codec::digest::{credential_hash, encode_nonce, Cred};
use crate::error::ServerError;
use crate::model::StoredDigest;
use crate::protocol::digest::{judge, Verdict, NONCE_TTL_SECS};
use crate::store::Store;

/// Credentials for a provisioning document. The secret is never stored or logged.
pub struct Provisioned {
    pub secret: String,
    /// The first nonce, base64 (`AAUTHDATA`).
    pub nonce: String,
}

/// How a message's credentials were judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated; the reply's SyncHdr Status carries `next_nonce`.
    Accepted { next_nonce: String },
    /// Answer with [`crate::protocol::digest::challenge`].
    Challenge { code: u16, next_nonce: String },
}

fn new_nonce() -> String {
    encode_nonce(&rand::random::<[u8; 16]>())
}

/// Fresh digest credentials for `device_id` (its `AAUTHNAME`), stored as
/// `B64(MD5(name ":" secret))` with the first nonce.
pub async fn provision(store: &Store, device_id: &str) -> Result<Provisioned, ServerError> {
    let secret = hex::encode(rand::random::<[u8; 24]>());
    let nonce = new_nonce();
    let stored = StoredDigest {
        credential_hash: credential_hash(device_id, &secret),
        nonce: nonce.clone(),
        nonce_expires_unix: unix_now() + NONCE_TTL_SECS,
    };
    store.set_digest_credentials(device_id, &stored).await?;
    Ok(Provisioned { secret, nonce })
}

/// Judges a message from `device_id` (its SyncHdr Source) carrying `cred`, and gives
/// the device its next nonce: its current one is used up by any answer.
pub async fn authenticate(
    store: &Store,
    device_id: &str,
    cred: Option<&Cred>,
) -> Result<Outcome, ServerError> {
    let stored = store.digest_credentials(device_id).await?;
    let now = unix_now();
    let next_nonce = new_nonce();
    let expires = now + NONCE_TTL_SECS;
    let verdict = judge(cred, stored.as_ref(), now);
    if let (Verdict::Accept, Some(s)) = (verdict, stored.as_ref()) {
        // Single use: of two messages with one nonce, only the one that replaces it wins.
        if store
            .replace_digest_nonce(device_id, Some(&s.nonce), &next_nonce, expires)
            .await?
        {
            return Ok(Outcome::Accepted { next_nonce });
        }
    }
    let code = match verdict {
        Verdict::Challenge(code) => code,
        Verdict::Accept => 401,
    };
    // An unknown DeviceID gets a nonce too (not stored): the same answer as a device's.
    if stored.is_some() {
        store
            .replace_digest_nonce(device_id, None, &next_nonce, expires)
            .await?;
    }
    Ok(Outcome::Challenge { code, next_nonce })
}
