//! Admin REST API (JSON, bearer token): list devices, queue commands, read results.
//! Each handler's `#[utoipa::path]` describes it in the OpenAPI document
//! ([`super::admin_api`], which also holds the route table); every refusal has the one
//! error shape of [`super::admin_error`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin_error::{admin_error, parse_json, ErrorCode};
use crate::model::{CommandView, Enrollment, EnrollmentState, NewCommand, ProfileView};
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
    match authorize(&state, req.uri().path(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(r) => r,
    }
}

/// `--metrics-token` opens `GET /metrics` only: a scraper need not hold the admin token.
fn authorize(state: &AppState, path: &str, headers: &HeaderMap) -> Result<(), Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let metrics_token = state.config.metrics_token.as_deref();
    if let Some(m) = metrics_token.filter(|_| path == super::admin_api::METRICS_PATH) {
        if !presented.is_empty() && constant_time_eq(presented.as_bytes(), m.as_bytes()) {
            return Ok(());
        }
        if state.config.admin_token.is_none() {
            return Err(unauthorized());
        }
    }
    let Some(expected) = state.config.admin_token.as_deref() else {
        return Err(admin_error(
            StatusCode::NOT_FOUND,
            ErrorCode::AdminApiDisabled,
            "the admin API is disabled (start the server with --admin-token)",
        ));
    };
    if presented.is_empty() || !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return Err(unauthorized());
    }
    Ok(())
}

fn unauthorized() -> Response {
    admin_error(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "missing or invalid bearer token",
    )
}

fn storage_error(e: crate::error::ServerError) -> Response {
    tracing::error!(error = %e, "admin API: storage failure");
    admin_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::StorageFailure,
        "storage failure",
    )
}

/// Every enrollment.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<Enrollment>,
}

/// The id of a queued command (`GET /api/v1/commands/{command_id}` follows it).
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    pub command_id: String,
}

/// Lists every enrollment (`GET /api/v1/devices`).
#[utoipa::path(get, path = "/api/v1/devices", summary = "List the enrollments", tag = "devices",
    responses((status = 200, description = "Every enrollment", body = DeviceList), super::admin_api::Auth, super::admin_api::Storage))]
pub async fn list_devices(State(state): State<Arc<AppState>>) -> Response {
    match state.store.list_enrollments().await {
        Ok(devices) => Json(DeviceList { devices }).into_response(),
        Err(e) => storage_error(e),
    }
}

/// A command to queue: raw SyncML (`{"syncml": "<Get>...</Get>"}`) or its parts
/// (`{"verb": "Get", "target": "./DevDetail/SwV"}` plus `format`, `type`, `data`).
/// `device_ids` is used by `POST /api/v1/commands`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// A whole SyncML command element (`<Get><CmdID>..</CmdID>..</Get>`).
    syncml: Option<String>,
    /// `Get`, `Replace`, `Add`, `Delete` or `Exec`, with `target`.
    verb: Option<String>,
    /// The node's URI (`./DevDetail/SwV`).
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
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidCommand, e),
    };
    if device_ids.is_empty() {
        return admin_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "no device_ids given",
        );
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
        Ok(command_id) => (StatusCode::CREATED, Json(Queued { command_id })).into_response(),
        Err(e) => storage_error(e),
    }
}

/// Every DeviceID must be an enrolled device (404 naming the first that is not).
async fn require_devices(state: &AppState, device_ids: &[String]) -> Result<(), Response> {
    match state.store.first_unknown_device(device_ids).await {
        Ok(None) => Ok(()),
        Ok(Some(id)) => Err(no_device(&id)),
        Err(e) => Err(storage_error(e)),
    }
}

fn no_device(id: &str) -> Response {
    admin_error(
        StatusCode::NOT_FOUND,
        ErrorCode::DeviceNotFound,
        format!("no device {id:?}"),
    )
}

fn no_command(id: &str) -> Response {
    admin_error(
        StatusCode::NOT_FOUND,
        ErrorCode::CommandNotFound,
        format!("no command {id:?}"),
    )
}

fn no_profile(name: &str) -> Response {
    admin_error(
        StatusCode::NOT_FOUND,
        ErrorCode::ProfileNotFound,
        format!("no profile {name:?}"),
    )
}

/// Queues a command for one device (`POST /api/v1/devices/{device_id}/commands`).
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/commands", summary = "Queue a command for one device", tag = "commands",
    params(("device_id" = String, Path, description = "The device's DeviceID")),
    request_body = CommandRequest,
    responses((status = 201, description = "Queued", body = Queued), super::admin_api::BadRequest, super::admin_api::NotFound, super::admin_api::Auth, super::admin_api::Storage))]
