//! Shared state, the router, and the HTTPS accept loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::ca::IdentityCa;
use crate::config::Config;
use crate::db::{Host, Store};
use crate::error::ServerError;
use crate::sessions::Sessions;
use crate::soap::{Fault, FaultSubcode, Request};

pub const ORBIT_ENROLL_PATH: &str = "/api/fleet/orbit/enroll";
pub const ORBIT_CONFIG_PATH: &str = "/api/fleet/orbit/config";
pub const DISCOVERY_PATH: &str = "/api/mdm/microsoft/discovery";
pub const POLICY_PATH: &str = "/api/mdm/microsoft/policy";
pub const ENROLL_PATH: &str = "/api/mdm/microsoft/enroll";
pub const MANAGEMENT_PATH: &str = "/api/mdm/microsoft/management";
pub const AUTH_PATH: &str = "/api/mdm/microsoft/auth";

/// Largest request body accepted on any route.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The peer's IP address, for per-client rate limits.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The client certificate presented on this connection (DER), if any.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<Arc<Vec<u8>>>, pub PeerVerification);

/// The identity CA's verdict on a connection's client certificate, reached once per
/// connection (the signature check is the costly part) and shared by its requests.
#[derive(Debug, Clone, Default)]
pub struct PeerVerification(
    Arc<std::sync::OnceLock<Result<crate::ca::ClientCert, crate::ca::CertRejection>>>,
);

impl PeerCertificate {
    /// The client certificate a connection presented (DER), not verified yet.
    pub fn new(der: Option<Vec<u8>>) -> Self {
        PeerCertificate(der.map(Arc::new), PeerVerification::default())
    }

    /// Verifies the certificate against `ca`: issuer, signature and EKU once per
    /// connection, the validity period on every call.
    pub fn verify(
        &self,
        ca: &IdentityCa,
    ) -> Option<Result<&crate::ca::ClientCert, crate::ca::CertRejection>> {
        let der = self.0.as_deref()?;
        let issued = self.1 .0.get_or_init(|| ca.verify_issuer(der));
        Some(issued.as_ref().map_err(|e| *e).and_then(|c| {
            c.check_validity(crate::db::unix_now())?;
            Ok(c)
        }))
    }
}

/// State shared by every handler.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub ca: IdentityCa,
    pub public_url: String,
    pub sessions: Sessions,
    pub rate_limiter: crate::guards::RateLimiter,
}

impl AppState {
    /// Absolute URL of a path on this server, as devices reach it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// Whether the host's node key has outlived `--node-key-ttl-secs`.
    pub fn node_key_expired(&self, host: &Host) -> bool {
        let ttl = self.config.node_key_ttl_secs;
        ttl > 0 && crate::db::unix_now().saturating_sub(host.node_key_issued_unix) > ttl as i64
    }

    /// Whether `username`/`password` is one of the `--enroll-user` accounts.
    pub fn user_password_ok(&self, username: &str, password: &str) -> bool {
        let presented = format!("{username}:{password}");
        self.config.enroll_users.iter().fold(false, |ok, u| {
            crate::orbit::constant_time_eq(u.as_bytes(), presented.as_bytes()) | ok
        })
    }

    /// The host standing for an enrollment user (no Orbit agent): created on first use,
    /// with a fresh node key, which is returned (the federated page hands it out).
    pub async fn user_host(
        &self,
        username: &str,
    ) -> Result<(Host, String), crate::error::ServerError> {
        let node_key = hex::encode(rand::random::<[u8; 24]>());
        let hash = crate::orbit::hash_node_key(&node_key);
        self.store
            .upsert_host(
                &format!("{}{username}", crate::enroll::USER_HOST_PREFIX),
                "",
                username,
                "user",
                &hash,
            )
            .await?;
        let host = self
            .store
            .host_by_node_key_hash(&hash)
            .await?
            .ok_or_else(|| crate::error::ServerError::Config("user host vanished".into()))?;
        Ok((host, node_key))
    }

