//! The Orbit agent endpoints: `POST /api/fleet/orbit/enroll` and `POST /api/fleet/orbit/config`
//! (seed diagram, first two arrows). The node key issued here is later the
//! DeviceEnrollmentUserToken of MS-MDE2.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::respond::{json_error, parse_json};
use crate::model::HostRegistration;
use crate::paths::DISCOVERY_PATH;
use crate::protocol::orbit::Notification;
use crate::secret::{constant_time_eq, hash_node_key, new_node_key};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
struct EnrollRequest {
    enroll_secret: String,
    hardware_uuid: String,
    #[serde(default)]
    hardware_serial: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    platform: String,
}

/// `POST /api/fleet/orbit/enroll`: a valid enroll secret earns a node key.
pub async fn enroll(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let req: EnrollRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if !constant_time_eq(
        req.enroll_secret.as_bytes(),
        state.config.enroll_secret.as_bytes(),
    ) {
        tracing::info!(hardware_uuid = %req.hardware_uuid, "orbit enroll refused: invalid enroll secret");
        return json_error(StatusCode::UNAUTHORIZED, "invalid enroll secret");
    }
    let hardware_uuid = match crate::protocol::orbit::check_hardware_uuid(&req.hardware_uuid) {
        Ok(h) => h,
        Err(why) => {
            tracing::info!(hardware_uuid = %req.hardware_uuid.trim(), why, "orbit enroll refused");
            return json_error(StatusCode::BAD_REQUEST, why);
        }
    };
    let node_key = new_node_key();
    let hash = hash_node_key(&node_key);
    match state
        .store
        .upsert_host(HostRegistration {
            hardware_uuid,
            hardware_serial: &req.hardware_serial,
            hostname: &req.hostname,
            platform: &req.platform,
            node_key_hash: &hash,
        })
        .await
    {
        Ok(host_uuid) => {
            tracing::info!(%host_uuid, hardware_uuid, "orbit host enrolled");
            Json(json!({ "orbit_node_key": node_key })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "orbit enroll: storage failure");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "storage failure")
        }
    }
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    orbit_node_key: String,
}

/// `POST /api/fleet/orbit/config`: pending notifications. A host without an active MDM
/// enrollment is asked to enroll; one the server wants out is asked to unenroll.
pub async fn config(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let req: ConfigRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let host = match state
        .store
        .host_by_node_key_hash(&hash_node_key(&req.orbit_node_key))
        .await
    {
        Ok(Some(h)) if state.node_key_expired(&h) => {
            return json_error(StatusCode::UNAUTHORIZED, "node key expired: enroll again")
        }
        Ok(Some(h)) => h,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "invalid node key"),
        Err(e) => {
            tracing::error!(error = %e, "orbit config: storage failure");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "storage failure");
        }
    };
    let mdm_state = match state.store.host_enrollment_state(&host.host_uuid).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "orbit config: storage failure");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "storage failure");
        }
    };
    if let Err(e) = state.store.touch_host(&host.host_uuid).await {
        tracing::warn!(error = %e, "orbit config: could not record last seen");
    }
    let notifications = match crate::protocol::orbit::notification(mdm_state) {
        Notification::Nothing => json!({}),
        Notification::Unenroll => json!({ "needs_programmatic_windows_mdm_unenrollment": true }),
        Notification::Enroll => json!({
            "needs_programmatic_windows_mdm_enrollment": true,
            "windows_mdm_discovery_endpoint": state.url(DISCOVERY_PATH),
        }),
    };
    Json(json!({ "notifications": notifications })).into_response()
}
