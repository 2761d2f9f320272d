//! Command-line and environment configuration of `winmdm-server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Windows MDM server: Orbit agent endpoints, MS-MDE2 discovery, MS-XCEP policy,
/// MS-WSTEP enrollment and OMA-DM management over mTLS.
#[derive(Debug, Clone, Parser)]
#[command(name = "winmdm-server", version)]
pub struct Config {
    /// TOML file of settings: each key is a flag's long name (`enroll-secret = "..."`);
    /// flags and environment variables override it (docs/winmdm.toml lists every key).
    #[arg(long, env = "WINMDM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log lines as plain text or as JSON objects, one a line (level filter: `RUST_LOG`).
    #[arg(long, env = "WINMDM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address and port of the single HTTPS listener.
    #[arg(long, env = "WINMDM_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,

    /// Directory for the database, the identity CA and the generated TLS certificate.
    #[arg(long, env = "WINMDM_DATA_DIR", default_value = ".winmdm")]
    pub data_dir: PathBuf,

    /// Database URL; defaults to a SQLite file `winmdm.db` in the data directory.
    #[arg(long, env = "WINMDM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Base URL devices use to reach this server (goes into discovery and provisioning
    /// documents); defaults to `https://<listen address>`.
    #[arg(long, env = "WINMDM_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Secret an Orbit agent must present to enroll.
    #[arg(long, env = "WINMDM_ENROLL_SECRET", hide_env_values = true)]
    pub enroll_secret: String,

    /// `USER:PASSWORD` allowed to enroll devices without Orbit: OnPremise with a
    /// WS-Security UsernameToken, or Federated through the login page at
    /// `/api/mdm/microsoft/auth`. Repeatable.
    #[arg(
        long = "enroll-user",
        env = "WINMDM_ENROLL_USERS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub enroll_users: Vec<String>,

    /// Bearer token for the admin API (`/api/v1/...`); the admin API is disabled without it.
    #[arg(long, env = "WINMDM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Bearer token that opens `GET /metrics` and nothing else (for a Prometheus that
    /// should not hold the admin token); the admin token opens `/metrics` too.
    #[arg(long, env = "WINMDM_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// PEM certificate chain for HTTPS; without it a self-signed certificate for
    /// localhost/127.0.0.1 is generated and kept in the data directory.
    #[arg(long, env = "WINMDM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching `--tls-cert`.
    #[arg(long, env = "WINMDM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Validity of issued device certificates, in days.
    #[arg(long, env = "WINMDM_CERT_VALIDITY_DAYS", default_value_t = 365)]
    pub cert_validity_days: u32,

    /// Days before expiry at which devices start renewing (WSTEP RenewPeriod).
    #[arg(long, env = "WINMDM_RENEWAL_PERIOD_DAYS", default_value_t = 42)]
    pub renewal_period_days: u32,

    /// Seconds a certificate replaced by a WSTEP renewal stays valid, unless the device
    /// uses its new certificate earlier.
    #[arg(long, env = "WINMDM_RENEWAL_GRACE_SECS", default_value_t = 86_400)]
    pub renewal_grace_secs: u32,

    /// Enrollment requests (Orbit enroll, discovery, policy, enroll) per second from one
    /// client address; 0 disables. Refusals are HTTP 429 with Retry-After.
    #[arg(long, env = "WINMDM_ENROLL_RATE_PER_CLIENT", default_value_t = 20)]
    pub enroll_rate_per_client: u32,

    /// Enrollment requests per second over all clients; 0 disables.
    #[arg(long, env = "WINMDM_ENROLL_RATE_GLOBAL", default_value_t = 0)]
    pub enroll_rate_global: u32,

    /// Largest SyncML message the server accepts, announced to devices as MaxMsgSize;
    /// larger results arrive in chunks.
    #[arg(long, env = "WINMDM_MAX_MSG_SIZE", default_value_t = 65_536)]
    pub max_msg_size: usize,

    /// Largest management message accepted from a device (413 above). Windows ignores
    /// the MaxMsgSize the server announces (OMA DM protocol support: "Meta XML tag in
    /// SyncHdr is ignored by the device"), so this is sized for real inventories.
    #[arg(long, env = "WINMDM_MAX_DEVICE_MESSAGE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_device_message_bytes: usize,

    /// Seconds a client has to complete the TLS handshake, and then each request's
    /// headers (from its first byte); the connection is closed when they run out.
    #[arg(long, env = "WINMDM_HEADER_READ_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,

    /// Seconds a client has to send a request's whole body once its headers arrived
    /// (408 and the connection closed after that).
    #[arg(long, env = "WINMDM_BODY_READ_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_secs: u64,