    /// Resolves the DeviceEnrollmentUserToken of a policy or enroll request to the host
    /// whose node key it is (MS-MDE2 §3.2.4.1); anything else is an Authentication fault.
    pub async fn authenticate_token(&self, req: &Request<'_, '_>) -> Result<Host, Fault> {
        let mid = req.message_id.as_deref();
        if let Some((username, password)) = crate::soap::username_token(req) {
            if self.config.enroll_users.is_empty() {
                return Err(Fault::new(
                    FaultSubcode::Authentication,
                    "UsernameToken authentication is not offered by this server; use the DeviceEnrollmentUserToken",
                )
                .relating_to(mid));
            }
            if !self.user_password_ok(&username, &password) {
                return Err(Fault::new(
                    FaultSubcode::Authentication,
                    "invalid user name or password",
                )
                .relating_to(mid));
            }
            return self
                .user_host(&username)
                .await
                .map(|(h, _)| h)
                .map_err(|e| {
                    tracing::error!(error = %e, "user host");
                    Fault::new(FaultSubcode::EnrollmentServer, "storage failure").relating_to(mid)
                });
        }
        let token = crate::soap::user_token(req)?;
        match self
            .store
            .host_by_node_key_hash(&crate::orbit::hash_node_key(&token))
            .await
        {
            Ok(Some(host)) if self.node_key_expired(&host) => Err(Fault::new(
                FaultSubcode::Authentication,
                "the DeviceEnrollmentUserToken (node key) has expired; the agent must enroll again",
            )
            .relating_to(mid)),
            Ok(Some(host)) => Ok(host),
            Ok(None) => Err(Fault::new(
                FaultSubcode::Authentication,
                "the DeviceEnrollmentUserToken is not a node key issued by this server",
            )
            .relating_to(mid)),
            Err(e) => {
                tracing::error!(error = %e, "token lookup failed");
                Err(Fault::new(FaultSubcode::EnrollmentServer, "storage failure").relating_to(mid))
            }
        }
    }
}

/// The router with every route.
pub fn router(state: Arc<AppState>) -> Router {
    use crate::guards::{read_body_in_time, BodyDeadline};
    use axum::middleware::{from_fn, from_fn_with_state};
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
            get(crate::discovery::probe).post(crate::discovery::discover),
        )
        .route(
            crate::discovery::WINDOWS_DISCOVERY_PATH,
            get(crate::discovery::probe).post(crate::discovery::discover),
        )
        .route(POLICY_PATH, post(crate::policy::get_policies))
        .route(ENROLL_PATH, post(crate::enroll::request_security_token))
        .route_layer(from_fn(crate::guards::require_soap))
        .route(ORBIT_ENROLL_PATH, post(crate::orbit::enroll))
        .route(
            AUTH_PATH,
            get(crate::federated::login_page).post(crate::federated::login),
        )
        .route_layer(from_fn_with_state(body, read_body_in_time))
        .route_layer(from_fn_with_state(state.clone(), crate::guards::rate_limit));
    // Windows ignores the MaxMsgSize the server announces ("Meta XML tag in SyncHdr is
    // ignored by the device", Microsoft Learn, OMA DM protocol support), so device
    // messages have their own, larger bound (413 above it); this route's limit replaces
    // the general one below.
    let management = Router::new()
        .route(MANAGEMENT_PATH, post(crate::management::session))
        .route_layer(from_fn_with_state(device_body, read_body_in_time))
        .route_layer(from_fn(crate::guards::require_syncml))
        // Outermost: no certificate, no body read.
        .route_layer(from_fn_with_state(
            state.clone(),
            crate::guards::require_client_certificate,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_device_message_bytes));
    let admin = Router::new()
        .route("/api/v1/devices", get(crate::admin::list_devices))
        .route(
            "/api/v1/devices/{device_id}/commands",
            post(crate::admin::queue_command),
        )
        .route(
            "/api/v1/devices/{device_id}/unenroll",
            post(crate::admin::unenroll_device),
        )
        .route(
            "/api/v1/devices/{device_id}/release",
            post(crate::admin::release_device),
        )
        .route("/api/v1/commands", post(crate::admin::queue_command_many))
        .route("/api/v1/profiles", post(crate::admin::save_profile))
        .route("/api/v1/profiles/{name}", get(crate::admin::get_profile))
        .route(
            "/api/v1/profiles/{name}/assign",
            post(crate::admin::assign_profile),
        )
        .route(
            "/api/v1/commands/{command_id}",
            get(crate::admin::get_command).delete(crate::admin::cancel_command),
        )
        .route_layer(from_fn_with_state(body, read_body_in_time))
        .route_layer(from_fn_with_state(
            state.clone(),
            crate::admin::require_admin,
        ));
    let orbit_config = Router::new()
        .route(ORBIT_CONFIG_PATH, post(crate::orbit::config))
        .route_layer(from_fn_with_state(body, read_body_in_time));
    Router::new()
        .merge(enrollment)
        .merge(management)
        .merge(admin)
        .merge(orbit_config)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub public_url: String,
    /// PEM file of the HTTPS certificate (what clients pass as `--ca-file`).
    pub tls_cert_path: PathBuf,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (it only stops on [`RunningServer::shutdown`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Opens storage and loads or creates the identity CA: everything but the listener.
pub async fn build_state(config: Config, public_url: String) -> Result<Arc<AppState>, ServerError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let database_url = config
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("winmdm.db").display()));
    let store = Store::open(&database_url, config.sqlite_synchronous).await?;
    let ca = IdentityCa::load_or_create(&config.data_dir)?;
    let rate_limiter = crate::guards::RateLimiter::new(
        f64::from(config.enroll_rate_per_client),
        f64::from(config.enroll_rate_global),
    );
    Ok(Arc::new(AppState {
        config,
        store,
        ca,
        public_url,
        sessions: Sessions::default(),
        rate_limiter,
    }))
}

