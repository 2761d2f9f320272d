//! The embedded reference server: a `winmdm-server` started in-process on an ephemeral
//! port with a fresh data directory, used when no `--server` is given. It can be
//! restarted on the same port and data (the `restart_server` step).

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::runner::Target;

/// Owns the embedded server across restarts.
pub struct Control {
    config: winmdm_server::Config,
    server: Mutex<Option<winmdm_server::RunningServer>>,
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
    /// Stops the server (ending its connections) and starts it again on the same
    /// address with the same data directory: what survives is what was stored.
    pub async fn restart(&self) -> Result<(), String> {
        let mut guard = self.server.lock().await;
        if let Some(s) = guard.take() {
            s.shutdown().await;
        }
        let started = winmdm_server::start(self.config.clone())
            .await
            .map_err(|e| format!("restarting the embedded server: {e}"))?;
        *guard = Some(started);
        Ok(())
    }

    /// Stops the server.
    pub async fn shutdown(&self) {
        if let Some(s) = self.server.lock().await.take() {
            s.shutdown().await;
        }
    }
}

/// A running embedded server and the target description pointing at it.
pub struct Embedded {
    pub target: Target,
    pub control: Arc<Control>,
}

/// Starts the embedded server.
pub async fn start() -> Result<Embedded, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary data dir: {e}"))?;
    let secret = format!("secret-{}", random_hex());
    let admin = format!("admin-{}", random_hex());
    let mut config = winmdm_server::Config::for_data_dir(dir.path().to_path_buf(), &secret);
    config.admin_token = Some(admin.clone());
    // Every emulated device shares 127.0.0.1: no per-address enrollment limit here.
    config.enroll_rate_per_client = 0;
    let server = winmdm_server::start(config.clone())
        .await
        .map_err(|e| format!("embedded server: {e}"))?;
    // Restarts reuse the port the first start picked.
    config.listen = server.addr;
    let ca_pem = std::fs::read(&server.tls_cert_path)
        .map_err(|e| format!("reading {}: {e}", server.tls_cert_path.display()))?;
    let control = Arc::new(Control {
        config,
        server: Mutex::new(Some(server)),
        _dir: dir,
    });
    let target = Target {
        server_url: format!("https://{}", control.config.listen),
        enroll_secret: secret,
        admin_token: Some(admin),
        ca_pem: Some(ca_pem),
        insecure: false,
        control: Some(control.clone()),
    };
    Ok(Embedded { target, control })
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