    /// Seconds a keep-alive connection may stay idle between requests before it is closed.
    #[arg(long, env = "WINMDM_IDLE_TIMEOUT_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,

    /// Most connections open at once; connections over it are closed as soon as they are
    /// accepted (0: no cap).
    #[arg(long, env = "WINMDM_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Seconds after which a command sent but never answered (its session died) is
    /// sent again.
    #[arg(long, env = "WINMDM_REDELIVER_AFTER_SECS", default_value_t = 600)]
    pub redeliver_after_secs: u32,

    /// Deliberately break one response, to check that a conformance harness catches it
    /// (testing aid; never for production): `discover-without-relates-to` omits
    /// `a:RelatesTo` from DiscoverResponse (a deviation Windows tolerates: the harness
    /// warns), `discover-wrong-action` answers with the request's `a:Action` (refused).
    #[arg(long, env = "WINMDM_INJECT_FAULT", hide = true)]
    pub inject_fault: Option<String>,

    /// Node keys older than this many seconds are refused (0: they never expire; a host
    /// gets a new one whenever it enrolls through Orbit again).
    #[arg(long, env = "WINMDM_NODE_KEY_TTL_SECS", default_value_t = 0)]
    pub node_key_ttl_secs: u64,

    /// Provider ID written into the provisioning document and the device registry.
    #[arg(long, env = "WINMDM_PROVIDER_ID", default_value = "winmdm")]
    pub provider_id: String,

    /// SQLite `PRAGMA synchronous` (WAL mode): `full` makes every answered write survive
    /// a power loss; `normal` survives a killed process but may lose the last commits
    /// to a power loss or OS crash.
    #[arg(long, env = "WINMDM_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSynchronous::Full)]
    pub sqlite_synchronous: SqliteSynchronous,

    /// How devices authenticate management sessions: `mtls` (the enrollment
    /// certificate), `digest` (OMA-DM MD5 digest with credentials from the provisioning
    /// document) or `mtls-or-digest` (a presented certificate is judged as in `mtls`;
    /// a connection without one may use digest).
    #[arg(long, env = "WINMDM_MANAGEMENT_AUTH", value_enum, default_value_t = crate::model::ManagementAuth::Mtls)]
    pub management_auth: crate::model::ManagementAuth,
    /// Header in which a TLS-terminating proxy forwards the client certificate (nginx
    /// `$ssl_client_escaped_cert`, Envoy `X-Forwarded-Client-Cert`); believed only from
    /// `--trusted-proxy` addresses.
    #[arg(long, env = "WINMDM_CLIENT_CERT_HEADER")]
    pub client_cert_header: Option<String>,
    /// Addresses or CIDR ranges of the proxies whose certificate header is believed
    /// (comma-separated or repeated).
    #[arg(long, env = "WINMDM_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, each naming its request's span (`request{request_id=...}`).
    #[default]
    Text,
    /// One JSON object a line, with the request's span fields (`request_id`) in `span`.
    Json,
}

/// How SQLite flushes a commit (<https://sqlite.org/pragma.html#pragma_synchronous>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SqliteSynchronous {
    /// The WAL is fsynced at every commit: durable to power loss, given disks that
    /// honour flushes.
    #[default]
    Full,
    /// The WAL is fsynced only at checkpoints: durable to a process crash, not to power
    /// loss or an OS crash.
    Normal,
}

impl SqliteSynchronous {
    /// The value for `PRAGMA synchronous = ...`.
    pub fn pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Normal => "NORMAL",
        }
    }
}

impl Config {
    /// A configuration for tests and the embedded harness: ephemeral port, given data dir.
    pub fn for_data_dir(data_dir: PathBuf, enroll_secret: &str) -> Self {
        Config {
            config: None,
            log_format: LogFormat::Text,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            database_url: None,
            public_url: None,
            enroll_secret: enroll_secret.to_string(),
            enroll_users: Vec::new(),
            admin_token: None,
            metrics_token: None,
            tls_cert: None,
            tls_key: None,
            cert_validity_days: 365,
            renewal_period_days: 42,
            renewal_grace_secs: 86_400,
            enroll_rate_per_client: 20,
            enroll_rate_global: 0,
            max_msg_size: 65_536,
            max_device_message_bytes: 8 * 1024 * 1024,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 60,
            idle_timeout_secs: 120,
            max_connections: 10_000,
            redeliver_after_secs: 600,
            inject_fault: None,
            node_key_ttl_secs: 0,
            provider_id: "winmdm".to_string(),
            sqlite_synchronous: SqliteSynchronous::Full,
            management_auth: crate::model::ManagementAuth::Mtls,
            client_cert_header: None,
            trusted_proxy: Vec::new(),
        }
    }
}
