//! The embedded reference server: a `winmdm-server` started in-process on an ephemeral
//! port with a fresh data directory, used when no `--server` is given.

use crate::runner::Target;

/// A running embedded server and the target description pointing at it.
pub struct Embedded {
    pub target: Target,
    pub server: winmdm_server::RunningServer,
    _dir: tempfile::TempDir,
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
    let server = winmdm_server::start(config)
        .await
        .map_err(|e| format!("embedded server: {e}"))?;
    let ca_pem = std::fs::read(&server.tls_cert_path)
        .map_err(|e| format!("reading {}: {e}", server.tls_cert_path.display()))?;
    let target = Target {
        server_url: server.public_url.clone(),
        enroll_secret: secret,
        admin_token: Some(admin),
        ca_pem: Some(ca_pem),
        insecure: false,
    };
    Ok(Embedded {
        target,
        server,
        _dir: dir,
    })
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