pub async fn queue_command(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    body: Bytes,
) -> Response {
    match parse_json::<CommandRequest>(&body) {
        Ok(cmd) if cmd.device_ids.is_empty() => enqueue(&state, &[device_id], &cmd).await,
        Ok(_) => admin_error(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "device_ids belongs in POST /api/v1/commands",
        ),
        Err(r) => r,
    }
}

/// `POST /api/v1/commands`: the same command for every device in `device_ids`.
#[utoipa::path(post, path = "/api/v1/commands", summary = "Queue one command for several devices", tag = "commands",
    request_body = CommandRequest,
    responses((status = 201, description = "Queued for every device", body = Queued), super::admin_api::BadRequest, super::admin_api::NotFound, super::admin_api::Auth, super::admin_api::Storage))]
pub async fn queue_command_many(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match parse_json::<CommandRequest>(&body) {
        Ok(cmd) => enqueue(&state, &cmd.device_ids, &cmd).await,
        Err(r) => r,
    }
}

/// How many deliveries a cancellation withdrew, and the command now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    pub cancelled: u64,
    pub command: CommandView,
}

/// `DELETE /api/v1/commands/{command_id}`: cancels deliveries not yet sent.
#[utoipa::path(delete, path = "/api/v1/commands/{command_id}", summary = "Cancel the deliveries not yet sent", tag = "commands",
    params(("command_id" = String, Path, description = "The id `POST` returned")),
    responses((status = 200, description = "Deliveries not yet sent are cancelled", body = Cancelled), super::admin_api::NotFound, super::admin_api::Auth, super::admin_api::Storage))]
pub async fn cancel_command(
    State(state): State<Arc<AppState>>,
    Path(command_id): Path<String>,
) -> Response {
    match state.store.cancel_command(&command_id).await {
        Ok(n) => match state.store.command(&command_id).await {
            Ok(Some(command)) => Json(Cancelled {
                cancelled: n,
                command,
            })
            .into_response(),
            Ok(None) => no_command(&command_id),
            Err(e) => storage_error(e),
        },
        Err(e) => storage_error(e),
    }
}

/// A command and each device's delivery and answers (`GET /api/v1/commands/{command_id}`).
#[utoipa::path(get, path = "/api/v1/commands/{command_id}", summary = "Read a command and its deliveries", tag = "commands",
    params(("command_id" = String, Path, description = "The id `POST` returned")),
    responses((status = 200, description = "The command and each device's delivery", body = CommandView), super::admin_api::NotFound, super::admin_api::Auth, super::admin_api::Storage))]
pub async fn get_command(
    State(state): State<Arc<AppState>>,
    Path(command_id): Path<String>,
) -> Response {
    match state.store.command(&command_id).await {
        Ok(Some(c)) => Json(c).into_response(),
        Ok(None) => no_command(&command_id),
        Err(e) => storage_error(e),
    }
}

/// `POST /api/v1/devices/{device_id}/unenroll`: asks the device to leave MDM, through
/// the Orbit notification `needs_programmatic_windows_mdm_unenrollment` and an `Exec`
/// on `./Vendor/MSFT/DMClient/Provider/<ProviderID>/Unenroll` (DMClient CSP).
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/unenroll", summary = "Ask a device to unenroll",
    description = "Sends the Orbit notification `needs_programmatic_windows_mdm_unenrollment` and queues an `Exec` on `./Vendor/MSFT/DMClient/Provider/<ProviderID>/Unenroll` (DMClient CSP); the enrollment is `unenroll_pending` until the device acknowledges.", tag = "devices",
    params(("device_id" = String, Path, description = "The device's DeviceID")),
    responses((status = 202, description = "The unenroll command is queued", body = Queued), super::admin_api::NotFound, super::admin_api::Conflict, super::admin_api::Auth, super::admin_api::Storage))]
pub async fn unenroll_device(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
) -> Response {
    match state.store.enrollment(&device_id).await {
        Ok(Some(e)) if e.state == EnrollmentState::Enrolled => {}
        Ok(Some(e)) => {
            return admin_error(
                StatusCode::CONFLICT,
                ErrorCode::DeviceNotEnrolled,
                format!("device is {}, not enrolled", e.state),
            )
        }
        Ok(None) => return no_device(&device_id),
        Err(e) => return storage_error(e),
    }
    let (verb, target, xml) =
        match crate::protocol::delivery::unenroll_command(&state.config.provider_id) {
            Ok(v) => v,
            Err(e) => {
                return admin_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::InternalError,
                    e,
                )
            }
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
        Ok(command_id) => (StatusCode::ACCEPTED, Json(Queued { command_id })).into_response(),
        Err(e) => storage_error(e),
    }
}

