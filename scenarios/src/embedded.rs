//! The embedded reference server, used when no `--server` is given: either in-process
//! (a `winmdm-server` on an ephemeral port with a fresh data directory) or, for
//! scenarios that kill it, a child process running `winmdm-serve`. Both can be
//! restarted on the same port and data; only the child process can be killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::runner::Target;

enum Backend {
    InProcess(Option<winmdm_server::RunningServer>),
    Process {
        exe: PathBuf,
        child: Option<tokio::process::Child>,
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
        }
        Ok(())
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

/// The configuration both kinds share: fresh secrets, no per-address enrollment limit
/// (every emulated device shares 127.0.0.1).
fn base_config(dir: &tempfile::TempDir) -> winmdm_server::Config {
    let mut config = winmdm_server::Config::for_data_dir(
        dir.path().to_path_buf(),
        &format!("secret-{}", random_hex()),
    );
    config.admin_token = Some(format!("admin-{}", random_hex()));
    config.enroll_rate_per_client = 0;
    config
}

fn target_for(control: &Arc<Control>, ca_pem: Vec<u8>, serve_exe: Option<PathBuf>) -> Target {
    Target {
        server_url: format!("https://{}", control.config.listen),
        enroll_secret: control.config.enroll_secret.clone(),
        admin_token: control.config.admin_token.clone(),
        ca_pem: Some(ca_pem),
        insecure: false,
        control: Some(control.clone()),
        serve_exe,
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
    let mut config = base_config(&dir);
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

/// Starts the reference server as a child process (`exe` is `winmdm-serve`).
pub async fn start_process(exe: PathBuf) -> Result<Embedded, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary data dir: {e}"))?;
    let mut config = base_config(&dir);
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

/// Spawns `winmdm-serve` and waits until it accepts connections.
async fn spawn(exe: &PathBuf, c: &winmdm_server::Config) -> Result<tokio::process::Child, String> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--listen")
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
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{} exited at start: {status}", exe.display()));
        }
        if tokio::net::TcpStream::connect(c.listen).await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;
    Err(format!(
        "{} did not start listening on {}",
        exe.display(),
        c.listen
    ))
}

/// Where `winmdm-serve` is: `WINMDM_SERVE_EXE`, else next to the running executable.
pub fn default_serve_exe() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WINMDM_SERVE_EXE") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe
        .parent()?
        .join(format!("winmdm-serve{}", std::env::consts::EXE_SUFFIX));
    candidate.exists().then_some(candidate)
}
