//! Profile steps: create, assign and check a profile through the admin API.

use super::*;

pub(super) async fn run(ctx: &mut Context<'_>, step: &Step) -> StepResult {
    match step {
        Step::CreateProfile { name, items } => {
            let body = serde_json::json!({ "name": name, "items": items });
            admin(ctx, reqwest::Method::POST, "/api/v1/profiles", Some(body)).await?;
            Ok(format!("profile {name} with {} item(s)", items.len()))
        }
        Step::AssignProfile { name } => {
            let body = serde_json::json!({ "device_ids": [ctx.device.device_id()] });
            admin(
                ctx,
                reqwest::Method::POST,
                &format!("/api/v1/profiles/{name}/assign"),
                Some(body),
            )
            .await?;
            Ok(format!("profile {name} assigned"))
        }
        Step::CheckProfile {
            name,
            expect_state,
            expect_detail_contains,
        } => {
            let v = admin(
                ctx,
                reqwest::Method::GET,
                &format!("/api/v1/profiles/{name}"),
                None,
            )
            .await?;
            let device_id = ctx.device.device_id();
            let d = v["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["device_id"] == device_id)
                .ok_or_else(|| format!("profile {name} is not assigned to this device"))?;
            let state = d["state"].as_str().unwrap_or("");
            let detail = d["detail"].as_str().unwrap_or("");
            if state != expect_state {
                return Err(format!(
                    "profile {name} is {state:?} ({detail}), expected {expect_state:?}"
                ));
            }
            if let Some(text) = expect_detail_contains {
                if !detail.contains(text.as_str()) {
                    return Err(format!("profile detail {detail:?} lacks {text:?}"));
                }
            }
            Ok(if detail.is_empty() {
                state.to_string()
            } else {
                format!("{state}: {detail}")
            })
        }
        _ => Err("not a profiles step".into()),
    }
}
