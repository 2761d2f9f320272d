//! Hosts and their node keys.

use sqlx::{AnyPool, Row};

use crate::clock::{now, unix_now};
use crate::error::ServerError;
use crate::model::{Host, HostRegistration};

pub async fn upsert(pool: &AnyPool, h: HostRegistration<'_>) -> Result<String, ServerError> {
    let ts = now();
    let host_uuid = uuid::Uuid::new_v4().to_string();
    let row = sqlx::query(
        "INSERT INTO hosts (host_uuid, hardware_uuid, hardware_serial, hostname, platform, node_key_hash, created_at, last_seen_at, node_key_issued_unix)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (hardware_uuid) DO UPDATE SET
           hardware_serial = excluded.hardware_serial, hostname = excluded.hostname,
           platform = excluded.platform, node_key_hash = excluded.node_key_hash,
           last_seen_at = excluded.last_seen_at, node_key_issued_unix = excluded.node_key_issued_unix
         RETURNING host_uuid",
    )
    .bind(&host_uuid)
    .bind(h.hardware_uuid)
    .bind(h.hardware_serial)
    .bind(h.hostname)
    .bind(h.platform)
    .bind(h.node_key_hash)
    .bind(&ts)
    .bind(&ts)
    .bind(unix_now())
    .fetch_one(pool)
    .await?;
    Ok(row.try_get("host_uuid")?)
}

pub async fn by_node_key_hash(pool: &AnyPool, hash: &str) -> Result<Option<Host>, ServerError> {
    let row = sqlx::query(
        "SELECT host_uuid, hardware_uuid, hostname, node_key_issued_unix FROM hosts WHERE node_key_hash = $1",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Host {
            host_uuid: r.try_get("host_uuid")?,
            hardware_uuid: r.try_get("hardware_uuid")?,
            hostname: r.try_get("hostname")?,
            node_key_issued_unix: r.try_get("node_key_issued_unix")?,
        })
    })
    .transpose()
}

pub async fn touch(pool: &AnyPool, host_uuid: &str) -> Result<(), ServerError> {
    sqlx::query("UPDATE hosts SET last_seen_at = $1 WHERE host_uuid = $2")
        .bind(now())
        .bind(host_uuid)
        .execute(pool)
        .await?;
    Ok(())
}
