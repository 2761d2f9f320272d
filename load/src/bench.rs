//! `winmdm bench`: throughput figures of this machine in one run, and their ratios.
//!
//! (a) RSA-2048 signatures/s with ring, one signing thread per core; (b) enrollments/s
//! end to end against an embedded server (discovery, policy, RequestSecurityToken with
//! CSR verification, certificate signing and the database write; Orbit enrollment is
//! done beforehand and keys come from the pool) and their ratio to (a); (c) SyncML
//! messages/s over keep-alive mTLS, each session acknowledging one queued command whose
//! Status and Results are stored, on SQLite and, when `WINMDM_TEST_POSTGRES_URL` is
//! set, on Postgres; (d) many devices enrolled and checked in once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_windows_client::csr::HashAlg;
use fake_windows_client::http::TlsContext;
use fake_windows_client::{CheckinState, ClientError, Device, DeviceProfile};
use serde_json::json;

use crate::keypool::{self, KeyPool};
use crate::load::{self, LoadOptions, LoadReport};
use crate::stats::{error_kind, Stats};
use winmdm::runner::Target;

/// Hard limit on any one phase.
const PHASE_LIMIT: Duration = Duration::from_secs(900);

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error(transparent)]
    KeyPool(#[from] keypool::KeyPoolError),
    #[error("client: {0}")]
    Client(#[from] ClientError),
    #[error("server: {0}")]
    Server(#[from] winmdm_server::ServerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("RSA key rejected by ring: {0}")]
    Key(String),
    #[error("{0}")]
    Failed(String),
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Devices of phase (d).
    pub devices: usize,
    /// Devices enrolled in phase (b).
    pub enroll_devices: usize,
    /// Enrollments in flight at once in (b) and (d).
    pub concurrency: usize,
    /// Devices in session at once in (c).
    pub syncml_devices: usize,
    pub sign_time: Duration,
    pub syncml_time: Duration,
    pub key_pool_dir: std::path::PathBuf,
    pub progress: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            devices: 2000,
            enroll_devices: 1000,
            concurrency: 64,
            syncml_devices: 128,
            sign_time: Duration::from_secs(3),
            syncml_time: Duration::from_secs(8),
            key_pool_dir: keypool::default_dir(),
            progress: false,
        }
    }
}

/// SyncML throughput on one backend.
#[derive(Debug, Clone)]
pub struct SyncmlFigure {
    pub backend: &'static str,
    pub messages: u64,
    pub commands: u64,
    pub sessions: u64,
    pub errors: u64,
    /// Commands the server recorded as acknowledged at the end (durable).
    pub acknowledged: u64,
    pub elapsed: Duration,
    /// CPU time of the server threads during the phase.
    pub server_cpu: Duration,
}

