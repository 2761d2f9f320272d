//! Metrics: the names of the series the server records (through the `metrics` facade)
//! and the Prometheus recorder they go to, installed once per process. The HTTP layer
//! serves the text format ([`crate::http::metrics`]); the protocol core records nothing.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter: requests answered, by `method`, `route` (the matched route pattern, or
/// `unmatched`) and `status`.
pub const HTTP_REQUESTS: &str = "winmdm_http_requests_total";
/// Histogram: seconds from a request's headers to its response's, by `method` and `route`.
pub const HTTP_DURATION: &str = "winmdm_http_request_duration_seconds";
/// Counter: MS-WSTEP requests, by `request_type` (`issue`, `renew`) and `outcome`
/// (`issued`, `refused`).
pub const ENROLLMENTS: &str = "winmdm_enrollments_total";
/// Counter: SOAP faults sent, by `subcode` (`s:MessageFormat`, `a:...`).
pub const SOAP_FAULTS: &str = "winmdm_soap_faults_total";
/// Counter: OMA-DM sessions started (a message with MsgID 1).
pub const OMADM_SESSIONS: &str = "winmdm_omadm_sessions_total";
/// Counter: OMA-DM messages processed, by `outcome` (`answered`, `replayed`, `failed`).
pub const OMADM_MESSAGES: &str = "winmdm_omadm_messages_total";
/// Gauge (read from the store on each scrape): enrollments by `state`.
pub const ENROLLMENT_STATES: &str = "winmdm_enrollments_by_state";
/// Gauge (read from the store on each scrape): command deliveries by `state`.
pub const COMMAND_STATES: &str = "winmdm_command_deliveries";
/// Gauge (read from the store on each scrape): profile assignments by `state`.
pub const PROFILE_STATES: &str = "winmdm_profile_assignments";
/// Counter: TLS handshakes completed, by `kind` (`full`, `resumed`), or failed
/// (`kind="failed"`).
pub const TLS_HANDSHAKES: &str = "winmdm_tls_handshakes_total";
/// Counter: enrollment requests refused by the rate limits (429).
pub const RATE_LIMITED: &str = "winmdm_rate_limit_refusals_total";
/// Histogram: jobs per SQLite group-commit batch.
pub const WRITER_BATCH_SIZE: &str = "winmdm_sqlite_writer_batch_size";
/// Histogram: seconds a SQLite group commit's COMMIT took.
pub const WRITER_COMMIT_SECONDS: &str = "winmdm_sqlite_writer_commit_seconds";
/// Gauges (read on each scrape): the database pool's `open`, `idle` and `max` connections.
pub const DB_POOL: &str = "winmdm_db_pool_connections";
/// Counter: scrapes whose store read failed (the state gauges keep their last values).
pub const SCRAPE_ERRORS: &str = "winmdm_metrics_scrape_errors_total";

/// Latency buckets, seconds: 1 ms to 10 s.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batch size buckets (the writer's batches hold at most a few hundred jobs).
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, once; the
/// handle renders what was recorded. None when another recorder was installed first
/// (an embedding program's): the server's metrics then go there.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH)
                })
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// HELP lines for the series.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, matched route and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency, by method and matched route"
    );
    describe_counter!(
        ENROLLMENTS,
        "MS-WSTEP requests, by request type and outcome"
    );
    describe_counter!(SOAP_FAULTS, "SOAP faults sent, by subcode");
    describe_counter!(OMADM_SESSIONS, "OMA-DM sessions started");
    describe_counter!(OMADM_MESSAGES, "OMA-DM messages, by outcome");
    describe_gauge!(
        ENROLLMENT_STATES,
        "Enrollments by state (read from the store at scrape)"
    );
    describe_gauge!(
        COMMAND_STATES,
        "Command deliveries by state (read from the store at scrape)"
    );
    describe_gauge!(
        PROFILE_STATES,
        "Profile assignments by state (read from the store at scrape)"
    );
    describe_counter!(
        TLS_HANDSHAKES,
        "TLS handshakes, by kind (full, resumed, failed)"
    );
    describe_counter!(
        RATE_LIMITED,
        "Enrollment requests refused by the rate limits"
    );
    describe_histogram!(WRITER_BATCH_SIZE, "Jobs per SQLite group-commit batch");
    describe_histogram!(
        WRITER_COMMIT_SECONDS,
        Unit::Seconds,
        "SQLite group-commit COMMIT latency"
    );
    describe_gauge!(DB_POOL, "Database pool connections (open, idle, max)");
    describe_counter!(SCRAPE_ERRORS, "Scrapes whose store read failed");
}
