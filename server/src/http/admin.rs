//! Admin REST API (JSON, bearer token): list devices, queue commands, read results.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::respond::{json_error, parse_json};
use crate::model::{EnrollmentState, NewCommand};
use crate::secret::constant_time_eq;
use crate::service::profiles::{AssignOutcome, SaveOutcome};
use crate::state::AppState;

/// Middleware on every admin route: the bearer token must match `--admin-token`
/// (compared in constant time); without one configured the API is off (404).
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&state, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(r) => r,
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = state.config.admin_token.as_deref() else {
        return Err(json_error(
            StatusCode::NOT_FOUND,
            "the admin API is disabled (start the server with --admin-token)",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if presented.is_empty() || !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token",
        ));
    }
    Ok(())
}

fn storage_error(e: crate::error::ServerError) -> Response {
    tracing::error!(error = %e, "admin API: storage failure");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "storage failure")
}

/// `GET /api/v1/devices`.
pub async fn list_devices(State(state): State<Arc<AppState>>) -> Response {
    match state.store.list_enrollments().await {
        Ok(devices) => Json(json!({ "devices": devices })).into_response(),
        Err(e) => storage_error(e),
    }
}

/// A command to queue: raw SyncML (`{"syncml": "<Get>...</Get>"}`) or its parts
/// (`{"verb": "Get", "target": "./DevDetail/SwV"}` plus `format`, `type`, `data`).
/// `device_ids` is used by `POST /api/v1/commands`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRequest {
    syncml: Option<String>,
    verb: Option<String>,
    target: Option<String>,
    format: Option<String>,
    #[serde(rename = "type")]
    mime_type: Option<String>,
    data: Option<String>,
    #[serde(default)]
    device_ids: Vec<String>,
}

impl CommandRequest {
    /// (verb, target, stored XML) or a message saying what is wrong.
    fn normalise(&self) -> Result<(crate::model::Verb, String, String), String> {
        let raw = match (&self.syncml, &self.verb, &self.target) {
            (Some(raw), None, None) => raw.clone(),
            (None, Some(verb), Some(target)) => crate::syncml::build_command(
                verb,
                target,
                self.format.as_deref(),
                self.mime_type.as_deref(),
                self.data.as_deref(),
            )?,
            _ => return Err("give either \"syncml\" or \"verb\" and \"target\"".into()),
        };
        crate::syncml::normalise_command(&raw)
    }
}

async fn enqueue(state: &AppState, device_ids: &[String], cmd: &CommandRequest) -> Response {
    let (verb, target, xml) = match cmd.normalise() {
        Ok(v) => v,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    if device_ids.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "no device_ids given");
    }
    if let Err(r) = require_devices(state, device_ids).await {
        return r;
    }
    match state
        .store
        .enqueue_command(
            device_ids,
            NewCommand {
                verb,
                target: &target,
                body_xml: &xml,
            },
        )
        .await
    {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "command_id": id }))).into_response(),
        Err(e) => storage_error(e),
    }
}

/// Every DeviceID must be an enrolled device (404 naming the first that is not).
async fn require_devices(state: &AppState, device_ids: &[String]) -> Result<(), Response> {
    match state.store.first_unknown_device(device_ids).await {
        Ok(None) => Ok(()),
        Ok(Some(id)) => Err(json_error(
            StatusCode::NOT_FOUND,
            format!("no device {id:?}"),
        )),
        Err(e) => Err(storage_error(e)),
    }
}

/// `POST /api/v1/devices/{device_id}/commands`.
pub async fn queue_command(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_json::<CommandRequest>(&body) {
        Ok(cmd) if cmd.device_ids.is_empty() => enqueue(&state, &[device_id], &cmd).await,
        Ok(_) => json_error(
            StatusCode::BAD_REQUEST,
            "device_ids belongs in POST /api/v1/commands",
        ),
        Err(r) => r,
    }
}

/// `POST /api/v1/commands`: the same command for every device in `device_ids`.
pub async fn queue_command_many(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match parse_json::<CommandRequest>(&body) {
        Ok(cmd) => enqueue(&state, &cmd.device_ids, &cmd).await,
        Err(r) => r,
    }
}

/// `DELETE /api/v1/commands/{command_id}`: cancels deliveries not yet sent.
pub async fn cancel_command(
    State(state): State<Arc<AppState>>,
    Path(command_id): Path<String>,
) -> Response {
    match state.store.cancel_command(&command_id).await {
        Ok(n) => match state.store.command(&command_id).await {
            Ok(Some(view)) => Json(json!({ "cancelled": n, "command": view })).into_response(),
            Ok(None) => json_error(StatusCode::NOT_FOUND, format!("no command {command_id:?}")),
            Err(e) => storage_error(e),
        },
        Err(e) => storage_error(e),
    }
}