impl SyncmlFigure {
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn commands_per_s(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn server_cpu_us_per_msg(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / (self.messages.max(1) as f64)
    }
    /// Messages/s the server threads would sustain with every core (see [`capacity`]).
    pub fn capacity(&self, cores: usize) -> f64 {
        capacity(self.messages, self.server_cpu, cores)
    }
}

/// Enrollments completed in a timed window.
#[derive(Debug, Clone, Default)]
pub struct EnrollFigure {
    pub enrolled: u64,
    pub elapsed: Duration,
    pub errors: u64,
    /// CPU time of the server threads in the window.
    pub server_cpu: Duration,
}

impl EnrollFigure {
    pub fn per_s(&self) -> f64 {
        self.enrolled as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn server_cpu_ms_per_enrollment(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1000.0 / (self.enrolled.max(1) as f64)
    }
}

/// Work done per second of the server threads' CPU time, times `cores`: what the server
/// would sustain with the machine's cores to itself (0 when not measured).
pub fn capacity(count: u64, server_cpu: Duration, cores: usize) -> f64 {
    if server_cpu.is_zero() {
        return 0.0;
    }
    count as f64 / server_cpu.as_secs_f64() * cores as f64
}

/// Every figure of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub cores: usize,
    pub rsa2048_sign_per_s: f64,
    /// Phase (b).
    pub enroll: EnrollFigure,
    /// Phase (b) again with each device signing its CSR inside the timed window.
    pub enroll_device_signing: EnrollFigure,
    pub syncml: Vec<SyncmlFigure>,
    pub devices: LoadReport,
}

impl BenchReport {
    pub fn enroll_per_s(&self) -> f64 {
        self.enroll.per_s()
    }
    pub fn enroll_ratio(&self) -> f64 {
        if self.rsa2048_sign_per_s > 0.0 {
            self.enroll_per_s() / self.rsa2048_sign_per_s
        } else {
            0.0
        }
    }
    /// Enrollments/s the server threads would sustain with every core (see [`capacity`]).
    pub fn enroll_capacity(&self) -> f64 {
        capacity(self.enroll.enrolled, self.enroll.server_cpu, self.cores)
    }
    fn syncml_on(&self, backend: &str) -> Option<&SyncmlFigure> {
        self.syncml.iter().find(|s| s.backend == backend)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        let sqlite = self.syncml_on("sqlite");
        let pg = self.syncml_on("postgres");
        json!({
            "cores": self.cores,
            "rsa2048_sign_per_s": r(self.rsa2048_sign_per_s),
            "enroll_per_s": r(self.enroll_per_s()),
            "enroll_ratio": r(self.enroll_ratio()),
            "enrolled": self.enroll.enrolled,
            "enroll_errors": self.enroll.errors,
            "enroll_server_cpu_ms_per_enrollment": r(self.enroll.server_cpu_ms_per_enrollment()),
            "enroll_server_capacity_per_s": r(self.enroll_capacity()),
            "enroll_server_capacity_ratio": r(self.enroll_capacity() / self.rsa2048_sign_per_s.max(1e-9)),
            "enroll_with_device_signing_per_s": r(self.enroll_device_signing.per_s()),
            "enroll_with_device_signing_ratio": r(self.enroll_device_signing.per_s() / self.rsa2048_sign_per_s.max(1e-9)),
            "syncml_msgs_per_s": r(sqlite.map(SyncmlFigure::msgs_per_s).unwrap_or(0.0)),
            "syncml_commands_per_s": r(sqlite.map(SyncmlFigure::commands_per_s).unwrap_or(0.0)),
            "syncml_errors": sqlite.map(|s| s.errors).unwrap_or(0),
            "syncml_server_cpu_us_per_msg": r(sqlite.map(SyncmlFigure::server_cpu_us_per_msg).unwrap_or(0.0)),
            "syncml_server_capacity_msgs_per_s": r(sqlite.map(|s| s.capacity(self.cores)).unwrap_or(0.0)),
            "syncml_commands_answered": sqlite.map(|s| s.commands).unwrap_or(0),
            "syncml_commands_acknowledged": sqlite.map(|s| s.acknowledged).unwrap_or(0),
            "syncml_msgs_per_s_postgres": pg.map(|s| r(s.msgs_per_s())),
            "syncml_commands_per_s_postgres": pg.map(|s| r(s.commands_per_s())),
            "syncml_server_capacity_msgs_per_s_postgres": pg.map(|s| r(s.capacity(self.cores))),
            "devices": self.devices.devices,
            "devices_enrolled": self.devices.enrolled,
            "devices_checked_in": self.devices.devices_checked_in,
            "devices_seconds": r(self.devices.elapsed.as_secs_f64()),
            "devices_enrollments_per_s": r(self.devices.enrollments_per_s()),
            "devices_errors": self.devices.stats.error_total(),
            "rss_bytes_per_device": self.devices.rss_bytes_per_device(),
            "state_bytes_per_device": self.devices.state_bytes_per_device,
        })
    }

