//! Admin REST API (JSON, bearer token): list devices, queue commands, read results.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::orbit::{constant_time_eq, json_error};

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = state.config.admin_token.as_deref() else {
        return Err(json_error(StatusCode::NOT_FOUND, "the admin API is disabled (start the server with --admin-token)"));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if presented.is_empty() || !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(json_error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"));
    }
    Ok(())
}

fn storage_error(e: crate::error::ServerError) -> Response {
    tracing::error!(error = %e, "admin API: storage failure");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "storage failure")
}

/// `GET /api/v1/devices`.
pub async fn list_devices(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    match state.store.list_enrollments().await {
        Ok(devices) => Json(json!({ "devices": devices })).into_response(),
        Err(e) => storage_error(e),
    }
}

/// Body of `POST /api/v1/devices/{device_id}/commands`: raw SyncML or the parts of one.
#[derive(Debug, Deserialize)]
struct NewCommand {
    syncml: Option<String>,
    verb: Option<String>,
    target: Option<String>,
    format: Option<String>,
    #[serde(rename = "type")]
    mime_type: Option<String>,
    data: Option<String>,
}

/// `POST /api/v1/devices/{device_id}/commands`.
pub async fn queue_command(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    let cmd: NewCommand = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let raw = match (&cmd.syncml, &cmd.verb, &cmd.target) {
        (Some(raw), None, None) => raw.clone(),
        (None, Some(verb), Some(target)) => match crate::syncml::build_command(
            verb,
            target,
            cmd.format.as_deref(),
            cmd.mime_type.as_deref(),
            cmd.data.as_deref(),
        ) {
            Ok(x) => x,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
        },
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "give either \"syncml\" or \"verb\" and \"target\"",
            )
        }
    };
    let (verb, target, xml) = match crate::syncml::normalise_command(&raw) {
        Ok(v) => v,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    match state.store.enrollment(&device_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return json_error(StatusCode::NOT_FOUND, format!("no device {device_id:?}")),
        Err(e) => return storage_error(e),
    }
    match state.store.enqueue_command(&device_id, &verb, &target, &xml).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "command_id": id }))).into_response(),
        Err(e) => storage_error(e),
    }
}

/// `GET /api/v1/commands/{command_id}`.
pub async fn get_command(
    State(state): State<Arc<AppState>>,
    Path(command_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return r;
    }
    match state.store.command(&command_id).await {
        Ok(Some(c)) => Json(c).into_response(),
        Ok(None) => json_error(StatusCode::NOT_FOUND, format!("no command {command_id:?}")),
        Err(e) => storage_error(e),
    }
}
