//! An MS-WSTEP Issue request on the writer's connection: the one-device rules, and the
//! record, which checks the rules again in the same transaction as its writes, so two
//! requests racing with one token or one key cannot both enroll.

use rusqlite::{Connection, OptionalExtension};

use crate::clock::now;
use crate::model::{EnrollClaim, EnrollConflict, NewEnrollment};
use crate::store::statements as sql;

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

/// Records the enrollment unless a rule now refuses it.
pub fn record(
    c: &Connection,
    e: &NewEnrollment,
    claim: &EnrollClaim,
) -> rusqlite::Result<Option<EnrollConflict>> {
    if let Some(conflict) = conflict(c, claim)? {
        return Ok(Some(conflict));
    }
    upsert(c, e)?;
    Ok(None)
}

/// The portable `enrollments::upsert` on this connection.
fn upsert(c: &Connection, e: &NewEnrollment) -> rusqlite::Result<()> {
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
