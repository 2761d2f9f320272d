//! The embedded reference server, used when no `--server` is given: either in-process
//! (a `winmdm-server` on an ephemeral port with a fresh data directory) or, for
//! scenarios that kill it, a child process running `winmdm serve` (the harness's own
//! executable, so it is always the build that runs the scenarios). Both can be
//! restarted on the same port and data; only the child process can be killed.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::capability::{Capability, Lacking};
use crate::server_control::{free_port, spawn, Backend, Control, Proxy};
use crate::target::{ManagementAuth, Target};

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
async fn base_config(
    dir: &tempfile::TempDir,
    postgres_admin: Option<String>,
) -> Result<winmdm_server::Config, String> {
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
    if let Some(admin) = postgres_admin {
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
    use winmdm_server::model::ManagementAuth as Server;
    Target {
        management_auth: match control.config.management_auth {
            Server::Mtls => ManagementAuth::Mtls,
            Server::Digest => ManagementAuth::Digest,
            Server::MtlsOrDigest => ManagementAuth::MtlsOrDigest,
        },
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
    start_in_mode(serve_exe, ManagementAuth::Mtls).await
}

/// Starts an in-process embedded server authenticating management sessions as `mode`
/// (`--management-auth`), for scenarios written for that mode.
pub async fn start_in_mode(
    serve_exe: Option<PathBuf>,
    mode: ManagementAuth,
) -> Result<Embedded, String> {
    use winmdm_server::model::ManagementAuth as Server;
    let dir = tempfile::tempdir().map_err(|e| format!("temporary data dir: {e}"))?;
    let mut config = base_config(&dir, postgres_admin_url()).await?;
    config.management_auth = match mode {
        ManagementAuth::Mtls => Server::Mtls,
        ManagementAuth::Digest => Server::Digest,
        ManagementAuth::MtlsOrDigest => Server::MtlsOrDigest,
    };
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
        child_env: Default::default(),
    });
    let target = target_for(&control, ca_pem, serve_exe);
    Ok(Embedded { target, control })
}

/// Starts the reference server as a child process (`exe serve`; `exe` is `winmdm`).
pub async fn start_process(exe: PathBuf) -> Result<Embedded, String> {
    start_process_with(exe, postgres_admin_url(), Vec::new()).await
}

/// Starts the reference server as a child process on a fresh database of the Postgres
/// server `postgres_admin` (None: SQLite), with extra environment `env` at every start
/// (a test-only fault, see `winmdm_server::crash`). Commands whose session died with the
/// process are sent again after 1 s.
pub async fn start_process_with(
    exe: PathBuf,
    postgres_admin: Option<String>,
    env: Vec<(String, String)>,
) -> Result<Embedded, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary data dir: {e}"))?;
    let mut config = base_config(&dir, postgres_admin).await?;
    config.listen = free_port()?;
    config.redeliver_after_secs = 1;
    let child = spawn(&exe, &config, &env).await?;
    let cert = dir.path().join("tls-cert.pem");
    let ca_pem = std::fs::read(&cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let control = Arc::new(Control {
        config,
        backend: Mutex::new(Backend::Process {
            exe: exe.clone(),
            child: Some(child),
        }),
        _dir: dir,
        child_env: std::sync::Mutex::new(env),
    });
    let target = target_for(&control, ca_pem, Some(exe));
    Ok(Embedded { target, control })
}

/// The running `winmdm` executable, which serves with `winmdm serve`: no other binary
/// has to be built (or can be stale).
pub fn own_exe() -> Option<PathBuf> {
    std::env::current_exe().ok()
}

/// Starts `count` server processes on one fresh Postgres database and one data
/// directory, behind a proxy whose address is the public URL they all announce. The
/// first replica creates the CA and TLS material; the others load it.
pub async fn start_replicas(exe: PathBuf, count: usize) -> Result<Embedded, String> {
    let Some(admin) = postgres_admin_url() else {
        return Err("replicas need Postgres: set WINMDM_TEST_POSTGRES_URL".into());
    };
    start_replicas_with(exe, count, admin, Vec::new(), None).await
}

/// [`start_replicas`] on a fresh database of the Postgres server `postgres_admin`, with
/// extra environment `env` at every start and, if given, `redeliver_after_secs`.
pub async fn start_replicas_with(
    exe: PathBuf,
    count: usize,
    postgres_admin: String,
    env: Vec<(String, String)>,
    redeliver_after_secs: Option<u32>,
) -> Result<Embedded, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary data dir: {e}"))?;
    let mut config = base_config(&dir, Some(postgres_admin)).await?;
    if let Some(secs) = redeliver_after_secs {
        config.redeliver_after_secs = secs;
    }
    let proxy_addr = free_port()?;
    config.public_url = Some(format!("https://{proxy_addr}"));
    let mut children = Vec::new();
    let mut backends = Vec::new();
    for _ in 0..count.max(1) {
        let mut c = config.clone();
        c.listen = free_port()?;
        children.push(spawn(&exe, &c, &env).await?);
        backends.push(c.listen);
    }
    let proxy = Proxy::start(proxy_addr, backends).await?;
    config.listen = proxy_addr;
    let cert = dir.path().join("tls-cert.pem");
    let ca_pem = std::fs::read(&cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let control = Arc::new(Control {
        config,
        backend: Mutex::new(Backend::Replicas {
            exe: exe.clone(),
            children,
            proxy,
        }),
        _dir: dir,
        child_env: std::sync::Mutex::new(env),
    });
    let target = target_for(&control, ca_pem, Some(exe));
    Ok(Embedded { target, control })
}
