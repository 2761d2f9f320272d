//! The embedded reference server, used when no `--server` is given: either in-process
//! (a `winmdm-server` on an ephemeral port with a fresh data directory) or, for
//! scenarios that kill it, a child process running `winmdm serve` (the harness's own
//! executable, so it is always the build that runs the scenarios). Both can be
//! restarted on the same port and data; only the child process can be killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::capability::{Capability, Lacking};
use crate::runner::Target;

enum Backend {
    InProcess(Option<winmdm_server::RunningServer>),
    Process {
        exe: PathBuf,
        child: Option<tokio::process::Child>,
    },
    /// Several server processes on one database and data directory behind a TCP proxy
    /// (the `listen` address of the configuration is the proxy's).
    Replicas {
        children: Vec<tokio::process::Child>,
        proxy: Proxy,
    },
}

/// Owns the embedded server across restarts.
pub struct Control {
    config: winmdm_server::Config,
    backend: Mutex<Backend>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("listen", &self.config.listen)
            .finish()
    }
}

impl Control {
    /// The embedded server's login account (user, password) for the federated page.
    pub fn federated_account(&self) -> Option<(String, String)> {
        let (user, password) = self.config.enroll_users.first()?.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    }

    /// Whether the server runs as a child process (and so can be killed).
    pub async fn is_process(&self) -> bool {
        matches!(*self.backend.lock().await, Backend::Process { .. })
    }

    /// Stops the server (ending its connections) and starts it again on the same
    /// address with the same data directory: what survives is what was stored.
    pub async fn restart(&self) -> Result<(), String> {
        let mut backend = self.backend.lock().await;
        match &mut *backend {
            Backend::InProcess(server) => {
                if let Some(s) = server.take() {
                    s.shutdown().await;
                }
                let started = winmdm_server::start(self.config.clone())
                    .await
                    .map_err(|e| format!("restarting the embedded server: {e}"))?;
                *server = Some(started);
            }
            Backend::Process { exe, child } => {
                if let Some(mut c) = child.take() {
                    let _ = c.kill().await;
                }
                *child = Some(spawn(exe, &self.config).await?);
            }
            Backend::Replicas { .. } => return Err("replicas are not restarted as a whole".into()),
        }
        Ok(())
    }

