//! The server of one phase, on a runtime of its own, and the CPU time of its threads.

use super::*;

/// A server started for one phase, on a runtime of its own: its threads (and its
/// database threads) are told apart from the emulated devices' to measure its CPU time.
pub struct BenchServer {
    pub target: Target,
    /// The `PRAGMA synchronous` of its SQLite database (the server's default).
    pub sqlite_synchronous: &'static str,
    store: winmdm_server::db::Store,
    server: Option<winmdm_server::RunningServer>,
    runtime: ServerRuntime,
    _dir: tempfile::TempDir,
}

/// Name prefix of the server runtime's threads.
const SERVER_THREAD: &str = "winmdm-srv";

impl BenchServer {
    /// An in-process server on SQLite, or on a fresh Postgres database created through
    /// `postgres_admin_url`.
    pub async fn start(
        postgres_admin_url: Option<&str>,
        tls_key_type: TlsKeyType,
    ) -> Result<Self, BenchError> {
        let dir = tempfile::tempdir()?;
        let hex = || uuid::Uuid::new_v4().simple().to_string();
        let mut config = winmdm_server::Config::for_data_dir(
            dir.path().to_path_buf(),
            &format!("secret-{}", hex()),
        );
        if tls_key_type != TlsKeyType::Ecdsa {
            // The server generates an ECDSA certificate when given none.
            let (cert, key) = winmdm_server::tls::self_signed_pem(
                vec!["localhost".into(), "127.0.0.1".into()],
                tls_key_type,
            )?;
            let (cert_path, key_path) = (
                dir.path().join("bench-tls-cert.pem"),
                dir.path().join("bench-tls-key.pem"),
            );
            std::fs::write(&cert_path, cert)?;
            winmdm_server::tls::write_private(&key_path, key.as_bytes())?;
            config.tls_cert = Some(cert_path);
            config.tls_key = Some(key_path);
        }
        config.admin_token = Some(format!("admin-{}", hex()));
        config.enroll_rate_per_client = 0;
        if let Some(admin) = postgres_admin_url {
            config.database_url =
                Some(winmdm_server::db::create_scratch_postgres_database(admin).await?);
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()?;
        // Started from a blocking thread so that every task it spawns lands on `rt`.
        let handle = rt.handle().clone();
        let runtime = ServerRuntime(Some(rt));
        let cfg = config.clone();
        let server =
            tokio::task::spawn_blocking(move || handle.block_on(winmdm_server::start(cfg)))
                .await
                .map_err(|e| BenchError::Failed(e.to_string()))??;
        let ca_pem = std::fs::read(&server.tls_cert_path)?;
        let target = Target {
            server_url: format!("https://{}", server.addr),
            enroll_secret: config.enroll_secret.clone(),
            admin_token: config.admin_token.clone(),
            ca_pem: Some(ca_pem),
            insecure: false,
            control: None,
            serve_exe: None,
            token: None,
            discovery_url: None,
            auth_policy: None,
            credentials: None,
            lacking: Default::default(),
            management_auth: Default::default(),
        };
        Ok(BenchServer {
            sqlite_synchronous: config.sqlite_synchronous.pragma(),
            target,
            store: server.state.store.clone(),
            server: Some(server),
            runtime,
            _dir: dir,
        })
    }

    pub fn store(&self) -> &winmdm_server::db::Store {
        &self.store
    }

    pub async fn stop(mut self) {
        if let (Some(rt), Some(server)) = (self.runtime.0.take(), self.server.take()) {
            let _ = rt.spawn(server.shutdown()).await;
            rt.shutdown_background();
        }
    }
}

/// The server's runtime. Dropped in async code (a phase that fails returns early) it
/// is shut down in the background, as dropping a runtime the usual way there panics.
struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// CPU time so far of the whole process, every thread (ended ones included), from
/// `/proc/self/stat` (user + system, clock ticks of 10 ms). Zero where /proc is missing.
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Bytes this process has caused to be written to storage so far (`write_bytes` of
/// `/proc/self/io`, counted as pages are dirtied: the SQLite WAL's and checkpoints'
/// writes); None where it cannot be read.
pub fn disk_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Idle and I/O-wait time so far of the whole machine, summed over its cores (the
/// `cpu` line of `/proc/stat`, in `USER_HZ` ticks of 10 ms); None where it cannot be
/// read.
pub fn machine_idle() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait ...
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let ticks = f.get(3)? + f.get(4)?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time so far of this process's server threads: the server runtime's workers and
/// blocking threads, the SQLite writer and sqlx's SQLite workers
/// (`/proc/self/task/*/schedstat`, nanoseconds on CPU). Zero where /proc is missing.
pub fn server_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        let server = comm.starts_with(SERVER_THREAD)
            || comm == "sqlite-writer"
            || comm.starts_with("sqlx-sqlite");
        if !server {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}