    pub fn print(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(w, "cores                      {}", self.cores)?;
        writeln!(
            w,
            "(a) RSA-2048 signs (ring)  {:>10.1}/s",
            self.rsa2048_sign_per_s
        )?;
        writeln!(
            w,
            "(b) enrollments            {:>10.1}/s  ({} in {:.2} s, {} errors)  enroll_ratio {:.3} (goal >= 0.5)",
            self.enroll_per_s(),
            self.enroll.enrolled,
            self.enroll.elapsed.as_secs_f64(),
            self.enroll.errors,
            self.enroll_ratio()
        )?;
        writeln!(
            w,
            "    server CPU             {:>10.3} ms/enrollment; capacity with {} cores {:.1}/s, ratio {:.3}",
            self.enroll.server_cpu_ms_per_enrollment(),
            self.cores,
            self.enroll_capacity(),
            self.enroll_capacity() / self.rsa2048_sign_per_s.max(1e-9)
        )?;
        let b2 = &self.enroll_device_signing;
        writeln!(
            w,
            "(b') with CSR signing      {:>10.1}/s  ({} in {:.2} s, {} errors; each device signs its CSR in the timed window)",
            b2.per_s(),
            b2.enrolled,
            b2.elapsed.as_secs_f64(),
            b2.errors
        )?;
        for s in &self.syncml {
            writeln!(
                w,
                "(c) SyncML msgs {:<10} {:>10.1}/s  ({:.1} commands/s; {} messages, {} sessions, {} errors in {:.2} s; {} of {} answered commands stored as acknowledged; goal >= 10000/s)",
                s.backend,
                s.msgs_per_s(),
                s.commands_per_s(),
                s.messages,
                s.sessions,
                s.errors,
                s.elapsed.as_secs_f64(),
                s.acknowledged,
                s.commands
            )?;
            writeln!(
                w,
                "    server CPU             {:>10.1} us/message; capacity with {} cores {:.1}/s",
                s.server_cpu_us_per_msg(),
                self.cores,
                s.capacity(self.cores)
            )?;
        }
        let d = &self.devices;
        writeln!(
            w,
            "(d) {} devices enrolled and checked in once: {} enrolled, {} checked in, {:.2} s, {} errors; RSS growth {} B/device, compact state {} B/device",
            d.devices,
            d.enrolled,
            d.devices_checked_in,
            d.elapsed.as_secs_f64(),
            d.stats.error_total(),
            d.rss_bytes_per_device(),
            d.state_bytes_per_device
        )
    }
}

/// A server started for one phase, on a runtime of its own: its threads (and its
/// database threads) are told apart from the emulated devices' to measure its CPU time.
pub struct BenchServer {
    pub target: Target,
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
    pub async fn start(postgres_admin_url: Option<&str>) -> Result<Self, BenchError> {
        let dir = tempfile::tempdir()?;
        let hex = || uuid::Uuid::new_v4().simple().to_string();
        let mut config = winmdm_server::Config::for_data_dir(
            dir.path().to_path_buf(),
            &format!("secret-{}", hex()),
        );
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
        };
        Ok(BenchServer {
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

fn note(progress: bool, msg: &str) {
    if progress {
        eprintln!("bench: {msg}");
    }
}

/// Runs every phase.
pub async fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pool_size = opts
        .devices
        .max(opts.enroll_devices)
        .max(opts.syncml_devices)
        .max(1);
    note(opts.progress, &format!("key pool of {pool_size} keys"));
    let dir = opts.key_pool_dir.clone();
    let pool = tokio::task::spawn_blocking(move || KeyPool::open(&dir, pool_size, &|_, _| {}))
        .await
        .map_err(|e| BenchError::Failed(e.to_string()))??;

    note(opts.progress, "(a) RSA-2048 signatures");
    let key = pool
        .der(0)
        .ok_or_else(|| BenchError::Failed("empty key pool".into()))?
        .to_vec();
    let sign_time = opts.sign_time;
    let rsa2048_sign_per_s =
        tokio::task::spawn_blocking(move || rsa_sign_rate(&key, cores, sign_time))
            .await
            .map_err(|e| BenchError::Failed(e.to_string()))??;

    note(
        opts.progress,
        "(b') enrollments, CSR signed in the timed window",
    );
    let (server, enroll_device_signing, _) = enroll_phase(&pool, opts, false).await?;
    server.stop().await;

    note(opts.progress, "(b) enrollments");
    let (server, enroll, enrolled) = enroll_phase(&pool, opts, true).await?;

    note(opts.progress, "(c) SyncML on SQLite");
    let mut syncml = Vec::new();
    let take: Vec<_> = enrolled.into_iter().take(opts.syncml_devices).collect();
    syncml.push(
        syncml_phase(
            "sqlite",
            &server.target,
            server.store(),
            &pool,
            take,
            opts.syncml_time,
        )
        .await?,
    );
    server.stop().await;
    if let Some(admin) = winmdm::embedded::postgres_admin_url() {
        note(opts.progress, "(c) SyncML on Postgres");
        let pg = BenchServer::start(Some(&admin)).await?;
        let prepared = prepare(
            &pg.target,
            &pool,
            opts.syncml_devices,
            opts.concurrency,
            true,
        )
        .await?;
        let (enrolled, _) = finish_enrollment(prepared, opts.concurrency).await;
        syncml.push(
            syncml_phase(
                "postgres",
                &pg.target,
                pg.store(),
                &pool,
                enrolled,
                opts.syncml_time,
            )
            .await?,
        );
        pg.stop().await;
    }

    note(
        opts.progress,
        &format!("(d) {} devices enrolled and checked in once", opts.devices),
    );
    let server = BenchServer::start(None).await?;
    let devices = load::run(
        &server.target,
        &LoadOptions {
            devices: opts.devices,
            concurrency: opts.concurrency,
            duration: Duration::ZERO,
            time_scale: 1.0,
            key_pool_dir: opts.key_pool_dir.clone(),
            checkin_once: true,
            progress: opts.progress,
        },
    )
    .await?;
    server.stop().await;
    Ok(BenchReport {
        cores,
        rsa2048_sign_per_s,
        enroll,
        enroll_device_signing,
        syncml,
        devices,
    })
}

/// A fresh server and `opts.enroll_devices` devices through Orbit (and, with `presign`,
/// their CSR signing) untimed, then the rest of their enrollment timed. Returns the
/// server, still running, the figure and the enrolled devices.
async fn enroll_phase(
    pool: &KeyPool,
    opts: &BenchOptions,
    presign: bool,
) -> Result<(BenchServer, EnrollFigure, Vec<Enrolled>), BenchError> {
    let server = BenchServer::start(None).await?;
    let n = opts.enroll_devices;
    let prepared = prepare(&server.target, pool, n, opts.concurrency, presign).await?;
    note(opts.progress, "timed window starts");
    let cpu_before = server_cpu();
    let started = Instant::now();
    let (enrolled, stats) = finish_enrollment(prepared, opts.concurrency).await;
    let figure = EnrollFigure {
        enrolled: stats.enrolled,
        elapsed: started.elapsed(),
        errors: stats.error_total()
            + (n as u64).saturating_sub(stats.enrolled + stats.error_total()),
        server_cpu: server_cpu().saturating_sub(cpu_before),
    };
    Ok((server, figure, enrolled))
}

/// RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second with ring, `threads` threads.
pub fn rsa_sign_rate(pkcs8: &[u8], threads: usize, time: Duration) -> Result<f64, BenchError> {
    let key = ring::signature::RsaKeyPair::from_pkcs8(pkcs8)
        .map_err(|e| BenchError::Key(e.to_string()))?;
    let count = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let rng = ring::rand::SystemRandom::new();
                let mut sig = vec![0u8; key.public().modulus_len()];
                let msg = [7u8; 32];
                let mut n = 0u64;
                while started.elapsed() < time {
                    for _ in 0..8 {
                        if key
                            .sign(&ring::signature::RSA_PKCS1_SHA256, &rng, &msg, &mut sig)
                            .is_ok()
                        {
                            n += 1;
                        }
                    }
                }
                count.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// A device that did its Orbit enrollment and got the MDM notification.
struct Prepared {
    key: u32,
    device: Device,
    discovery_url: String,
}

/// Orbit enroll + config for `n` devices (keys 0..n), untimed. With `presign`, each
/// device also signs its CSR now (SHA-1, what the embedded server's policy asks for;
/// a device facing another hash signs again in the timed window).
async fn prepare(
    target: &Target,
    pool: &KeyPool,
    n: usize,
    concurrency: usize,
    presign: bool,
) -> Result<Vec<Prepared>, BenchError> {
    let tls = TlsContext::new(&target.tls())?;
    let plain = tls.client(None)?;
    let next = Arc::new(AtomicU64::new(0));
    let out = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (target, pool, plain, next, out) = (
            target.clone(),
            pool.clone(),
            plain.clone(),
            next.clone(),
            out.clone(),
        );
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return;
                }
                let Ok(mut d) = Device::new(DeviceProfile::random(), target.tls()) else {
                    continue;
                };
                d.set_http_client(plain.clone());
                let Some(Ok(())) = pool.der(i).map(|k| d.use_key_pkcs8(k)) else {
                    continue;
                };
                if presign && d.presign_csr(HashAlg::Sha1).is_err() {
                    continue;
                }
                if d.orbit_enroll(&target.server_url, &target.enroll_secret)
                    .await
                    .is_err()
                {
                    continue;
                }
                let Ok(notes) = d.orbit_config().await else {
                    continue;
                };
                let Some(discovery_url) = notes.windows_mdm_discovery_endpoint else {
                    continue;
                };
                if let Ok(mut v) = out.lock() {
                    v.push(Prepared {
                        key: i as u32,
                        device: d,
                        discovery_url,
                    });
                }
            }
        });
    }
    let done = tokio::time::timeout(PHASE_LIMIT, async {
        while set.join_next().await.is_some() {}
    })
    .await;
    if done.is_err() {
        set.abort_all();
        return Err(BenchError::Failed("Orbit enrollment did not finish".into()));
    }
    let v = std::mem::take(&mut *out.lock().map_err(|e| BenchError::Failed(e.to_string()))?);
    Ok(v)
}

