//! `GET /metrics` (Prometheus text format, behind the admin token) and the middleware
//! that counts every request by its matched route.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::admin_error::{admin_error, ErrorBody, ErrorCode};
use crate::model::{AssignmentState, CommandState, EnrollmentState};
use crate::state::AppState;
use crate::telemetry as t;

/// The Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counts each request and its latency by method, matched route pattern (not the raw
/// path, whose DeviceIDs would make a series each) and status. On the outer router every
/// route sees its `MatchedPath`; requests no route matched count as `unmatched`.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    // Any token is a valid method: only the ones routes use get a label of their own.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics::histogram!(t::HTTP_DURATION, "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        t::HTTP_REQUESTS,
        "method" => method,
        "route" => route,
        "status" => resp.status().as_str().to_owned(),
    )
    .increment(1);
    resp
}

/// Sets `gauge{state=...}` for every state of the enum, 0 for those without rows.
fn set_states(
    gauge: &'static str,
    all: impl Iterator<Item = &'static str>,
    counts: &[(String, i64)],
) {
    for state in all {
        let n = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!(gauge, "state" => state).set(n as f64);
    }
}

/// `GET /metrics`: what the process recorded, with the state gauges read from the store
/// first (one `GROUP BY` per table: gauges read at scrape instead of counters kept in
/// step with every state change, which would be wrong after a restart or with replicas).
#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics", tag = "meta",
    description = "Opened by the admin token or by `--metrics-token`, which opens nothing else.",
    responses((status = 200, description = "Prometheus text format 0.0.4: counters, histograms, and gauges read from the store at each scrape", content_type = "text/plain", body = String), super::admin_api::Auth,
        (status = 503, description = "`metrics_unavailable`: another metrics recorder is installed in this process", body = ErrorBody)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let Some(handle) = t::install() else {
        return admin_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::MetricsUnavailable,
            "another metrics recorder is installed in this process",
        );
    };
    match state.store.state_counts().await {
        Ok(c) => {
            let states = EnrollmentState::ALL.iter().map(|s| s.as_str());
            set_states(t::ENROLLMENT_STATES, states, &c.enrollments);
            let states = CommandState::ALL.iter().map(|s| s.as_str());
            set_states(t::COMMAND_STATES, states, &c.commands);
            let states = AssignmentState::ALL.iter().map(|s| s.as_str());
            set_states(t::PROFILE_STATES, states, &c.assignments);
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics: could not read the state counts");
            metrics::counter!(t::SCRAPE_ERRORS).increment(1);
        }
    }
    let (open, idle, max) = state.store.pool_use();
    metrics::gauge!(t::DB_POOL, "state" => "open").set(f64::from(open));
    metrics::gauge!(t::DB_POOL, "state" => "idle").set(idle as f64);
    metrics::gauge!(t::DB_POOL, "state" => "max").set(f64::from(max));
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response()
}
