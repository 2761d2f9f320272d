//! The command queue: queueing, cancelling, and the admin API's view of a command.

use sqlx::{AnyConnection, AnyPool, Row};

use super::parsed;
use crate::clock::now;
use crate::error::ServerError;
use crate::model::{CommandResult, CommandView, DeviceCommand, NewCommand};
use crate::store::statements::placeholders;

/// Rows per INSERT when queueing a command for many devices (6 parameters a row, well
/// under SQLite's and Postgres's parameter limits).
const ENQUEUE_ROWS_PER_STATEMENT: usize = 200;

/// Queues one command for each device (its XML without CmdID); all devices share the
/// returned command UUID.
pub async fn enqueue(
    conn: &mut AnyConnection,
    device_ids: &[String],
    cmd: NewCommand<'_>,
) -> Result<String, ServerError> {
    let command_uuid = uuid::Uuid::new_v4().to_string();
    let ts = now();
    // Many rows per statement: a round trip per device made fleet-wide commands slow.
    for chunk in device_ids.chunks(ENQUEUE_ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("({}, 'pending')", placeholders(1 + i * 6, 6)))
            .collect();
        let sql = format!(
            "INSERT INTO commands (command_uuid, device_id, verb, target, body_xml, created_at, state) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for device_id in chunk {
            q = q
                .bind(&command_uuid)
                .bind(device_id)
                .bind(cmd.verb.as_str())
                .bind(cmd.target)
                .bind(cmd.body_xml)
                .bind(&ts);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(command_uuid)
}

pub async fn cancel(pool: &AnyPool, command_uuid: &str) -> Result<u64, ServerError> {
    let r = sqlx::query(
        "UPDATE commands SET state = 'cancelled' WHERE command_uuid = $1 AND state = 'pending'",
    )
    .bind(command_uuid)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

pub async fn view(pool: &AnyPool, command_uuid: &str) -> Result<Option<CommandView>, ServerError> {
    let rows = sqlx::query(
        "SELECT device_id, verb, target, state, status_code, created_at FROM commands
             WHERE command_uuid = $1 ORDER BY id",
    )
    .bind(command_uuid)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut view = CommandView {
        command_id: command_uuid.to_string(),
        verb: parsed(first.try_get("verb")?)?,
        target: first.try_get("target")?,
        created_at: first.try_get("created_at")?,
        devices: Vec::with_capacity(rows.len()),
    };
    for r in &rows {
        let device_id: String = r.try_get("device_id")?;
        let results = sqlx::query(
            "SELECT kind, status_code, body_xml, received_at FROM command_results
                 WHERE command_uuid = $1 AND device_id = $2 ORDER BY id",
        )
        .bind(command_uuid)
        .bind(&device_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(CommandResult {
                kind: parsed(r.try_get("kind")?)?,
                status_code: r.try_get("status_code")?,
                body_xml: r.try_get("body_xml")?,
                received_at: r.try_get("received_at")?,
            })
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
        view.devices.push(DeviceCommand {
            device_id,
            state: parsed(r.try_get("state")?)?,
            status_code: r.try_get("status_code")?,
            results,
        });
    }
    Ok(Some(view))
}