/// `GET /api/v1/commands/{command_id}`.
pub async fn get_command(
    State(state): State<Arc<AppState>>,
    Path(command_id): Path<String>,
) -> Response {
    match state.store.command(&command_id).await {
        Ok(Some(c)) => Json(c).into_response(),
        Ok(None) => json_error(StatusCode::NOT_FOUND, format!("no command {command_id:?}")),
        Err(e) => storage_error(e),
    }
}

/// `POST /api/v1/devices/{device_id}/unenroll`: asks the device to leave MDM, through
/// the Orbit notification `needs_programmatic_windows_mdm_unenrollment` and an `Exec`
/// on `./Vendor/MSFT/DMClient/Provider/<ProviderID>/Unenroll` (DMClient CSP).
pub async fn unenroll_device(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
) -> Response {
    match state.store.enrollment(&device_id).await {
        Ok(Some(e)) if e.state == EnrollmentState::Enrolled => {}
        Ok(Some(e)) => {
            return json_error(
                StatusCode::CONFLICT,
                format!("device is {}, not enrolled", e.state),
            )
        }
        Ok(None) => return json_error(StatusCode::NOT_FOUND, format!("no device {device_id:?}")),
        Err(e) => return storage_error(e),
    }
    let (verb, target, xml) =
        match crate::protocol::delivery::unenroll_command(&state.config.provider_id) {
            Ok(v) => v,
            Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    let queued = state
        .store
        .request_unenroll(
            &device_id,
            NewCommand {
                verb,
                target: &target,
                body_xml: &xml,
            },
        )
        .await;
    match queued {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "command_id": id }))).into_response(),
        Err(e) => storage_error(e),
    }
}

/// `POST /api/v1/devices/{device_id}/release`: ends an enrollment at once, without the
/// device's cooperation (a device that is gone, or one whose hardware changed), so that
/// another host or account may enroll the DeviceID. Its certificates stop authenticating
/// and its pending commands are cancelled. Unlike `unenroll`, nothing is sent to the
/// device.
pub async fn release_device(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
) -> Response {
    match state.store.enrollment(&device_id).await {
        Ok(Some(e)) if e.state == EnrollmentState::Unenrolled => {
            return json_error(StatusCode::CONFLICT, "device is already unenrolled")
        }
        Ok(Some(_)) => {}
        Ok(None) => return json_error(StatusCode::NOT_FOUND, format!("no device {device_id:?}")),
        Err(e) => return storage_error(e),
    }
    match state
        .store
        .set_enrollment_state(&device_id, EnrollmentState::Unenrolled)
        .await
    {
        Ok(()) => {
            tracing::info!(%device_id, "enrollment released by an administrator");
            Json(json!({ "device_id": device_id, "state": EnrollmentState::Unenrolled }))
                .into_response()
        }
        Err(e) => storage_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProfile {
    name: String,
    items: Vec<crate::model::ProfileItem>,
}

/// `POST /api/v1/profiles`: creates or replaces a profile.
pub async fn save_profile(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let p: NewProfile = match parse_json(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match crate::service::profiles::save(&state.store, &p.name, &p.items).await {
        Ok(SaveOutcome::Saved) => {
            (StatusCode::CREATED, Json(json!({ "name": p.name }))).into_response()
        }
        Ok(SaveOutcome::Refused(e)) => json_error(StatusCode::BAD_REQUEST, e),
        Err(e) => storage_error(e),
    }
}

/// `GET /api/v1/profiles/{name}`: the profile and each device's state.
pub async fn get_profile(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.store.profile_view(&name).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => json_error(StatusCode::NOT_FOUND, format!("no profile {name:?}")),
        Err(e) => storage_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    device_ids: Vec<String>,
}

/// `POST /api/v1/profiles/{name}/assign` with `{"device_ids": [...]}`.
pub async fn assign_profile(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let a: Assignment = match parse_json(&body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(r) = require_devices(&state, &a.device_ids).await {
        return r;
    }
    match crate::service::profiles::assign(&state.store, &name, &a.device_ids).await {
        Ok(AssignOutcome::Assigned) => {}
        Ok(AssignOutcome::NoSuchProfile) => {
            return json_error(StatusCode::NOT_FOUND, format!("no profile {name:?}"))
        }
        Err(e) => return storage_error(e),
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({ "name": name, "device_ids": a.device_ids })),
    )
        .into_response()
}