    /// Sends new connections to replica `index` (replica scenarios).
    pub async fn route_to_replica(&self, index: usize) -> Result<(), String> {
        match &*self.backend.lock().await {
            Backend::Replicas { proxy, .. } if index < proxy.backends.len() => {
                proxy
                    .prefer
                    .store(index, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            Backend::Replicas { proxy, .. } => {
                Err(format!("there are {} replicas", proxy.backends.len()))
            }
            _ => Err("this server has no replicas".into()),
        }
    }

    /// Kills the server process with SIGKILL (no shutdown of any kind) and starts it
    /// again on the same port and data.
    pub async fn kill_and_restart(&self) -> Result<(), String> {
        if !self.is_process().await {
            return Err("only a server running as a child process can be killed".into());
        }
        self.restart().await
    }

    /// Stops the server.
    pub async fn shutdown(&self) {
        match &mut *self.backend.lock().await {
            Backend::InProcess(server) => {
                if let Some(s) = server.take() {
                    s.shutdown().await;
                }
            }
            Backend::Process { child, .. } => {
                if let Some(mut c) = child.take() {
                    let _ = c.kill().await;
                }
            }
            Backend::Replicas { children, proxy } => {
                proxy.task.abort();
                for c in children.iter_mut() {
                    let _ = c.kill().await;
                }
            }
        }
    }
}

/// A running embedded server and the target description pointing at it.
pub struct Embedded {
    pub target: Target,
    pub control: Arc<Control>,
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Postgres to run embedded servers on instead of SQLite: `WINMDM_TEST_POSTGRES_URL`, a
/// URL the harness may create databases with (each server gets a fresh one).
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("WINMDM_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The configuration every kind shares: fresh secrets, no per-address enrollment limit
/// (every emulated device shares 127.0.0.1), and a fresh Postgres database when one is
/// configured.
async fn base_config(dir: &tempfile::TempDir) -> Result<winmdm_server::Config, String> {
    let mut config = winmdm_server::Config::for_data_dir(
        dir.path().to_path_buf(),
        &format!("secret-{}", random_hex()),
    );
    config.admin_token = Some(format!("admin-{}", random_hex()));
    config.enroll_rate_per_client = 0;
    // A half-sent request (headers or body) is closed after 5 s (the slow-request attack scenario waits
    // for that; the server's default is 30 s).
    config.header_read_timeout_secs = 5;
    config.body_read_timeout_secs = 5;
    // An account, so that the federated login page exists (the federated appru attack
    // scenario needs one); its password is random and never used to enroll.
    config.enroll_users = vec![format!("federated-probe:{}", random_hex())];
    if let Some(admin) = postgres_admin_url() {
        let url = winmdm_server::db::create_scratch_postgres_database(&admin)
            .await
            .map_err(|e| format!("creating a Postgres database: {e}"))?;
        config.database_url = Some(url);
    }
    Ok(config)
}

/// What the embedded server cannot do here: killing or replicating it without an
/// executable to run as a process or (replicas) without Postgres. (It has a federated
/// login page: `base_config` gives it an account.)
fn embedded_lacks(serve_exe: Option<&PathBuf>) -> Lacking {
    let lacking = Lacking::default();
    if serve_exe.is_none() {
        let why = "no winmdm executable to run `winmdm serve` with";
        lacking.mark(Capability::Kill, why);
        lacking.mark(Capability::Replicas, why);
    }
    if postgres_admin_url().is_none() {
        lacking.mark(
            Capability::Replicas,
            "replicas need Postgres: set WINMDM_TEST_POSTGRES_URL",
        );
    }
    lacking
}

fn target_for(control: &Arc<Control>, ca_pem: Vec<u8>, serve_exe: Option<PathBuf>) -> Target {
    Target {
        lacking: embedded_lacks(serve_exe.as_ref()),
        server_url: format!("https://{}", control.config.listen),
        enroll_secret: control.config.enroll_secret.clone(),
        admin_token: control.config.admin_token.clone(),
        ca_pem: Some(ca_pem),
        insecure: false,
        control: Some(control.clone()),
        serve_exe,
        token: None,
        discovery_url: None,
        auth_policy: None,
        credentials: None,
    }
}

/// Starts the in-process embedded server.
pub async fn start() -> Result<Embedded, String> {
    start_with(None).await
}

/// Starts the in-process embedded server; `serve_exe` is remembered for scenarios that
/// need a killable server process.
pub async fn start_with(serve_exe: Option<PathBuf>) -> Result<Embedded, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary data dir: {e}"))?;
    let mut config = base_config(&dir).await?;
    let server = winmdm_server::start(config.clone())
        .await
        .map_err(|e| format!("embedded server: {e}"))?;
    // Restarts reuse the port the first start picked.
    config.listen = server.addr;
    let ca_pem = std::fs::read(&server.tls_cert_path)
        .map_err(|e| format!("reading {}: {e}", server.tls_cert_path.display()))?;
    let control = Arc::new(Control {
        config,
        backend: Mutex::new(Backend::InProcess(Some(server))),
        _dir: dir,
    });
    let target = target_for(&control, ca_pem, serve_exe);
    Ok(Embedded { target, control })
}

/// Starts the reference server as a child process (`exe serve`; `exe` is `winmdm`).
pub async fn start_process(exe: PathBuf) -> Result<Embedded, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary data dir: {e}"))?;
    let mut config = base_config(&dir).await?;
    config.listen = free_port()?;
    // Commands whose session died with the process are sent again quickly.
    config.redeliver_after_secs = 1;
    let child = spawn(&exe, &config).await?;
    let cert = dir.path().join("tls-cert.pem");
    let ca_pem = std::fs::read(&cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let control = Arc::new(Control {
        config,
        backend: Mutex::new(Backend::Process {
            exe: exe.clone(),
            child: Some(child),
        }),
        _dir: dir,
    });
    let target = target_for(&control, ca_pem, Some(exe));
    Ok(Embedded { target, control })
}

fn free_port() -> Result<SocketAddr, String> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("picking a port: {e}"))?;
    l.local_addr().map_err(|e| format!("picking a port: {e}"))
}

/// Spawns `exe serve` and waits until it accepts connections.
async fn spawn(exe: &PathBuf, c: &winmdm_server::Config) -> Result<tokio::process::Child, String> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--listen")
        .arg(c.listen.to_string())
        .arg("--data-dir")
        .arg(&c.data_dir)
        .arg("--enroll-secret")
        .arg(&c.enroll_secret)
        .arg("--enroll-rate-per-client")
        .arg(c.enroll_rate_per_client.to_string())
        .arg("--redeliver-after-secs")
        .arg(c.redeliver_after_secs.to_string())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(t) = &c.admin_token {
        cmd.arg("--admin-token").arg(t);
    }
    if let Some(u) = &c.database_url {
        cmd.arg("--database-url").arg(u);
    }
    if let Some(u) = &c.public_url {
        cmd.arg("--public-url").arg(u);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    // Up to 60 s: a loaded machine may take a while to generate the RSA identity CA.
    for _ in 0..1200 {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{} serve exited at start: {status}", exe.display()));
        }
        if tokio::net::TcpStream::connect(c.listen).await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;
    Err(format!(
        "{} serve did not start listening on {}",
        exe.display(),
        c.listen
    ))
}

/// The running `winmdm` executable, which serves with `winmdm serve`: no other binary
/// has to be built (or can be stale).
pub fn own_exe() -> Option<PathBuf> {
    std::env::current_exe().ok()
}

/// A TCP pass-through in front of the replicas: TLS ends at the replicas, which share
/// their certificate through the data directory, so the proxy sees only bytes. New
/// connections go to the preferred replica.
pub struct Proxy {
    backends: Vec<SocketAddr>,
    prefer: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(listen: SocketAddr, backends: Vec<SocketAddr>) -> Result<Proxy, String> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("proxy on {listen}: {e}"))?;
        let prefer = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (b, p) = (backends.clone(), prefer.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = b[p.load(std::sync::atomic::Ordering::SeqCst) % b.len()];
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Proxy {
            backends,
            prefer,
            task,
        })
    }
}

