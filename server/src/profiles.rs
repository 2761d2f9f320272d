//! Configuration profiles: a named set of Replace/Add commands on CSP nodes (typically
//! Policy CSP, `./Device/Vendor/MSFT/Policy/Config/...`). Assigning a profile queues its
//! commands; once the device acknowledges them all, the server reads each node back
//! (Policy CSP: the matching `Policy/Result` node) and compares with what it set.
//! Per device an assignment is `pending`, `verifying`, `verified` or `failed`.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{now, Store};
use crate::error::ServerError;

/// One setting of a profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProfileItem {
    /// `Replace` or `Add`.
    pub verb: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub data: String,
}

impl ProfileItem {
    fn command_xml(&self) -> Result<String, String> {
        if self.verb != "Replace" && self.verb != "Add" {
            return Err(format!(
                "profile items are Replace or Add, not {:?}",
                self.verb
            ));
        }
        let raw = crate::syncml::build_command(
            &self.verb,
            &self.target,
            self.format.as_deref(),
            self.mime_type.as_deref(),
            Some(&self.data),
        )?;
        crate::syncml::normalise_command(&raw).map(|(_, _, xml)| xml)
    }

    /// Where the applied value is read back: Policy CSP reports applied policies under
    /// `Policy/Result/<Area>/<Policy>` (Policy CSP DDF); other nodes are read directly.
    pub fn readback_target(&self) -> String {
        self.target
            .replacen("/Policy/Config/", "/Policy/Result/", 1)
    }
}

/// Per-device state of an assignment.
#[derive(Debug, Clone, Serialize)]
pub struct AssignmentView {
    pub device_id: String,
    pub state: String,
    pub detail: String,
    pub updated_at: String,
}

/// A profile and its assignments.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileView {
    pub name: String,
    pub items: Vec<ProfileItem>,
    pub devices: Vec<AssignmentView>,
}

/// Creates or replaces a profile after checking every item builds a valid command.
pub async fn save(
    store: &Store,
    name: &str,
    items: &[ProfileItem],
) -> Result<Result<(), String>, ServerError> {
    if name.is_empty() || name.len() > 128 {
        return Ok(Err("profile name must be 1 to 128 characters".into()));
    }
    if items.is_empty() {
        return Ok(Err("a profile needs at least one item".into()));
    }
    for item in items {
        if let Err(e) = item.command_xml() {
            return Ok(Err(format!("{}: {e}", item.target)));
        }
    }
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
    .execute(store.pool())
    .await?;
    Ok(Ok(()))
}

async fn items(store: &Store, name: &str) -> Result<Option<Vec<ProfileItem>>, ServerError> {
    let json: Option<String> =
        sqlx::query_scalar("SELECT items_json FROM profiles WHERE name = $1")
            .bind(name)
            .fetch_optional(store.pool())
            .await?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| ServerError::Config(format!("stored profile {name}: {e}")))
    })
    .transpose()
}

