//! `winmdm-load bench`: throughput figures of this machine in one run, and their ratios.
//!
//! (a) RSA-2048 signatures/s with aws-lc-rs, one signing thread per core; (b) enrollments/s
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
use winmdm::target::Target;

mod phases;
mod report;
mod resume;
mod server;

pub use phases::Connect;
use phases::{enroll_phase, finish_enrollment, prepare, syncml_phase};
pub use report::{capacity, BenchReport, EnrollFigure, SyncmlFigure};
pub use server::{disk_written, machine_idle, process_cpu, server_cpu, BenchServer};
pub use winmdm_server::tls::TlsKeyType;

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
    #[error("RSA key rejected by aws-lc-rs: {0}")]
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
    /// Keep per-interval figures of phase (d) for the charts of `--html`.
    pub timeline: bool,
    /// Measure OpenSSL's RSA-2048 signing rate too (`openssl speed`), when installed.
    pub openssl: bool,
    /// Key type of the servers' TLS certificate.
    pub tls_key_type: TlsKeyType,
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
            timeline: false,
            openssl: true,
            tls_key_type: TlsKeyType::Ecdsa,
        }
    }
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
    let sqlite_synchronous = server.sqlite_synchronous;

    note(opts.progress, "(c) SyncML on SQLite");
    let mut syncml = Vec::new();
    let take: Vec<_> = enrolled.into_iter().take(opts.syncml_devices).collect();
    for connect in [Connect::KeepAlive, Connect::New, Connect::NewFullHandshake] {
        if connect != Connect::KeepAlive {
            note(
                opts.progress,
                &format!("(c) SyncML on SQLite, {}", connect.label()),
            );
        }
        syncml.push(
            syncml_phase(
                "sqlite",
                connect,
                &server.target,
                server.store(),
                &pool,
                take.clone(),
                opts.syncml_time,
            )
            .await?,
        );
    }
    server.stop().await;
    if let Some(admin) = winmdm::embedded::postgres_admin_url() {
        note(opts.progress, "(c) SyncML on Postgres");
        let pg = BenchServer::start(Some(&admin), opts.tls_key_type).await?;
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
                Connect::KeepAlive,
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
    let server = BenchServer::start(None, opts.tls_key_type).await?;
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
            timeline: opts.timeline,
        },
    )
    .await?;
    server.stop().await;
    let rsa2048_sign_per_s_openssl = if opts.openssl {
        note(opts.progress, "openssl speed rsa2048");
        tokio::task::spawn_blocking(move || openssl_sign_rate(cores))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    Ok(BenchReport {
        cores,
        rsa2048_sign_per_s,
        rsa2048_sign_per_s_openssl,
        sqlite_synchronous: sqlite_synchronous.to_string(),
        tls_key_type: opts.tls_key_type,
        enroll,
        enroll_device_signing,
        syncml,
        devices,
    })
}

/// RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second with aws-lc-rs (what the server signs with), `threads` threads.
pub fn rsa_sign_rate(pkcs8: &[u8], threads: usize, time: Duration) -> Result<f64, BenchError> {
    let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8)
        .map_err(|e| BenchError::Key(e.to_string()))?;
    let count = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let mut sig = vec![0u8; key.public_modulus_len()];
                let msg = [7u8; 32];
                let mut n = 0u64;
                while started.elapsed() < time {
                    for _ in 0..8 {
                        if key
                            .sign(
                                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                                &rng,
                                &msg,
                                &mut sig,
                            )
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

/// RSA-2048 signatures/s of `openssl speed -multi <cores> rsa2048`, None when openssl
/// is missing or its output is not understood. The `sign/s` column is found by its
/// header, so the layout of OpenSSL 1.1 and 3.x both read.
pub fn openssl_sign_rate(cores: usize) -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed",
            "-seconds",
            "3",
            "-multi",
            &cores.to_string(),
            "rsa2048",
        ])
        .output()
        .ok()?;
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
}

/// The `sign/s` figure of the `rsa 2048 bits` row of `openssl speed` output.
pub fn parse_openssl_speed(text: &str) -> Option<f64> {
    let header = text.lines().find(|l| l.contains("sign/s"))?;
    let column = header.split_whitespace().position(|c| c == "sign/s")?;
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa") && l.contains("2048 bits"))?;
    let values: Vec<&str> = row
        .split_whitespace()
        .skip_while(|t| *t != "bits")
        .skip(1)
        .collect();
    values.get(column)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn openssl_speed_output_is_read_by_its_header() {
        let v3 = "                   sign    verify    encrypt   decrypt   sign/s verify/s  encr./s  decr./s\nrsa   2048 bits 0.000710s 0.000021s 0.000022s 0.000700s   1408.5  47415.9  45620.0   1428.6\n";
        assert_eq!(super::parse_openssl_speed(v3), Some(1408.5));
        let v1 = "                  sign    verify    sign/s verify/s\nrsa 2048 bits 0.000108s 0.000003s   9285.3 316045.2\n";
        assert_eq!(super::parse_openssl_speed(v1), Some(9285.3));
        assert_eq!(super::parse_openssl_speed("nothing"), None);
    }
}
