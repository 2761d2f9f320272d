//! Control of the embedded reference server across restarts: in-process, a child
//! process (`winmdm serve`, which can be killed) or replicas behind a TCP proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

pub(crate) enum Backend {
    InProcess(Option<winmdm_server::RunningServer>),
    Process {
        exe: PathBuf,
        child: Option<tokio::process::Child>,
    },
    /// Several server processes on one database and data directory behind a TCP proxy
    /// (the `listen` address of the configuration is the proxy's).
    Replicas {
        exe: PathBuf,
        children: Vec<tokio::process::Child>,
        proxy: Proxy,
    },
}

/// Owns the embedded server across restarts.
pub struct Control {
    pub(crate) config: winmdm_server::Config,
    pub(crate) backend: Mutex<Backend>,
    pub(crate) _dir: tempfile::TempDir,
    /// Extra environment of the server process from its next start (crash points).
    pub(crate) child_env: std::sync::Mutex<Vec<(String, String)>>,
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
                let env = self.child_env.lock().map(|e| e.clone()).unwrap_or_default();
                *child = Some(spawn(exe, &self.config, &env).await?);
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

    /// The replica new connections go to (None: this server has no replicas).
    pub async fn preferred_replica(&self) -> Option<usize> {
        match &*self.backend.lock().await {
            Backend::Replicas { proxy, .. } => {
                Some(proxy.prefer.load(std::sync::atomic::Ordering::SeqCst) % proxy.backends.len())
            }
            _ => None,
        }
    }

    /// Kills replica `index` with SIGKILL and starts a new process in its place: the same
    /// port, database and data directory, with the current extra environment.
    pub async fn restart_replica(&self, index: usize) -> Result<(), String> {
        let env = self.child_env.lock().map(|e| e.clone()).unwrap_or_default();
        let mut backend = self.backend.lock().await;
        let Backend::Replicas {
            exe,
            children,
            proxy,
        } = &mut *backend
        else {
            return Err("this server has no replicas".into());
        };
        let (Some(child), Some(addr)) = (children.get_mut(index), proxy.backends.get(index)) else {
            return Err(format!("there are {} replicas", children.len()));
        };
        let _ = child.kill().await;
        let mut c = self.config.clone();
        c.listen = *addr;
        *child = spawn(exe, &c, &env).await?;
        Ok(())
    }

    /// Kills the server process with SIGKILL (no shutdown of any kind) and starts it
    /// again on the same port and data; with replicas, the one new connections go to.
    pub async fn kill_and_restart(&self) -> Result<(), String> {
        if let Some(i) = self.preferred_replica().await {
            return self.restart_replica(i).await;
        }
        if !self.is_process().await {
            return Err("only a server running as a child process can be killed".into());
        }
        self.restart().await
    }

    /// Kills the server process and starts it again with these extra environment
    /// variables (e.g. a crash point, see `winmdm_server::crash`); empty clears them.
    pub async fn restart_with_env(&self, env: Vec<(String, String)>) -> Result<(), String> {
        if let Ok(mut e) = self.child_env.lock() {
            *e = env;
        }
        self.kill_and_restart().await
    }

    /// Waits up to `timeout` for the server process (with replicas: the one new
    /// connections go to) to exit on its own; true if it did.
    pub async fn wait_for_exit(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let preferred = self.preferred_replica().await;
            match &mut *self.backend.lock().await {
                Backend::Process { child: Some(c), .. } => {
                    if let Ok(Some(_)) = c.try_wait() {
                        return true;
                    }
                }
                Backend::Replicas { children, .. } => {
                    let c = preferred.and_then(|i| children.get_mut(i));
                    if let Some(Ok(Some(_))) = c.map(|c| c.try_wait()) {
                        return true;
                    }
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
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
            Backend::Replicas {
                children, proxy, ..
            } => {
                proxy.task.abort();
                for c in children.iter_mut() {
                    let _ = c.kill().await;
                }
            }
        }
    }
}

pub(crate) fn free_port() -> Result<SocketAddr, String> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("picking a port: {e}"))?;
    l.local_addr().map_err(|e| format!("picking a port: {e}"))
}

/// Whether `status` is the abort of a crash point armed in `env`.
fn crash_point_abort(env: &[(String, String)], status: &std::process::ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        const SIGABRT: i32 = 6;
        env.iter().any(|(k, _)| k == "WINMDM_CRASH_AT") && status.signal() == Some(SIGABRT)
    }
    #[cfg(not(unix))]
    {
        let _ = (env, status);
        false
    }
}

/// Spawns `exe serve` and waits until it accepts connections.
pub(crate) async fn spawn(
    exe: &PathBuf,
    c: &winmdm_server::Config,
    env: &[(String, String)],
) -> Result<tokio::process::Child, String> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
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
            // An armed crash point may fire as soon as the port accepts requests: that
            // abort (SIGABRT) is the exit the caller waits for, not a failed start.
            if crash_point_abort(env, &status) {
                return Ok(child);
            }
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

/// A TCP pass-through in front of the replicas: TLS ends at the replicas, which share
/// their certificate through the data directory, so the proxy sees only bytes. New
/// connections go to the preferred replica.
pub struct Proxy {
    backends: Vec<SocketAddr>,
    prefer: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(
        listen: SocketAddr,
        backends: Vec<SocketAddr>,
    ) -> Result<Proxy, String> {
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
