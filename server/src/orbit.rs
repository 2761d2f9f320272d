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
use sha2::{Digest, Sha256};

use crate::app::AppState;

/// A JSON error body `{"error": message}` with the given status.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// SHA-256 of a node key, hex: node keys are stored only in this form.
pub fn hash_node_key(node_key: &str) -> String {
    hex::encode(Sha256::digest(node_key.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let da = Sha256::digest(a);
    let db = Sha256::digest(b);
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Parses a JSON request body; a bad one is a 400 with a JSON error.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

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
    let hardware_uuid = req.hardware_uuid.trim();
    if hardware_uuid.is_empty() || hardware_uuid.len() > 128 {
        return json_error(
            StatusCode::BAD_REQUEST,
            "hardware_uuid is required (at most 128 characters)",
        );
    }
    // Enrollment users' hosts are keyed `user:<name>`: an agent claiming such a key would
    // get a node key for that user's host and, with it, the user's devices.
    if hardware_uuid.starts_with(crate::enroll::USER_HOST_PREFIX) {
        tracing::info!(
            hardware_uuid,
            "orbit enroll refused: reserved hardware_uuid"
        );
        return json_error(
            StatusCode::BAD_REQUEST,
            "hardware_uuid may not start with \"user:\" (reserved for enrollment users)",
        );
    }
    let node_key = hex::encode(rand::random::<[u8; 24]>());
    match state
        .store
        .upsert_host(
            hardware_uuid,
            &req.hardware_serial,
            &req.hostname,
            &req.platform,
            &hash_node_key(&node_key),
        )
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
    let notifications = match mdm_state.as_deref() {
        Some("enrolled") => json!({}),
        Some("unenroll_pending") => json!({ "needs_programmatic_windows_mdm_unenrollment": true }),
        _ => json!({
            "needs_programmatic_windows_mdm_enrollment": true,
            "windows_mdm_discovery_endpoint": state.url(crate::app::DISCOVERY_PATH),
        }),
    };
    Json(json!({ "notifications": notifications })).into_response()
}
