//! `winmdm-load chaos`: a workload, faults, a history and a checker (Jepsen-style) for
//! the reference server's crash consistency.
//!
//! The server runs as a child process (`winmdm-load serve`) on SQLite or, with
//! `WINMDM_TEST_POSTGRES_URL`, on Postgres. Emulated devices enroll and sync
//! continuously; an admin client queues single and fleet-wide commands; the server is
//! killed with SIGKILL and restarted at moments drawn from the seed. Afterwards a quiet
//! period lets every device sync until the queue drains, and the checker compares the
//! history (what the admin API acknowledged, what each device received and answered)
//! with what the server stored. The fault schedule is reproducible from the seed; the
//! interleaving of requests is not.

mod check;
mod ledger;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_windows_client::{Device, DeviceProfile};
use rand::{Rng, SeedableRng};
use serde_json::json;
use winmdm::target::Target;

pub use ledger::{Ledger, Violation};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub devices: usize,
    /// SIGKILLs of the server.
    pub kills: usize,
    pub seed: u64,
    /// Time between kills, drawn uniformly from this range.
    pub kill_gap: (Duration, Duration),
    /// Longest wait for the queue to drain after the last kill.
    pub quiet: Duration,
    /// After the random kills, crash the server at each named crash point in turn
    /// (`winmdm_server::crash::POINTS`).
    pub crash_points: bool,
    /// The executable that serves with `serve` (this one).
    pub serve_exe: PathBuf,
    pub progress: bool,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub seed: u64,
    pub kills: usize,
    pub enrolled: usize,
    pub commands_acknowledged: usize,
    pub deliveries_checked: usize,
    pub messages: u64,
    pub answered_messages: u64,
    /// Checks passed per invariant.
    pub passed: std::collections::BTreeMap<&'static str, u64>,
    pub violations: Vec<Violation>,
    pub elapsed: Duration,
    /// Each crash point visited, and whether the server died there.
    pub crash_points: Vec<(&'static str, bool)>,
    /// Devices renewed during the run.
    pub renewals: u64,
}

impl ChaosReport {
    pub fn print(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            w,
            "chaos seed {}: {} kills, {} devices enrolled, {} commands acknowledged by the admin API, {} deliveries checked, {} management messages ({} answered 200), {:.1} s",
            self.seed,
            self.kills,
            self.enrolled,
            self.commands_acknowledged,
            self.deliveries_checked,
            self.messages,
            self.answered_messages,
            self.elapsed.as_secs_f64()
        )?;
        for (point, hit) in &self.crash_points {
            writeln!(
                w,
                "  crash point {point:<24} {}",
                if *hit {
                    "reached: the server aborted there"
                } else {
                    "not reached"
                }
            )?;
        }
        for (invariant, n) in &self.passed {
            let failed = self
                .violations
                .iter()
                .filter(|v| v.invariant == *invariant)
                .count();
            writeln!(w, "  {invariant:<28} {n:>6} checked, {failed} violated")?;
        }
        if let Some(v) = self.violations.first() {
            writeln!(
                w,
                "first violation ({}), device {}: {}\n  history: {}",
                v.invariant, v.device_id, v.detail, v.excerpt
            )?;
        }
        Ok(())
    }
}

/// Why a run could not be made (a violation is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{0}")]
    Server(String),
    #[error("no device enrolled: the run tested nothing")]
    NothingEnrolled,
}

/// Shared by the tasks of a run.
struct Run {
    target: Target,
    /// Set when the faults are over and the devices should stop.
    stop: AtomicBool,
    enrolled: Mutex<Vec<String>>,
    ledgers: Mutex<Vec<Ledger>>,
    /// Admin-acknowledged commands: id and target devices.
    acknowledged: Mutex<Vec<(String, Vec<String>)>>,
    admin: reqwest::Client,
    renewals: std::sync::atomic::AtomicU64,
}

fn note(progress: bool, msg: &str) {
    if progress {
        eprintln!("chaos: {msg}");
    }
}

