//! Queueing a command on the writer's connection ([`super::writer`]): the admin request
//! shares the batch's COMMIT with the devices' messages instead of taking SQLite's
//! write lock (and a sync of its own) through the pool, and the writer's page cache is
//! not invalidated by another connection's write.

use rusqlite::Connection;

use crate::model::Verb;

/// Inserts one pending command per device, all under `command_uuid` (inside the
/// writer's savepoint: every row or none).
pub fn enqueue(
    c: &Connection,
    command_uuid: &str,
    device_ids: &[String],
    (verb, target, body_xml): (Verb, &str, &str),
    created_at: &str,
) -> rusqlite::Result<()> {
    let mut insert = c.prepare_cached(
        "INSERT INTO commands (command_uuid, device_id, verb, target, body_xml, created_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
    )?;
    for device_id in device_ids {
        insert.execute((
            command_uuid,
            device_id,
            verb.as_str(),
            target,
            body_xml,
            created_at,
        ))?;
    }
    Ok(())
}