/// Opens storage, loads or creates key material, binds the listener and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    // Key material exists before the port accepts connections, so that a replica
    // started once this one is reachable loads it instead of making its own.
    let (cert_path, key_path) = {
        std::fs::create_dir_all(&config.data_dir)?;
        IdentityCa::load_or_create(&config.data_dir)?;
        crate::tls::server_cert_paths(&config)?
    };
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://{addr}"));
    let state = build_state(config, public_url.clone()).await?;
    let ca_subject = x509_parser::parse_x509_certificate(state.ca.cert_der())
        .ok()
        .map(|(_, c)| rustls::DistinguishedName::from(c.subject().as_raw().to_vec()));
    let tls = crate::tls::server_config(&cert_path, &key_path, ca_subject)?;
    let app = router(state.clone());
    let (tx, rx) = watch::channel(false);
    let limits = ConnLimits {
        deadlines: crate::conn::Deadlines {
            header_read: Duration::from_secs(state.config.header_read_timeout_secs),
            idle: Duration::from_secs(state.config.idle_timeout_secs),
        },
        slots: (state.config.max_connections > 0).then(|| {
            Arc::new(tokio::sync::Semaphore::new(
                state
                    .config
                    .max_connections
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            ))
        }),
        log: Arc::new(crate::conn::PeerLog::default()),
    };
    let task = tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(Arc::new(tls)),
        app,
        limits,
        rx,
    ));
    tracing::info!(%addr, %public_url, tls_cert = %cert_path.display(), "winmdm-server listening");
    Ok(RunningServer {
        addr,
        public_url,
        tls_cert_path: cert_path,
        state,
        shutdown: tx,
        task,
    })
}

/// The listener's limits on connections ([`crate::conn`]).
struct ConnLimits {
    deadlines: crate::conn::Deadlines,
    /// One permit per open connection (`--max-connections`); None: no cap.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    log: Arc<crate::conn::PeerLog>,
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    // Connections live in a JoinSet so that shutting down also ends keep-alive
    // connections (a restarted server must not leave old ones serving).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer_addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => {
                connections.abort_all();
                return;
            }
        };
        // Over the cap the connection is closed at once, before the TLS handshake
        // (answering 503 would cost a handshake per refused connection, the work the cap
        // is there to bound); Windows retries the session at its next scheduled sync.
        let permit = match &limits.slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    if limits.log.first_in_window(peer_addr.ip()) {
                        tracing::warn!(%peer_addr, "connection refused: --max-connections reached (logged once a minute per address)");
                    }
                    drop(tcp);
                    continue;
                }
            },
        };
        // Responses go out in several writes; without this, Nagle's algorithm holds
        // the last one back until the client's delayed ACK (about 40 ms a request).
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let deadlines = limits.deadlines;
        let log = limits.log.clone();
        connections.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(deadlines.header_read, acceptor.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer_addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    if log.first_in_window(peer_addr.ip()) {
                        tracing::info!(%peer_addr, "TLS handshake timed out (logged once a minute per address)");
                    }
                    return;
                }
            };
            let client = ClientAddr(peer_addr.ip());
            let peer = PeerCertificate::new(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec()),
            );
            let activity = Arc::new(crate::conn::Activity::default());
            let requests = activity.clone();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req.extensions_mut().insert(client);
                    let in_flight = requests.request();
                    let mut app = app.clone();
                    async move {
                        let r = app.call(req).await;
                        drop(in_flight);
                        r
                    }
                },
            );
            let io = crate::conn::Watched::new(tls, activity.clone());
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(io), svc);
            // Dropping the connection closes it when a deadline passes.
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer_addr, error = %e, "connection ended with an error");
                },
                expired = activity.expired(deadlines) => match expired {
                    crate::conn::Expired::Idle => {
                        tracing::debug!(%peer_addr, "idle keep-alive connection closed");
                    }
                    crate::conn::Expired::HeaderRead => {
                        if log.first_in_window(peer_addr.ip()) {
                            tracing::info!(%peer_addr, "connection closed: request headers not received in time (logged once a minute per address)");
                        }
                    }
                },
            }
        });
    }
}
