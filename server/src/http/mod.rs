//! The HTTP layer: one thin handler per route (parse, load, decide, store, answer),
//! the guards in front of them, and the conversion of answers to responses
//! ([`respond`]). Protocol decisions are in [`crate::protocol`], wire formats in the codecs,
//! SQL in [`crate::store`].

pub mod admin;
pub mod admin_api;
pub mod admin_error;
pub mod conn;
pub mod digest;
pub mod discovery;
pub mod enroll;
pub mod federated;
pub mod guards;
pub mod management;
pub mod orbit;
pub mod proxy_cert;
pub mod request_id;
pub mod respond;
pub mod scrape;
pub mod xcep;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::paths::*;
use crate::state::AppState;

/// The router with every route.
pub fn router(state: Arc<AppState>) -> Router {
    // Before any request is counted (a second call returns the installed recorder).
    crate::telemetry::install();
    use axum::middleware::{from_fn, from_fn_with_state};
    use guards::{read_body_in_time, BodyDeadline};
    let within = std::time::Duration::from_secs(state.config.body_read_timeout_secs);
    let body = BodyDeadline {
        within,
        limit: MAX_BODY_BYTES,
    };
    let device_body = BodyDeadline {
        within,
        limit: state.config.max_device_message_bytes,
    };
    let enrollment = Router::new()
        .route(
            DISCOVERY_PATH,
            get(discovery::probe).post(discovery::discover),
        )
        .route(
            WINDOWS_DISCOVERY_PATH,
            get(discovery::probe).post(discovery::discover),
        )
        .route(POLICY_PATH, post(xcep::get_policies))
        .route(ENROLL_PATH, post(enroll::request_security_token))
        .route_layer(from_fn(guards::require_soap))
        .route(ORBIT_ENROLL_PATH, post(orbit::enroll))
        .route(AUTH_PATH, get(federated::login_page).post(federated::login))
        .route_layer(from_fn_with_state(body, read_body_in_time))
        .route_layer(from_fn_with_state(state.clone(), guards::rate_limit));
    // Windows ignores the MaxMsgSize the server announces ("Meta XML tag in SyncHdr is
    // ignored by the device", Microsoft Learn, OMA DM protocol support), so device
    // messages have their own, larger bound (413 above it); this route's limit replaces
    // the general one below.
    let management = Router::new()
        .route(MANAGEMENT_PATH, post(management::session))
        .route_layer(from_fn_with_state(device_body, read_body_in_time))
        .route_layer(from_fn(guards::require_syncml))
        // No certificate, no body read.
        .route_layer(from_fn_with_state(
            state.clone(),
            guards::require_client_certificate,
        ))
        // Outermost: the certificate a trusted TLS-terminating proxy forwarded.
        .route_layer(from_fn_with_state(
            state.clone(),
            proxy_cert::from_trusted_proxy,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_device_message_bytes));
    // The admin routes come from one table, which a test compares with the OpenAPI
    // document; every refusal on them has the admin API's JSON error shape.
    let admin = admin_api::routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
        .route_layer(from_fn_with_state(body, read_body_in_time))
        .route_layer(from_fn_with_state(state.clone(), admin::require_admin))
        .route_layer(from_fn(admin_error::json_errors));
    let orbit_config = Router::new()
        .route(ORBIT_CONFIG_PATH, post(orbit::config))
        .route_layer(from_fn_with_state(body, read_body_in_time));
    Router::new()
        .merge(enrollment)
        .merge(management)
        .merge(admin)
        .merge(orbit_config)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(scrape::count_requests))
        // Outermost: every line logged for a request names it.
        .layer(from_fn(request_id::request_span))
        .with_state(state)
}
