//! OMA-DM digest credentials and nonces (see [`crate::protocol::digest`]).

use sqlx::{AnyPool, Row};

use crate::error::ServerError;
use crate::model::StoredDigest;

/// Sets a device's credentials and first nonce (a device enrolling again gets new ones).
pub async fn upsert(
    pool: &AnyPool,
    device_id: &str,
    stored: &StoredDigest,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO digest_credentials (device_id, credential_hash, nonce, nonce_expires_unix)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (device_id) DO UPDATE SET credential_hash = excluded.credential_hash,
           nonce = excluded.nonce, nonce_expires_unix = excluded.nonce_expires_unix",
    )
    .bind(device_id)
    .bind(&stored.credential_hash)
    .bind(&stored.nonce)
    .bind(stored.nonce_expires_unix)
    .execute(pool)
    .await?;
    Ok(())
}

/// The credentials of a device with an active enrollment.
pub async fn get(pool: &AnyPool, device_id: &str) -> Result<Option<StoredDigest>, ServerError> {
    let row = sqlx::query(
        "SELECT c.credential_hash, c.nonce, c.nonce_expires_unix
         FROM digest_credentials c JOIN enrollments e ON e.device_id = c.device_id
         WHERE c.device_id = $1 AND e.state IN ('enrolled', 'unenroll_pending')",
    )
    .bind(device_id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(StoredDigest {
            credential_hash: r.try_get("credential_hash")?,
            nonce: r.try_get("nonce")?,
            nonce_expires_unix: r.try_get("nonce_expires_unix")?,
        })
    })
    .transpose()
}

/// Replaces the device's nonce with `nonce` until `expires_unix`: only if its nonce is
/// still `used` when given (single use: of two messages with one nonce, one wins).
/// Whether a row changed.
pub async fn replace_nonce(
    pool: &AnyPool,
    device_id: &str,
    used: Option<&str>,
    nonce: &str,
    expires_unix: i64,
) -> Result<bool, ServerError> {
    let done = match used {
        Some(used) => {
            sqlx::query(
                "UPDATE digest_credentials SET nonce = $1, nonce_expires_unix = $2
                 WHERE device_id = $3 AND nonce = $4",
            )
            .bind(nonce)
            .bind(expires_unix)
            .bind(device_id)
            .bind(used)
            .execute(pool)
            .await?
        }
        None => {
            sqlx::query(
                "UPDATE digest_credentials SET nonce = $1, nonce_expires_unix = $2
                 WHERE device_id = $3",
            )
            .bind(nonce)
            .bind(expires_unix)
            .bind(device_id)
            .execute(pool)
            .await?
        }
    };
    Ok(done.rows_affected() > 0)
}