/// An enrolled device: pool key index, compact state, management URL.
type Enrolled = (u32, CheckinState, String);

/// Discovery, policy and RequestSecurityToken for every prepared device, `concurrency`
/// at a time; the enrolled devices and what failed.
async fn finish_enrollment(prepared: Vec<Prepared>, concurrency: usize) -> (Vec<Enrolled>, Stats) {
    let queue = Arc::new(Mutex::new(prepared));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let queue = queue.clone();
        set.spawn(async move {
            let mut stats = Stats::default();
            let mut done = Vec::new();
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(mut p) = next else { break };
                match enroll_prepared(&mut p).await {
                    Ok(e) => {
                        stats.enrolled += 1;
                        done.push(e);
                    }
                    Err(e) => stats.error(error_kind(&e)),
                }
            }
            (done, stats)
        });
    }
    let mut all = Vec::new();
    let mut stats = Stats::default();
    let joined = tokio::time::timeout(PHASE_LIMIT, async {
        while let Some(r) = set.join_next().await {
            match r {
                Ok((d, s)) => {
                    all.extend(d);
                    stats.merge(&s);
                }
                Err(e) => stats.error(format!("worker: {e}")),
            }
        }
    })
    .await;
    if joined.is_err() {
        stats.error("enrollment stopped at the phase time limit");
    }
    (all, stats)
}

