//! Configuration profiles: their items (JSON), their assignments and the commands each
//! assignment queued.

use sqlx::{AnyConnection, AnyPool, Row};

use super::commands::enqueue;
use super::parsed;
use crate::clock::now;
use crate::error::ServerError;
use crate::model::{
    AssignmentState, AssignmentView, ItemCommand, NewCommand, OpenAssignment, ProfileItem,
    ProfilePhase, ProfileView, ReadBack, TrackedCommand,
};

pub async fn save(pool: &AnyPool, name: &str, items: &[ProfileItem]) -> Result<(), ServerError> {
    let json = serde_json::to_string(items).map_err(|e| ServerError::Config(e.to_string()))?;
    let ts = now();
    sqlx::query(
        "INSERT INTO profiles (name, items_json, created_at, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET items_json = excluded.items_json, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(json)
    .bind(&ts)
    .bind(&ts)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn items(pool: &AnyPool, name: &str) -> Result<Option<Vec<ProfileItem>>, ServerError> {
    let json: Option<String> =
        sqlx::query_scalar("SELECT items_json FROM profiles WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| ServerError::Config(format!("stored profile {name}: {e}")))
    })
    .transpose()
}

pub async fn view(pool: &AnyPool, name: &str) -> Result<Option<ProfileView>, ServerError> {
    let Some(items) = items(pool, name).await? else {
        return Ok(None);
    };
    let devices = sqlx::query(
        "SELECT device_id, state, detail, updated_at FROM profile_assignments WHERE profile_name = $1 ORDER BY device_id",
    )
    .bind(name)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(AssignmentView {
            device_id: r.try_get("device_id")?,
            state: parsed(r.try_get("state")?)?,
            detail: r.try_get("detail")?,
            updated_at: r.try_get("updated_at")?,
        })
    })
    .collect::<Result<Vec<_>, ServerError>>()?;
    Ok(Some(ProfileView {
        name: name.to_string(),
        items,
        devices,
    }))
}

/// Starts an assignment over for one device: its earlier commands forgotten, one
/// command per item queued, state `pending`.
pub async fn assign(
    conn: &mut AnyConnection,
    name: &str,
    device_id: &str,
    commands: &[ItemCommand],
) -> Result<(), ServerError> {
    sqlx::query("DELETE FROM profile_commands WHERE profile_name = $1 AND device_id = $2")
        .bind(name)
        .bind(device_id)
        .execute(&mut *conn)
        .await?;
    for (i, c) in commands.iter().enumerate() {
        queue(conn, name, device_id, ProfilePhase::Apply, i, c).await?;
    }
    set_state(conn, name, device_id, AssignmentState::Pending, "").await
}

/// Queues the read-back Gets and moves the assignment to `verifying`.
pub async fn queue_verification(
    conn: &mut AnyConnection,
    name: &str,
    device_id: &str,
    gets: &[ReadBack],
) -> Result<(), ServerError> {
    for g in gets {
        queue(
            conn,
            name,
            device_id,
            ProfilePhase::Verify,
            g.item,
            &g.command,
        )
        .await?;
    }
    set_state(conn, name, device_id, AssignmentState::Verifying, "").await
}

/// Queues one command of an assignment and records which item and phase it serves.
async fn queue(
    conn: &mut AnyConnection,
    name: &str,
    device_id: &str,
    phase: ProfilePhase,
    index: usize,
    c: &ItemCommand,
) -> Result<(), ServerError> {
    let cmd = NewCommand {
        verb: c.verb,
        target: &c.target,
        body_xml: &c.body_xml,
    };
    let id = enqueue(conn, std::slice::from_ref(&device_id.to_string()), cmd).await?;
    sqlx::query(
        "INSERT INTO profile_commands (profile_name, device_id, command_uuid, phase, item_index) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(name)
    .bind(device_id)
    .bind(id)
    .bind(phase.as_str())
    .bind(index as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn set_state(
    conn: &mut AnyConnection,
    name: &str,
    device_id: &str,
    state: AssignmentState,
    detail: &str,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO profile_assignments (profile_name, device_id, state, detail, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (profile_name, device_id) DO UPDATE SET state = excluded.state, detail = excluded.detail, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(device_id)
    .bind(state.as_str())
    .bind(detail)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The device's open assignments with their items and tracked commands (assignments
/// whose profile is gone are skipped).
pub async fn open(pool: &AnyPool, device_id: &str) -> Result<Vec<OpenAssignment>, ServerError> {
    let open: Vec<(String, String)> = sqlx::query_as(
        "SELECT profile_name, state FROM profile_assignments WHERE device_id = $1 AND state IN ('pending', 'verifying')",
    )
    .bind(device_id)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(open.len());
    for (profile, state) in open {
        let Some(items) = items(pool, &profile).await? else {
            continue;
        };
        let tracked = tracked(pool, &profile, device_id).await?;
        out.push(OpenAssignment {
            state: parsed(state)?,
            profile,
            items,
            tracked,
        });
    }
    Ok(out)
}

async fn tracked(
    pool: &AnyPool,
    name: &str,
    device_id: &str,
) -> Result<Vec<TrackedCommand>, ServerError> {
    let rows = sqlx::query(
        "SELECT pc.phase, pc.item_index, c.state, c.status_code,
                (SELECT r.body_xml FROM command_results r
                  WHERE r.command_uuid = pc.command_uuid AND r.device_id = pc.device_id AND r.kind = 'Results'
                  ORDER BY r.id DESC LIMIT 1) AS results
         FROM profile_commands pc
         JOIN commands c ON c.command_uuid = pc.command_uuid AND c.device_id = pc.device_id
         WHERE pc.profile_name = $1 AND pc.device_id = $2",
    )
    .bind(name)
    .bind(device_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TrackedCommand {
                phase: parsed(r.try_get("phase")?)?,
                index: r.try_get::<i64, _>("item_index")? as usize,
                state: parsed(r.try_get("state")?)?,
                status: r.try_get("status_code")?,
                results: r.try_get("results")?,
            })
        })
        .collect()
}