/// Runs the workload with the faults, then the checker.
pub async fn run(opts: &ChaosOptions) -> Result<ChaosReport, ChaosError> {
    let started = Instant::now();
    let server = winmdm::embedded::start_process(opts.serve_exe.clone())
        .await
        .map_err(ChaosError::Server)?;
    let admin = fake_windows_client::http::client(&server.target.tls(), None)
        .map_err(|e| ChaosError::Server(e.to_string()))?;
    let run = Arc::new(Run {
        target: server.target.clone(),
        stop: AtomicBool::new(false),
        enrolled: Mutex::new(Vec::new()),
        ledgers: Mutex::new(Vec::new()),
        acknowledged: Mutex::new(Vec::new()),
        admin,
        renewals: std::sync::atomic::AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..opts.devices {
        tasks.spawn(device(run.clone(), opts.seed.wrapping_add(i as u64)));
    }
    // New devices keep arriving, so that enrollments cross the faults too.
    let arrivals = {
        let run = run.clone();
        let seed = opts.seed;
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xa11);
            let mut arrivals = tokio::task::JoinSet::new();
            let mut n = 0u64;
            while !run.stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
                n += 1;
                arrivals.spawn(device(run.clone(), seed.wrapping_add(1_000_000 + n)));
            }
            while arrivals.join_next().await.is_some() {}
        })
    };
    let admin_task = tokio::spawn(admin_workload(run.clone(), opts.seed));
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut kills = 0;
    for k in 0..opts.kills {
        let (lo, hi) = opts.kill_gap;
        let gap = rng.gen_range(lo.as_millis()..=hi.as_millis().max(lo.as_millis()));
        tokio::time::sleep(Duration::from_millis(gap as u64)).await;
        server
            .control
            .kill_and_restart()
            .await
            .map_err(ChaosError::Server)?;
        kills += 1;
        note(opts.progress, &format!("kill {}/{}", k + 1, opts.kills));
    }
    let mut crash_points = Vec::new();
    if opts.crash_points {
        for point in winmdm_server::crash::POINTS {
            let nth = rng.gen_range(1..=3);
            let env = vec![
                ("WINMDM_CRASH_AT".to_string(), format!("{point}:{nth}")),
                ("WINMDM_ALLOW_CRASH_POINTS".to_string(), "1".to_string()),
            ];
            server
                .control
                .restart_with_env(env)
                .await
                .map_err(ChaosError::Server)?;
            let hit = server.control.wait_for_exit(Duration::from_secs(30)).await;
            note(
                opts.progress,
                &format!(
                    "crash point {point}: {}",
                    if hit {
                        "reached"
                    } else {
                        "not reached in 30 s"
                    }
                ),
            );
            crash_points.push((point, hit));
        }
        server
            .control
            .restart_with_env(Vec::new())
            .await
            .map_err(ChaosError::Server)?;
    }
    admin_task.abort();
    note(opts.progress, "faults over: waiting for the queue to drain");
    check::wait_for_drain(&run, opts.quiet).await;
    run.stop.store(true, Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    let _ = arrivals.await;
    let mut report = check::check(&run).await;
    report.crash_points = crash_points;
    report.renewals = run.renewals.load(Ordering::SeqCst);
    server.control.shutdown().await;
    report.seed = opts.seed;
    report.kills = kills;
    report.elapsed = started.elapsed();
    if report.enrolled == 0 {
        return Err(ChaosError::NothingEnrolled);
    }
    Ok(report)
}

