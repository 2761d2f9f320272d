//! Enrollments and device certificates: the one-device rules, recording, renewal,
//! state changes and the admin API's reads.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::parsed;
use crate::clock::{now, unix_now};
use crate::error::ServerError;
use crate::model::{
    EnrollClaim, EnrollConflict, Enrollment, EnrollmentState, NewEnrollment, RenewedCert,
};
use crate::store::statements::{self as sql, placeholders};

/// Rows per statement when checking many DeviceIDs (well under SQLite's and Postgres's
/// parameter limits).
const IDS_PER_STATEMENT: usize = 200;

/// The one-device rules on a sqlx connection (also inside the recording transaction).
pub async fn conflict_on(
    conn: &mut AnyConnection,
    e: &EnrollClaim,
) -> Result<Option<EnrollConflict>, ServerError> {
    if let (Some(host_uuid), false) = (&e.host_uuid, e.multi_device) {
        let other: Option<String> = sqlx::query_scalar(sql::HOST_ACTIVE_DEVICE)
            .bind(host_uuid)
            .fetch_optional(&mut *conn)
            .await?;
        if other.is_some_and(|o| o != e.device_id) {
            return Ok(Some(EnrollConflict::DeviceCapReached));
        }
    }
    let taken: Option<i64> = sqlx::query_scalar(sql::DEVICE_HELD_ELSEWHERE)
        .bind(&e.device_id)
        .bind(&e.hardware_uuid)
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Ok(Some(EnrollConflict::DeviceHeldByOtherHost));
    }
    let held: Option<i64> = sqlx::query_scalar(sql::KEY_HELD_ELSEWHERE)
        .bind(&e.public_key_sha256)
        .bind(&e.device_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(held.map(|_| EnrollConflict::KeyHeldByOtherDevice))
}

/// Writes an enrollment (replacing the device's earlier one and its certificates).
pub async fn upsert(conn: &mut AnyConnection, e: &NewEnrollment) -> Result<(), ServerError> {
    let ts = now();
    sqlx::query(sql::UPSERT_ENROLLMENT)
        .bind(&e.device_id)
        .bind(&e.host_uuid)
        .bind(&e.hardware_uuid)
        .bind(&e.device_name)
        .bind(&e.os_version)
        .bind(&e.enrollment_type)
        .bind(&e.upn)
        .bind(&e.cert_serial)
        .bind(&e.cert_thumbprint)
        .bind(&e.cert_not_after)
        .bind(&ts)
        .bind(&ts)
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql::RETIRE_DEVICE_CERTS)
        .bind(&e.device_id)
        .execute(&mut *conn)
        .await?;
    insert_cert(
        conn,
        &e.device_id,
        &e.cert_serial,
        &e.cert_thumbprint,
        &e.cert_not_after,
        &e.public_key_sha256,
    )
    .await
}

/// Writes a renewed certificate: the active one starts retiring, the new one is active.
pub async fn renew(
    conn: &mut AnyConnection,
    claim: &EnrollClaim,
    cert: RenewedCert<'_>,
) -> Result<(), ServerError> {
    let device_id = claim.device_id.as_str();
    sqlx::query(
        "UPDATE device_certs SET state = 'retiring', retire_after = $1 WHERE device_id = $2 AND state = 'active'",
    )
    .bind(unix_now() + cert.grace_secs)
    .bind(device_id)
    .execute(&mut *conn)
    .await?;
    insert_cert(
        conn,
        device_id,
        cert.serial,
        cert.thumbprint,
        cert.not_after,
        &claim.public_key_sha256,
    )
    .await?;
    sqlx::query(
        "UPDATE enrollments SET cert_serial = $1, cert_thumbprint = $2, cert_not_after = $3, updated_at = $4 WHERE device_id = $5",
    )
    .bind(cert.serial)
    .bind(cert.thumbprint)
    .bind(cert.not_after)
    .bind(now())
    .bind(device_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_cert(
    conn: &mut AnyConnection,
    device_id: &str,
    serial: &str,
    thumbprint: &str,
    not_after: &str,
    public_key_sha256: &str,
) -> Result<(), ServerError> {
    sqlx::query(sql::INSERT_DEVICE_CERT)
        .bind(serial)
        .bind(device_id)
        .bind(thumbprint)
        .bind(not_after)
        .bind(now())
        .bind(public_key_sha256)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves an enrollment to `state`; becoming `unenrolled` cancels pending commands.
pub async fn set_state(
    conn: &mut AnyConnection,
    device_id: &str,
    state: EnrollmentState,
) -> Result<(), ServerError> {
    sqlx::query("UPDATE enrollments SET state = $1, updated_at = $2 WHERE device_id = $3")
        .bind(state.as_str())
        .bind(now())
        .bind(device_id)
        .execute(&mut *conn)
        .await?;
    if state == EnrollmentState::Unenrolled {
        sqlx::query("UPDATE commands SET state = 'cancelled' WHERE device_id = $1 AND state IN ('pending', 'sent')")
            .bind(device_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// State of the host's most recent MDM enrollment.
pub async fn host_state(
    pool: &AnyPool,
    host_uuid: &str,
) -> Result<Option<EnrollmentState>, ServerError> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state FROM enrollments WHERE host_uuid = $1 ORDER BY updated_at DESC LIMIT 1",
    )
    .bind(host_uuid)
    .fetch_optional(pool)
    .await?;
    state.map(parsed).transpose()
}

const ENROLLMENT_SELECT: &str =
    "SELECT device_id, host_uuid, hardware_uuid, device_name, os_version, enrollment_type,
    cert_serial, cert_thumbprint, state, enrolled_at, last_checkin_at FROM enrollments";

fn from_row(r: &AnyRow) -> Result<Enrollment, ServerError> {
    Ok(Enrollment {
        device_id: r.try_get("device_id")?,
        host_uuid: r.try_get("host_uuid")?,
        hardware_uuid: r.try_get("hardware_uuid")?,
        device_name: r.try_get("device_name")?,
        os_version: r.try_get("os_version")?,
        enrollment_type: r.try_get("enrollment_type")?,
        cert_serial: r.try_get("cert_serial")?,
        cert_thumbprint: r.try_get("cert_thumbprint")?,
        state: parsed(r.try_get("state")?)?,
        enrolled_at: r.try_get("enrolled_at")?,
        last_checkin_at: r.try_get("last_checkin_at")?,
    })
}

pub async fn list(pool: &AnyPool) -> Result<Vec<Enrollment>, ServerError> {
    let rows = sqlx::query(&format!("{ENROLLMENT_SELECT} ORDER BY enrolled_at DESC"))
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(pool: &AnyPool, device_id: &str) -> Result<Option<Enrollment>, ServerError> {
    let row = sqlx::query(&format!("{ENROLLMENT_SELECT} WHERE device_id = $1"))
        .bind(device_id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| from_row(&r)).transpose()
}

/// The first of `device_ids` (in order) that has no enrollment, checked a few hundred
/// at a time.
pub async fn first_unknown(
    pool: &AnyPool,
    device_ids: &[String],
) -> Result<Option<String>, ServerError> {
    for chunk in device_ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "SELECT device_id FROM enrollments WHERE device_id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        let known: std::collections::HashSet<String> =
            q.fetch_all(pool).await?.into_iter().collect();
        if let Some(missing) = chunk.iter().find(|id| !known.contains(*id)) {
            return Ok(Some(missing.clone()));
        }
    }
    Ok(None)
}
