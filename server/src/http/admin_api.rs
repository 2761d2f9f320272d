//! The admin API's route table and its OpenAPI 3.1 document. The router is built from
//! [`routes`] only, and a test compares that table with the document's paths, so a route
//! added without its `#[utoipa::path]` (or the reverse) fails the build's tests.

use std::sync::Arc;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::admin;
use super::admin_error::{ErrorBody, ErrorCode, ErrorDetail};
use super::scrape;
use crate::state::AppState;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
/// Where the metrics are served.
pub const METRICS_PATH: &str = "/metrics";

/// Every admin route: method, path pattern, handler. All sit behind the admin token.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        (Method::GET, "/api/v1/devices", get(admin::list_devices)),
        (
            Method::POST,
            "/api/v1/devices/{device_id}/commands",
            post(admin::queue_command),
        ),
        (
            Method::POST,
            "/api/v1/devices/{device_id}/unenroll",
            post(admin::unenroll_device),
        ),
        (
            Method::POST,
            "/api/v1/devices/{device_id}/release",
            post(admin::release_device),
        ),
        (
            Method::POST,
            "/api/v1/commands",
            post(admin::queue_command_many),
        ),
        (Method::POST, "/api/v1/profiles", post(admin::save_profile)),
        (
            Method::GET,
            "/api/v1/profiles/{name}",
            get(admin::get_profile),
        ),
        (
            Method::POST,
            "/api/v1/profiles/{name}/assign",
            post(admin::assign_profile),
        ),
        (
            Method::GET,
            "/api/v1/commands/{command_id}",
            get(admin::get_command),
        ),
        (
            Method::DELETE,
            "/api/v1/commands/{command_id}",
            delete(admin::cancel_command),
        ),
        (Method::GET, OPENAPI_PATH, get(openapi_json)),
        (Method::GET, METRICS_PATH, get(scrape::metrics)),
    ]
}

/// 400: the body or the request is refused (`invalid_json`, `invalid_request`,
/// `invalid_command`, `invalid_profile`).
#[derive(IntoResponses)]
#[response(
    status = 400,
    description = "Refused: `invalid_json`, `invalid_request`, `invalid_command` or `invalid_profile`"
)]
pub struct BadRequest(pub ErrorBody);

/// 404: what the path or body names does not exist.
#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "`device_not_found`, `command_not_found` or `profile_not_found` (`admin_api_disabled` without `--admin-token`)"
)]
pub struct NotFound(pub ErrorBody);

/// 409: the device is not in a state that allows this.
#[derive(IntoResponses)]
#[response(
    status = 409,
    description = "`device_not_enrolled` or `device_already_unenrolled`"
)]
pub struct Conflict(pub ErrorBody);

/// 401: the bearer token.
#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "`unauthorized`: the bearer token is missing or wrong"
)]
pub struct Auth(pub ErrorBody);

/// 500: the database failed.
#[derive(IntoResponses)]
#[response(status = 500, description = "`storage_failure` or `internal_error`")]
pub struct Storage(pub ErrorBody);

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(get, path = "/api/v1/openapi.json", summary = "This document", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of the admin API", content_type = "application/json"), Auth))]
pub async fn openapi_json() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The bearer token scheme every operation uses.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The admin API's OpenAPI document (written to docs/openapi.json).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "winmdm admin API",
        description = "Devices, commands, profiles and metrics of a winmdm server. Every route needs `Authorization: Bearer <--admin-token>`; without `--admin-token` every route answers 404 `admin_api_disabled`. Errors are `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}` with the codes of `ErrorCode`.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
        version = "1"
    ),
    paths(
        admin::list_devices,
        admin::queue_command,
        admin::unenroll_device,
        admin::release_device,
        admin::queue_command_many,
        admin::save_profile,
        admin::get_profile,
        admin::assign_profile,
        admin::get_command,
        admin::cancel_command,
        openapi_json,
        scrape::metrics,
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    modifiers(&BearerToken),
    security(("admin_token" = [])),
    tags(
        (name = "devices", description = "Enrollments"),
        (name = "commands", description = "OMA-DM commands queued for devices"),
        (name = "profiles", description = "Configuration profiles and their assignments"),
        (name = "meta", description = "The API document and the metrics"),
    )
)]
pub struct ApiDoc;

/// The document as checked in at docs/openapi.json (pretty, with a final newline).
pub fn openapi_pretty() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
