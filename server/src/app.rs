//! The server: storage and key material opened, the router built, and the HTTPS accept
//! loop with its connection limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::ca::IdentityCa;
use crate::config::Config;
use crate::error::ServerError;
use crate::store::Store;

pub use crate::http::router;
pub use crate::paths::*;
pub use crate::state::{AppState, ClientAddr, PeerCertificate, PeerVerification};

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
    let rate_limiter = crate::rate_limit::RateLimiter::new(
        f64::from(config.enroll_rate_per_client),
        f64::from(config.enroll_rate_global),
    );
    Ok(Arc::new(AppState {
        config,
        store,
        ca,
        public_url,
        rate_limiter,
    }))
}

/// Opens storage, loads or creates key material, binds the listener and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    crate::crash::check_environment().map_err(ServerError::Config)?;
    for c in &config.trusted_proxy {
        crate::http::proxy_cert::Cidr::parse(c).map_err(ServerError::Config)?;
    }
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
    spawn_metrics_upkeep(rx.clone());
    let limits = ConnLimits {
        deadlines: crate::http::conn::Deadlines {
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
        log: Arc::new(crate::http::conn::PeerLog::default()),
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

/// Installs the metrics recorder and drains its histograms now and then, so that a
/// server nobody scrapes does not keep every sample; ends with the server.
fn spawn_metrics_upkeep(mut shutdown: watch::Receiver<bool>) {
    let Some(handle) = crate::telemetry::install() else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// The listener's limits on connections ([`crate::http::conn`]).
struct ConnLimits {
    deadlines: crate::http::conn::Deadlines,
    /// One permit per open connection (`--max-connections`); None: no cap.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    log: Arc<crate::http::conn::PeerLog>,
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
                Ok(Ok(s)) => {
                    let kind = match s.get_ref().1.handshake_kind() {
                        Some(rustls::HandshakeKind::Resumed) => "resumed",
                        _ => "full",
                    };
                    metrics::counter!(crate::telemetry::TLS_HANDSHAKES, "kind" => kind)
                        .increment(1);
                    s
                }
                Ok(Err(e)) => {
                    metrics::counter!(crate::telemetry::TLS_HANDSHAKES, "kind" => "failed")
                        .increment(1);
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
            let activity = Arc::new(crate::http::conn::Activity::default());
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
            let io = crate::http::conn::Watched::new(tls, activity.clone());
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(io), svc);
            // Dropping the connection closes it when a deadline passes.
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer_addr, error = %e, "connection ended with an error");
                },
                expired = activity.expired(deadlines) => match expired {
                    crate::http::conn::Expired::Idle => {
                        tracing::debug!(%peer_addr, "idle keep-alive connection closed");
                    }
                    crate::http::conn::Expired::HeaderRead => {
                        if log.first_in_window(peer_addr.ip()) {
                            tracing::info!(%peer_addr, "connection closed: request headers not received in time (logged once a minute per address)");
                        }
                    }
                },
            }
        });
    }
}
