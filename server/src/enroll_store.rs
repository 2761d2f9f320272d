//! Storage for an MS-WSTEP Issue request: the one-device rules and the enrollment record.
//!
//! On SQLite both run on the writer thread ([`crate::writer`]); the record checks the
//! rules again in the same transaction as its writes, so two requests racing with one
//! token or one key cannot both enroll. On Postgres they are the queries of [`Store`],
//! the record's behind an advisory lock.

use rusqlite::{Connection, OptionalExtension};

use crate::db::{now, NewEnrollment, Store};
use crate::error::ServerError;

/// What the one-device rules look at.
#[derive(Debug, Clone)]
pub struct EnrollClaim {
    pub host_uuid: Option<String>,
    /// The requesting host's hardware UUID (`user:NAME` for an enrollment user): what
    /// stays the same when a host enrolls through Orbit again and gets a new node key.
    pub hardware_uuid: String,
    pub device_id: String,
    /// SHA-256 (hex) of the CSR's RSA public key.
    pub public_key_sha256: String,
    /// Enrollment users may enroll several devices with one account.
    pub multi_device: bool,
}

/// Why an enrollment is refused by the one-device rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollConflict {
    /// The enrollment token already enrolled another device (MS-MDE2 DeviceCapReached).
    DeviceCapReached,
    /// The DeviceID is enrolled, and not unenrolled or released, for another host or
    /// enrollment user: enrolling it again would move its enrollment, certificates and
    /// command queue to the requester.
    DeviceHeldByOtherHost,
    /// The CSR's public key is certified for another device.
    KeyHeldByOtherDevice,
}

/// The statements of an enrollment, written once for both backends: sqlx binds `$n`
/// by number, and SQLite (the writer's rusqlite connection) numbers `$n` parameters by
/// first appearance, which here is ascending.
pub(crate) mod sql {
    pub const HOST_ACTIVE_DEVICE: &str =
        "SELECT device_id FROM enrollments WHERE host_uuid = $1 AND state = 'enrolled' LIMIT 1";
    /// An active enrollment of the DeviceID by another host (`unenroll_pending` is still
    /// active: the device is managed until it acknowledges the unenrollment).
    pub const DEVICE_HELD_ELSEWHERE: &str = "SELECT 1 FROM enrollments WHERE device_id = $1
         AND state IN ('enrolled', 'unenroll_pending') AND hardware_uuid != $2 LIMIT 1";
    pub const KEY_HELD_ELSEWHERE: &str =
        "SELECT 1 FROM device_certs WHERE public_key_sha256 = $1 AND device_id != $2 LIMIT 1";
    pub const UPSERT_ENROLLMENT: &str =
        "INSERT INTO enrollments (device_id, host_uuid, hardware_uuid, device_name, os_version, enrollment_type, upn,
                                  cert_serial, cert_thumbprint, cert_not_after, state, enrolled_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'enrolled', $11, $12)
         ON CONFLICT (device_id) DO UPDATE SET
           host_uuid = excluded.host_uuid, hardware_uuid = excluded.hardware_uuid,
           device_name = excluded.device_name, os_version = excluded.os_version,
           enrollment_type = excluded.enrollment_type, upn = excluded.upn,
           cert_serial = excluded.cert_serial, cert_thumbprint = excluded.cert_thumbprint,
           cert_not_after = excluded.cert_not_after, state = 'enrolled',
           enrolled_at = excluded.enrolled_at, updated_at = excluded.updated_at";
    /// A new enrollment replaces every earlier certificate of the device at once.
    pub const RETIRE_DEVICE_CERTS: &str =
        "UPDATE device_certs SET state = 'retired' WHERE device_id = $1 AND state != 'retired'";
    pub const INSERT_DEVICE_CERT: &str =
        "INSERT INTO device_certs (cert_serial, device_id, thumbprint, not_after, state, issued_at, public_key_sha256)
         VALUES ($1, $2, $3, $4, 'active', $5, $6)";
}

/// The one-device rules on a sqlx connection (Postgres; also inside the recording
/// transaction).
pub(crate) async fn conflict_on(
    conn: &mut sqlx::AnyConnection,
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

impl Store {
    /// Checks the one-device rules for `e`: a token enrolls one device (unless
    /// `multi_device`, for enrollment users), an enrolled DeviceID belongs to its host
    /// until it is unenrolled or released, a key pair belongs to one device.
    pub async fn enrollment_conflict(
        &self,
        e: &EnrollClaim,
    ) -> Result<Option<EnrollConflict>, ServerError> {
        if let Some(w) = self.writer() {
            let e = e.clone();
            return w.read(move |c| sqlite::conflict(c, &e)).await;
        }
        let mut conn = self.pool().acquire().await?;
        conflict_on(&mut conn, e).await
    }

    /// Records the enrollment unless a one-device rule now refuses it (`claim` is the
    /// one checked before the certificate was signed).
    pub async fn record_enrollment(
        &self,
        e: NewEnrollment,
        claim: EnrollClaim,
    ) -> Result<Option<EnrollConflict>, ServerError> {
        if let Some(w) = self.writer() {
            return w
                .run(move |c| {
                    if let Some(conflict) = sqlite::conflict(c, &claim)? {
                        return Ok(Some(conflict));
                    }
                    sqlite::upsert(c, &e)?;
                    Ok(None)
                })
                .await;
        }
        self.upsert_enrollment(&e, &claim).await
    }
}

/// The same rules and writes as SQL on the writer's connection.
mod sqlite {
    use super::*;

    pub fn conflict(c: &Connection, e: &EnrollClaim) -> rusqlite::Result<Option<EnrollConflict>> {
        if let (Some(host_uuid), false) = (&e.host_uuid, e.multi_device) {
            let other: Option<String> = c
                .prepare_cached(sql::HOST_ACTIVE_DEVICE)?
                .query_row([host_uuid], |r| r.get(0))
                .optional()?;
            if other.is_some_and(|o| o != e.device_id) {
                return Ok(Some(EnrollConflict::DeviceCapReached));
            }
        }
        if c.prepare_cached(sql::DEVICE_HELD_ELSEWHERE)?
            .exists((&e.device_id, &e.hardware_uuid))?
        {
            return Ok(Some(EnrollConflict::DeviceHeldByOtherHost));
        }
        let held = c
            .prepare_cached(sql::KEY_HELD_ELSEWHERE)?
            .exists((&e.public_key_sha256, &e.device_id))?;
        Ok(held.then_some(EnrollConflict::KeyHeldByOtherDevice))
    }

    /// `Store::upsert_enrollment` on this connection.
    pub fn upsert(c: &Connection, e: &NewEnrollment) -> rusqlite::Result<()> {
        let ts = now();
        c.prepare_cached(sql::UPSERT_ENROLLMENT)?.execute((
            &e.device_id,
            &e.host_uuid,
            &e.hardware_uuid,
            &e.device_name,
            &e.os_version,
            &e.enrollment_type,
            &e.upn,
            &e.cert_serial,
            &e.cert_thumbprint,
            &e.cert_not_after,
            &ts,
            &ts,
        ))?;
        c.prepare_cached(sql::RETIRE_DEVICE_CERTS)?
            .execute([&e.device_id])?;
        c.prepare_cached(sql::INSERT_DEVICE_CERT)?.execute((
            &e.cert_serial,
            &e.device_id,
            &e.cert_thumbprint,
            &e.cert_not_after,
            &ts,
            &e.public_key_sha256,
        ))?;
        Ok(())
    }
}