/// `POST /api/v1/devices/{device_id}/release`: ends an enrollment at once, without the
/// device's cooperation (a device that is gone, or one whose hardware changed), so that
/// another host or account may enroll the DeviceID. Its certificates stop authenticating
/// and its pending commands are cancelled. Unlike `unenroll`, nothing is sent to the
/// device.
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/release", summary = "End an enrollment without the device",
    description = "Ends the enrollment at once (a device that is gone, or whose hardware changed), so that another host or account may enroll the DeviceID; its certificates stop authenticating and its pending commands are cancelled. Nothing is sent to the device.", tag = "devices",
    params(("device_id" = String, Path, description = "The device's DeviceID")),
    responses((status = 200, description = "The enrollment is ended", body = Released), super::admin_api::NotFound, super::admin_api::Conflict, super::admin_api::Auth, super::admin_api::Storage))]
pub async fn release_device(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
) -> Response {
    match state.store.enrollment(&device_id).await {
        Ok(Some(e)) if e.state == EnrollmentState::Unenrolled => {
            return admin_error(
                StatusCode::CONFLICT,
                ErrorCode::DeviceAlreadyUnenrolled,
                "device is already unenrolled",
            )
        }
        Ok(Some(_)) => {}
        Ok(None) => return no_device(&device_id),
        Err(e) => return storage_error(e),
    }
    match state
        .store
        .set_enrollment_state(&device_id, EnrollmentState::Unenrolled)
        .await
    {
        Ok(()) => {
            tracing::info!(%device_id, "enrollment released by an administrator");
            Json(Released {
                device_id,
                state: EnrollmentState::Unenrolled,
            })
            .into_response()
        }
        Err(e) => storage_error(e),
    }
}

/// A released enrollment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Released {
    pub device_id: String,
    pub state: EnrollmentState,
}

/// A profile to save.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProfile {
    name: String,
    items: Vec<crate::model::ProfileItem>,
}

/// A saved profile's name.
#[derive(Debug, Serialize, ToSchema)]
pub struct Saved {
    pub name: String,
}

/// `POST /api/v1/profiles`: creates or replaces a profile.
#[utoipa::path(post, path = "/api/v1/profiles", summary = "Create or replace a profile", tag = "profiles",
    request_body = NewProfile,
    responses((status = 201, description = "Saved", body = Saved), super::admin_api::BadRequest, super::admin_api::Auth, super::admin_api::Storage))]
pub async fn save_profile(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let p: NewProfile = match parse_json(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match crate::service::profiles::save(&state.store, &p.name, &p.items).await {
        Ok(SaveOutcome::Saved) => {
            (StatusCode::CREATED, Json(Saved { name: p.name })).into_response()
        }
        Ok(SaveOutcome::Refused(e)) => {
            admin_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidProfile, e)
        }
        Err(e) => storage_error(e),
    }
}

/// `GET /api/v1/profiles/{name}`: the profile and each device's state.
#[utoipa::path(get, path = "/api/v1/profiles/{name}", summary = "Read a profile and its assignments", tag = "profiles",
    params(("name" = String, Path, description = "The profile's name")),
    responses((status = 200, description = "The profile and each device's assignment", body = ProfileView), super::admin_api::NotFound, super::admin_api::Auth, super::admin_api::Storage))]
pub async fn get_profile(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.store.profile_view(&name).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => no_profile(&name),
        Err(e) => storage_error(e),
    }
}

/// Devices to assign a profile to (and, in the answer, the profile's name).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    device_ids: Vec<String>,
}

/// An accepted assignment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Assigned {
    pub name: String,
    pub device_ids: Vec<String>,
}

/// `POST /api/v1/profiles/{name}/assign` with `{"device_ids": [...]}`.
#[utoipa::path(post, path = "/api/v1/profiles/{name}/assign", summary = "Assign a profile to devices", tag = "profiles",
    params(("name" = String, Path, description = "The profile's name")),
    request_body = Assignment,
    responses((status = 202, description = "The profile's commands are queued", body = Assigned), super::admin_api::BadRequest, super::admin_api::NotFound, super::admin_api::Auth, super::admin_api::Storage))]
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
        Ok(AssignOutcome::NoSuchProfile) => return no_profile(&name),
        Err(e) => return storage_error(e),
    }
    (
        StatusCode::ACCEPTED,
        Json(Assigned {
            name,
            device_ids: a.device_ids,
        }),
    )
        .into_response()
}
