//! Statements run as they are by both backends: sqlx binds `$n` by number, and SQLite
//! (the writer's rusqlite connection) numbers `$n` parameters by first appearance, which
//! here is ascending.

// ---- Enrollment (MS-WSTEP Issue) ----

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

// ---- Management messages ----

/// The enrollment behind a certificate serial, in one query.
pub const CERT_IDENTITY: &str = "SELECT d.device_id, d.state, d.retire_after, e.state
         FROM device_certs d JOIN enrollments e ON e.device_id = d.device_id
         WHERE d.cert_serial = $1";
pub const OPEN_PROFILES: &str = "SELECT 1 FROM profile_assignments
         WHERE device_id = $1 AND state IN ('pending', 'verifying') LIMIT 1";
/// The target and body of a command sent (not merely queued) to a device.
pub const SENT_COMMAND: &str = "SELECT target, body_xml FROM commands
         WHERE command_uuid = $1 AND device_id = $2 AND state <> 'pending'";
/// Pending commands and those sent before `$2` (Unix seconds) without a Status.
///
/// The `state IN` term lets the `commands_device_state` index seek to the device's
/// pending and sent rows: with the `OR` alone the search stops at `device_id` and reads
/// every command the device ever acknowledged (32 µs instead of 4 µs per check-in with
/// 300 of them, growing with the device's history).
pub const DELIVERABLE: &str = "SELECT command_uuid, verb, body_xml FROM commands
         WHERE device_id = $1 AND state IN ('pending', 'sent')
           AND (state = 'pending' OR sent_unix <= $2)
         ORDER BY id";

/// `$first, $first+1, ...`: `count` numbered parameters for a statement built at run time.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
