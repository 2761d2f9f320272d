//! Host lookups on the writer's connection (every enrollment request makes one).

use rusqlite::{Connection, OptionalExtension};

use crate::model::Host;

pub fn by_node_key_hash(c: &Connection, hash: &str) -> rusqlite::Result<Option<Host>> {
    c.prepare_cached(
        "SELECT host_uuid, hardware_uuid, hostname, node_key_issued_unix FROM hosts WHERE node_key_hash = ?1",
    )?
    .query_row([hash], |r| {
        Ok(Host {
            host_uuid: r.get(0)?,
            hardware_uuid: r.get(1)?,
            hostname: r.get(2)?,
            node_key_issued_unix: r.get(3)?,
        })
    })
    .optional()
}