/// The profile with every assignment's state.
pub async fn view(store: &Store, name: &str) -> Result<Option<ProfileView>, ServerError> {
    let Some(items) = items(store, name).await? else {
        return Ok(None);
    };
    let devices = sqlx::query(
        "SELECT device_id, state, detail, updated_at FROM profile_assignments WHERE profile_name = $1 ORDER BY device_id",
    )
    .bind(name)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(AssignmentView {
            device_id: r.try_get("device_id")?,
            state: r.try_get("state")?,
            detail: r.try_get("detail")?,
            updated_at: r.try_get("updated_at")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(ProfileView {
        name: name.to_string(),
        items,
        devices,
    }))
}

/// Assigns a profile to a device: queues its commands and starts the assignment over.
pub async fn assign(store: &Store, name: &str, device_id: &str) -> Result<bool, ServerError> {
    let Some(items) = items(store, name).await? else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM profile_commands WHERE profile_name = $1 AND device_id = $2")
        .bind(name)
        .bind(device_id)
        .execute(store.pool())
        .await?;
    for (i, item) in items.iter().enumerate() {
        let xml = item.command_xml().map_err(ServerError::Config)?;
        let id = store
            .enqueue_command(&[device_id.to_string()], &item.verb, &item.target, &xml)
            .await?;
        record_command(store, name, device_id, &id, "apply", i).await?;
    }
    set_state(store, name, device_id, "pending", "").await?;
    Ok(true)
}

async fn record_command(
    store: &Store,
    name: &str,
    device_id: &str,
    id: &str,
    phase: &str,
    index: usize,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO profile_commands (profile_name, device_id, command_uuid, phase, item_index) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(name)
    .bind(device_id)
    .bind(id)
    .bind(phase)
    .bind(index as i64)
    .execute(store.pool())
    .await?;
    Ok(())
}

async fn set_state(
    store: &Store,
    name: &str,
    device_id: &str,
    state: &str,
    detail: &str,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO profile_assignments (profile_name, device_id, state, detail, updated_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (profile_name, device_id) DO UPDATE SET state = excluded.state, detail = excluded.detail, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(device_id)
    .bind(state)
    .bind(detail)
    .bind(now())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// One queued command of an assignment and what the device answered.
struct Tracked {
    phase: String,
    index: usize,
    state: String,
    status: Option<String>,
    results: Option<String>,
}

fn is_success(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..300).contains(&c))
}

/// Moves the device's open assignments forward after a management message: failed on
/// an error status, verifying once every command is acknowledged (queuing the
/// read-back Gets), verified or failed once the read-backs are in.
pub async fn advance(store: &Store, device_id: &str) -> Result<(), ServerError> {
    let open: Vec<(String, String)> = sqlx::query_as(
        "SELECT profile_name, state FROM profile_assignments WHERE device_id = $1 AND state IN ('pending', 'verifying')",
    )
    .bind(device_id)
    .fetch_all(store.pool())
    .await?;
    for (name, state) in open {
        let Some(items) = items(store, &name).await? else {
            continue;
        };
        let tracked = tracked(store, &name, device_id).await?;
        let phase = if state == "pending" {
            "apply"
        } else {
            "verify"
        };
        let current: Vec<&Tracked> = tracked.iter().filter(|t| t.phase == phase).collect();
        if let Some(bad) = current
            .iter()
            .find(|t| t.state == "acknowledged" && !is_success(t.status.as_deref()))
        {
            let item = items.get(bad.index);
            let node = item
                .map(|i| {
                    if phase == "apply" {
                        i.target.clone()
                    } else {
                        i.readback_target()
                    }
                })
                .unwrap_or_default();
            let verb = if phase == "apply" {
                item.map(|i| i.verb.as_str()).unwrap_or("")
            } else {
                "Get"
            };
            let detail = format!(
                "{verb} {node} returned status {}",
                bad.status.as_deref().unwrap_or("?")
            );
            set_state(store, &name, device_id, "failed", &detail).await?;
            continue;
        }
        if current.iter().any(|t| t.state != "acknowledged") {
            continue;
        }
        if phase == "apply" {
            for (i, item) in items.iter().enumerate() {
                let raw =
                    crate::syncml::build_command("Get", &item.readback_target(), None, None, None)
                        .map_err(ServerError::Config)?;
                let (_, target, xml) =
                    crate::syncml::normalise_command(&raw).map_err(ServerError::Config)?;
                let id = store
                    .enqueue_command(&[device_id.to_string()], "Get", &target, &xml)
                    .await?;
                record_command(store, &name, device_id, &id, "verify", i).await?;
            }
            set_state(store, &name, device_id, "verifying", "").await?;
            continue;
        }
        let mismatch = current.iter().find_map(|t| {
            let item = items.get(t.index)?;
            let got = t
                .results
                .as_deref()
                .and_then(crate::syncml::results_data)
                .unwrap_or_default();
            (got.trim() != item.data.trim()).then(|| {
                format!(
                    "{} reads back {got:?}, expected {:?}",
                    item.readback_target(),
                    item.data
                )
            })
        });
        match mismatch {
            Some(detail) => set_state(store, &name, device_id, "failed", &detail).await?,
            None => set_state(store, &name, device_id, "verified", "").await?,
        }
    }
    Ok(())
}

async fn tracked(store: &Store, name: &str, device_id: &str) -> Result<Vec<Tracked>, ServerError> {
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
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Tracked {
                phase: r.try_get("phase")?,
                index: r.try_get::<i64, _>("item_index")? as usize,
                state: r.try_get("state")?,
                status: r.try_get("status_code")?,
                results: r.try_get("results")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(ServerError::from)
}