async fn enroll_prepared(p: &mut Prepared) -> Result<Enrolled, ClientError> {
    let d = &mut p.device;
    let upn = d.profile().upn.clone();
    let token = d.node_key().unwrap_or_default().to_string();
    d.discovery_probe(&p.discovery_url).await?;
    let discovery = d.discover(&p.discovery_url, &upn).await?;
    let policy = d.get_policies(&discovery, &token).await?;
    d.generate_key_pair(&policy)?;
    let doc = d
        .request_security_token(&discovery, &policy, &token)
        .await?;
    d.apply_provisioning(&p.discovery_url, &upn, &doc)?;
    let state = d
        .checkin_state()
        .ok_or_else(|| ClientError::State("not enrolled after provisioning".into()))?;
    let url = d
        .enrollment()
        .map(|e| e.management_url.clone())
        .unwrap_or_default();
    Ok((p.key, state, url))
}

/// Device groups running their rounds side by side in (c).
const SYNCML_GROUPS: usize = 4;

/// Per group of devices, rounds of: one admin request queueing a Get for every device, then every device
/// in a session at once over its own keep-alive mTLS connection (two messages: the
/// package 1 answered with the command, then Status and Results, stored durably).
async fn syncml_phase(
    backend: &'static str,
    target: &Target,
    store: &winmdm_server::db::Store,
    pool: &KeyPool,
    devices: Vec<Enrolled>,
    time: Duration,
) -> Result<SyncmlFigure, BenchError> {
    if devices.is_empty() {
        return Err(BenchError::Failed(format!(
            "no enrolled device for the SyncML phase on {backend}"
        )));
    }
    let tls = TlsContext::new(&target.tls())?;
    let admin = tls.client(None)?;
    let token = target.admin_token.clone().unwrap_or_default();
    let profile = Arc::new(DeviceProfile::random());
    let mut slots = Vec::with_capacity(devices.len());
    for (key, state, url) in devices {
        let der = pool
            .der(key as usize)
            .ok_or_else(|| BenchError::Failed("missing pool key".into()))?;
        let client = tls.client(Some(&state.identity(der)))?;
        slots.push((state, client, url));
    }
    let mut figure = SyncmlFigure {
        backend,
        messages: 0,
        commands: 0,
        sessions: 0,
        errors: 0,
        acknowledged: 0,
        elapsed: Duration::ZERO,
        server_cpu: Duration::ZERO,
    };
    let queue_url = format!("{}/api/v1/commands", target.server_url);
    // Warm-up: every connection is opened before timing starts.
    let (s, _) = sessions(slots, &profile).await;
    slots = s;
    // The devices run in groups, each group its own loop of rounds, so that one group's
    // admin request and slowest session overlap with the other groups' sessions.
    let per_group = slots.len().div_ceil(SYNCML_GROUPS).max(1);
    let mut groups: Vec<Vec<Slot>> = Vec::new();
    while !slots.is_empty() {
        let rest = slots.split_off(per_group.min(slots.len()));
        groups.push(std::mem::replace(&mut slots, rest));
    }
    let cpu_before = server_cpu();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for group in groups {
        let (admin, token, queue_url, profile) = (
            admin.clone(),
            token.clone(),
            queue_url.clone(),
            profile.clone(),
        );
        set.spawn(async move {
            let ids: Vec<String> = group
                .iter()
                .map(|(s, _, _)| s.device_id.to_string())
                .collect();
            let body =
                json!({"device_ids": ids, "verb": "Get", "target": "./DevDetail/SwV"}).to_string();
            let mut slots = group;
            let mut total = Stats::default();
            let mut rounds = 0u32;
            while started.elapsed() < time && rounds < 100_000 {
                rounds += 1;
                let r = admin
                    .post(&queue_url)
                    .bearer_auth(&token)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {}
                    Ok(resp) => return Err(format!("queueing commands: HTTP {}", resp.status())),
                    Err(e) => return Err(format!("queueing commands: {e}")),
                }
                let (s, stats) = sessions(slots, &profile).await;
                slots = s;
                total.merge(&stats);
            }
            Ok(total)
        });
    }
    while let Some(joined) = set.join_next().await {
        let stats = joined
            .map_err(|e| BenchError::Failed(e.to_string()))?
            .map_err(BenchError::Failed)?;
        figure.messages += stats.syncml_messages;
        figure.commands += stats.commands;
        figure.sessions += stats.checkins;
        figure.errors += stats.error_total();
    }
    figure.elapsed = started.elapsed();
    figure.server_cpu = server_cpu().saturating_sub(cpu_before);
    let acked: Result<i64, _> =
        sqlx::query_scalar("SELECT COUNT(*) FROM commands WHERE state = 'acknowledged'")
            .fetch_one(store.pool())
            .await;
    figure.acknowledged = acked
        .map_err(|e| BenchError::Failed(format!("counting acknowledged commands: {e}")))?
        as u64;
    Ok(figure)
}

type Slot = (CheckinState, reqwest::Client, String);

/// One session per device, all at once.
async fn sessions(slots: Vec<Slot>, profile: &Arc<DeviceProfile>) -> (Vec<Slot>, Stats) {
    let mut set = tokio::task::JoinSet::new();
    for (mut state, client, url) in slots {
        let profile = profile.clone();
        set.spawn(async move {
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                state.check_in(&client, &url, &profile),
            )
            .await;
            ((state, client, url), r)
        });
    }
    let mut out = Vec::new();
    let mut stats = Stats::default();
    while let Some(j) = set.join_next().await {
        match j {
            Ok((slot, r)) => {
                match r {
                    Ok(Ok(rep)) => {
                        stats.checkins += 1;
                        stats.syncml_messages += rep.latencies.len() as u64;
                        stats.commands += rep.commands as u64;
                    }
                    Ok(Err(e)) => stats.error(error_kind(&e)),
                    Err(_) => stats.error("sync: timeout"),
                }
                out.push(slot);
            }
            Err(e) => stats.error(format!("worker: {e}")),
        }
    }
    (out, stats)
}