/// Starts `count` server processes on one fresh Postgres database and one data
/// directory, behind a proxy whose address is the public URL they all announce. The
/// first replica creates the CA and TLS material; the others load it.
pub async fn start_replicas(exe: PathBuf, count: usize) -> Result<Embedded, String> {
    if postgres_admin_url().is_none() {
        return Err("replicas need Postgres: set WINMDM_TEST_POSTGRES_URL".into());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temporary data dir: {e}"))?;
    let mut config = base_config(&dir).await?;
    let proxy_addr = free_port()?;
    config.public_url = Some(format!("https://{proxy_addr}"));
    let mut children = Vec::new();
    let mut backends = Vec::new();
    for _ in 0..count.max(1) {
        let mut c = config.clone();
        c.listen = free_port()?;
        children.push(spawn(&exe, &c).await?);
        backends.push(c.listen);
    }
    let proxy = Proxy::start(proxy_addr, backends).await?;
    config.listen = proxy_addr;
    let cert = dir.path().join("tls-cert.pem");
    let ca_pem = std::fs::read(&cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let control = Arc::new(Control {
        config,
        backend: Mutex::new(Backend::Replicas { children, proxy }),
        _dir: dir,
    });
    let target = target_for(&control, ca_pem, Some(exe));
    Ok(Embedded { target, control })
}
