//! Profiles in a chaos run: a few Policy CSP profiles on disjoint nodes, assigned to
//! random devices (each profile at most once per device), and the check of each
//! device's assignment state on the server against the device's own tree.
//!
//! Consistent means, for every assignment the server holds for a device that synced
//! after the drain (the emulated device accepts every item, so each assignment can only
//! end `verified`):
//! - `profile_settled`: the assignment is `verified`: not `pending` or `verifying` (left
//!   open although the device answered every command of it), not `failed`; and every
//!   assignment the admin API acknowledged (202) exists;
//! - `profile_matches_tree`: an assignment reported `verified` has every item's value
//!   on the device's `Policy/Config` node (what the device applied).

use std::collections::BTreeMap;

use fake_windows_client::Device;
use rand::Rng;
use serde_json::{json, Value};

use super::{Run, Violation};

/// (profile name, [(Policy CSP Config node, int value)]).
const PROFILES: [(&str, &[(&str, &str)]); 3] = [
    (
        "chaos-camera",
        &[("./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera", "0")],
    ),
    (
        "chaos-lock",
        &[
            (
                "./Device/Vendor/MSFT/Policy/Config/DeviceLock/MinDevicePasswordLength",
                "8",
            ),
            (
                "./Device/Vendor/MSFT/Policy/Config/DeviceLock/MaxInactivityTimeDeviceLock",
                "15",
            ),
        ],
    ),
    (
        "chaos-history",
        &[
            (
                "./Device/Vendor/MSFT/Policy/Config/DeviceLock/DevicePasswordHistory",
                "5",
            ),
            (
                "./Device/Vendor/MSFT/Policy/Config/DeviceLock/DevicePasswordExpiration",
                "90",
            ),
        ],
    ),
];

/// The device's node path for a profile target (the emulated device stores
/// `./Device/Vendor/...` as `./Vendor/...`).
fn tree_path(target: &str) -> String {
    fake_windows_client::csp::normalise(target).unwrap_or_else(|| target.to_string())
}

/// The device's Policy CSP nodes and their values, at the end of the run.
pub(super) fn policy_nodes(d: &Device) -> BTreeMap<String, String> {
    d.nodes()
        .nodes
        .iter()
        .filter(|(k, _)| k.starts_with("./Vendor/MSFT/Policy/"))
        .map(|(k, v)| (k.clone(), v.data.clone().unwrap_or_default()))
        .collect()
}

async fn admin_status(run: &Run, url: &str, body: &Value) -> Option<u16> {
    Some(super::admin_send(run, url, body).await?.status().as_u16())
}

/// Saves every profile; true once the admin API saved them all.
pub(super) async fn save_all(run: &Run) -> bool {
    let url = format!("{}/api/v1/profiles", run.target.server_url);
    for (name, items) in PROFILES {
        let items: Vec<Value> = items
            .iter()
            .map(|(target, data)| {
                json!({ "verb": "Replace", "target": target, "format": "int", "data": data })
            })
            .collect();
        let body = json!({ "name": name, "items": items });
        if admin_status(run, &url, &body).await != Some(201) {
            return false;
        }
    }
    true
}

/// Assigns a random profile to up to four devices that never had it asked for.
pub(super) async fn assign_some(run: &Run, devices: &[String], rng: &mut impl Rng) {
    let (name, _) = PROFILES[rng.gen_range(0..PROFILES.len())];
    let chosen: Vec<String> = {
        let Ok(mut asked) = run.assignment_requests.lock() else {
            return;
        };
        let mut chosen = Vec::new();
        for _ in 0..rng.gen_range(1..=4) {
            let d = &devices[rng.gen_range(0..devices.len())];
            if asked.insert((name.to_string(), d.clone())) {
                chosen.push(d.clone());
            }
        }
        chosen
    };
    if chosen.is_empty() {
        return;
    }
    let url = format!("{}/api/v1/profiles/{name}/assign", run.target.server_url);
    let body = json!({ "device_ids": chosen });
    if admin_status(run, &url, &body).await == Some(202) {
        if let Ok(mut a) = run.assignments.lock() {
            a.extend(chosen.into_iter().map(|d| (name.to_string(), d)));
        }
    }
}

/// `GET /api/v1/profiles/{name}`; None while the server does not answer.
async fn view(run: &Run, name: &str) -> Option<Value> {
    let token = run.target.admin_token.as_deref()?;
    let url = format!("{}/api/v1/profiles/{name}", run.target.server_url);
    let resp = run.admin.get(url).bearer_auth(token).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    serde_json::from_str(&resp.text().await.ok()?).ok()
}

/// Whether every assignment the server holds has ended (verified or failed).
pub(super) async fn settled(run: &Run) -> bool {
    let expected = run.assignments.lock().map(|a| a.len()).unwrap_or(0);
    if expected == 0 {
        return true;
    }
    for (name, _) in PROFILES {
        let Some(v) = view(run, name).await else {
            return false;
        };
        let open = v["devices"].as_array().is_some_and(|ds| {
            ds.iter()
                .any(|d| d["state"] == "pending" || d["state"] == "verifying")
        });
        if open {
            return false;
        }
    }
    true
}

/// The profile invariants for the devices whose final tree is known (`trees`).
pub(super) async fn check(
    run: &Run,
    trees: &BTreeMap<String, BTreeMap<String, String>>,
    passed: &mut BTreeMap<&'static str, u64>,
    violations: &mut Vec<Violation>,
) -> usize {
    let acknowledged = run
        .assignments
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let mut checked = 0;
    for (name, items) in PROFILES {
        let v = view(run, name).await;
        let states: BTreeMap<String, Value> = v
            .as_ref()
            .and_then(|v| v["devices"].as_array())
            .map(|ds| {
                ds.iter()
                    .filter_map(|d| Some((d["device_id"].as_str()?.to_string(), d.clone())))
                    .collect()
            })
            .unwrap_or_default();
        for (profile, device) in acknowledged.iter().filter(|(p, _)| p == name) {
            if !states.contains_key(device) {
                *passed.entry("profile_settled").or_default() += 1;
                violations.push(Violation {
                    invariant: "profile_settled",
                    device_id: device.clone(),
                    detail: format!("the assignment of {profile} acknowledged by the admin API is unknown to the server"),
                    excerpt: v.as_ref().map(Value::to_string).unwrap_or_default().chars().take(600).collect(),
                });
            }
        }
        for (device, a) in &states {
            let Some(tree) = trees.get(device) else {
                continue;
            };
            checked += 1;
            let state = a["state"].as_str().unwrap_or("");
            let excerpt: String = a.to_string().chars().take(600).collect();
            *passed.entry("profile_settled").or_default() += 1;
            if state != "verified" {
                violations.push(Violation {
                    invariant: "profile_settled",
                    device_id: device.clone(),
                    detail: format!(
                        "profile {name} is {state:?} after the drain and the device's last session"
                    ),
                    excerpt: excerpt.clone(),
                });
            }
            *passed.entry("profile_matches_tree").or_default() += 1;
            let differs = items.iter().find(|(target, data)| {
                tree.get(&tree_path(target)).map(String::as_str) != Some(*data)
            });
            if let (Some((target, data)), "verified") = (differs, state) {
                violations.push(Violation {
                    invariant: "profile_matches_tree",
                    device_id: device.clone(),
                    detail: format!(
                        "profile {name} is verified but the device's {target} holds {:?}, not {data:?}",
                        tree.get(&tree_path(target))
                    ),
                    excerpt,
                });
            }
        }
    }
    checked
}