/// One device: enroll (again and again while the server is down), then sync on a
/// short random schedule until the run stops; its exchanges go to its ledger.
async fn device(run: Arc<Run>, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let Ok(mut d) = Device::new(DeviceProfile::random(), run.target.tls()) else {
        return;
    };
    while !d.is_enrolled() {
        if run.stop.load(Ordering::SeqCst) {
            return;
        }
        if enroll(&mut d, &run.target).await.is_err() {
            d.take_exchanges();
            tokio::time::sleep(Duration::from_millis(rng.gen_range(100..400))).await;
        }
    }
    d.take_exchanges();
    let device_id = d.device_id().to_string();
    if let Ok(mut e) = run.enrolled.lock() {
        e.push(device_id.clone());
    }
    let mut ledger = Ledger::new(&device_id);
    while !run.stop.load(Ordering::SeqCst) {
        // Now and then a renewal (MS-WSTEP Renew), so that renewals cross the faults.
        if rng.gen_bool(0.02) && d.renew().await.is_ok() {
            run.renewals.fetch_add(1, Ordering::SeqCst);
        }
        let _ = d.sync().await;
        ledger.read(&d.take_exchanges());
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
    }
    // The last word: a session after the drain, with whatever certificate the device
    // holds (a certificate handed to it must be accepted on management).
    let last = d.sync().await;
    ledger.read(&d.take_exchanges());
    ledger.final_session_ok = Some(last.is_ok());
    if let Ok(mut l) = run.ledgers.lock() {
        l.push(ledger);
    }
}

/// The device's whole enrollment, Orbit first (a failed step starts over).
async fn enroll(d: &mut Device, target: &Target) -> Result<(), String> {
    let e = |e: fake_windows_client::ClientError| e.to_string();
    d.orbit_enroll(&target.server_url, &target.enroll_secret)
        .await
        .map_err(e)?;
    let n = d.orbit_config().await.map_err(e)?;
    let url = n
        .windows_mdm_discovery_endpoint
        .filter(|_| n.needs_programmatic_windows_mdm_enrollment)
        .ok_or("no enrollment notification")?;
    let upn = d.profile().upn.clone();
    let token = d.node_key().unwrap_or_default().to_string();
    d.discovery_probe(&url).await.map_err(e)?;
    let discovery = d.discover(&url, &upn).await.map_err(e)?;
    let policy = d.get_policies(&discovery, &token).await.map_err(e)?;
    d.generate_key_pair(&policy).map_err(e)?;
    let doc = d
        .request_security_token(&discovery, &policy, &token)
        .await
        .map_err(e)?;
    d.apply_provisioning(&url, &upn, &doc).map_err(e)
}

/// Queues single and fleet-wide commands for enrolled devices; keeps the ones the admin
/// API acknowledged (HTTP 201 with an id). A request whose answer was lost to a kill is
/// not in the history: nothing is promised for it.
async fn admin_workload(run: Arc<Run>, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let targets = ["./DevDetail/SwV", "./DevInfo/DevId", "./DevDetail/OEM"];
    loop {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..250))).await;
        let devices: Vec<String> = run.enrolled.lock().map(|e| e.clone()).unwrap_or_default();
        if devices.is_empty() {
            continue;
        }
        let fleet = rng.gen_bool(0.3);
        let chosen: Vec<String> = if fleet {
            let n = rng.gen_range(1..=devices.len().min(8));
            (0..n)
                .map(|_| devices[rng.gen_range(0..devices.len())].clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            vec![devices[rng.gen_range(0..devices.len())].clone()]
        };
        let body = json!({
            "device_ids": chosen,
            "verb": "Get",
            "target": targets[rng.gen_range(0..targets.len())],
        });
        let (url, body) = if fleet {
            (format!("{}/api/v1/commands", run.target.server_url), body)
        } else {
            let mut b = body;
            let id = chosen[0].clone();
            if let Some(o) = b.as_object_mut() {
                o.remove("device_ids");
            }
            (
                format!("{}/api/v1/devices/{id}/commands", run.target.server_url),
                b,
            )
        };
        let Some(id) = admin_post(&run, &url, &body).await else {
            continue;
        };
        if let Ok(mut a) = run.acknowledged.lock() {
            a.push((id, chosen));
        }
    }
}

async fn admin_post(run: &Run, url: &str, body: &serde_json::Value) -> Option<String> {
    let token = run.target.admin_token.as_deref()?;
    let resp = run
        .admin
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    if resp.status().as_u16() != 201 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.ok()?).ok()?;
    v["command_id"].as_str().map(str::to_string)
}
