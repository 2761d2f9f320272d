//! `winmdm-load chaos`: a workload, faults, a history and a checker (Jepsen-style) for
//! the reference server's crash consistency.
//!
//! The server runs as a child process (`winmdm-load serve`) on SQLite or, with
//! `WINMDM_TEST_POSTGRES_URL`, on Postgres; with [`Backend::PostgresManaged`], as two
//! replicas behind a proxy on a private Postgres cluster the run can stop. Emulated
//! devices enroll and sync continuously; an admin client queues single and fleet-wide
//! commands and assigns profiles; the server is killed with SIGKILL and restarted, and
//! (managed Postgres) the database is stopped immediately and started again and the
//! replicas are swapped, at moments drawn from the seed. Afterwards a quiet period lets
//! every device sync until the queue drains, and the checker compares the history
//! (what the admin API acknowledged, what each device received, answered and applied)
//! with what the server stored. The fault schedule is reproducible from the seed; the
//! interleaving of requests is not.

mod check;
pub mod cluster;
mod ledger;
mod profiles;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_windows_client::{Device, DeviceProfile};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use winmdm::target::Target;

pub use ledger::{Ledger, Violation};

/// Where the server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// SQLite, or Postgres when `WINMDM_TEST_POSTGRES_URL` is set: one server process.
    #[default]
    FromEnvironment,
    /// A private Postgres cluster started for the run ([`cluster`]), which the run can
    /// stop and start, with two server replicas on it behind a proxy.
    PostgresManaged,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub backend: Backend,
    /// Immediate stops of the database (`pg_ctl stop -m immediate`), each followed by a
    /// start after an outage drawn from `outage` (managed Postgres only).
    pub db_restarts: usize,
    pub outage: (Duration, Duration),
    /// Replica swaps: new connections go to the other replica, then the one that had
    /// them is killed and a new process started in its place (managed Postgres only).
    pub swaps: usize,
    /// Extra environment of every server process (a test-only fault of
    /// `winmdm_server::crash::FAULTS`, with its confirmation).
    pub server_env: Vec<(String, String)>,
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

impl ChaosOptions {
    /// A small run: 5 devices, 3 kills, every crash point, no database fault.
    pub fn new(serve_exe: PathBuf) -> ChaosOptions {
        ChaosOptions {
            backend: Backend::FromEnvironment,
            db_restarts: 0,
            outage: (Duration::from_millis(1000), Duration::from_millis(3000)),
            swaps: 0,
            server_env: Vec::new(),
            devices: 5,
            kills: 3,
            seed: 1,
            kill_gap: (Duration::from_millis(300), Duration::from_millis(900)),
            quiet: Duration::from_secs(90),
            crash_points: true,
            serve_exe,
            progress: false,
        }
    }
}

/// Management messages of sessions begun while the database was down. Every 200 is
/// checked by `answered_status_stored` like any other.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutageAnswers {
    pub messages: u64,
    pub answered_5xx: u64,
    /// Answered 200 once the database was back (the request waited for a connection).
    pub answered_200_after: u64,
    /// Answered 200 in a session that also ended before the database was started.
    pub answered_200_while_down: u64,
    /// No answer (connection refused, reset or timed out) or another status.
    pub other: u64,
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
    pub db_restarts: usize,
    pub swaps: usize,
    pub outage: OutageAnswers,
    /// Profile assignments the admin API acknowledged, and those checked.
    pub assignments_acknowledged: usize,
    pub assignments_checked: usize,
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
        writeln!(
            w,
            "  {} database restarts, {} replica swaps, {} renewals, {} profile assignments acknowledged ({} checked)",
            self.db_restarts,
            self.swaps,
            self.renewals,
            self.assignments_acknowledged,
            self.assignments_checked
        )?;
        if self.db_restarts > 0 {
            let o = &self.outage;
            writeln!(
                w,
                "  sessions begun while the database was down: {} management messages, {} answered 5xx, {} answered 200 while it was down, {} answered 200 after it was back, {} other",
                o.messages, o.answered_5xx, o.answered_200_while_down, o.answered_200_after, o.other
            )?;
        }
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
    #[error("database: {0}")]
    Database(String),
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
    /// Odd while the database is down (from after the stop returned until just before
    /// the start): a session that began and ended in one odd epoch ran wholly in it.
    outage_epoch: std::sync::atomic::AtomicU64,
    /// Profile assignments the admin API acknowledged (profile, device), and every pair
    /// ever asked for (answered or not: each pair is asked for once).
    assignments: Mutex<Vec<(String, String)>>,
    assignment_requests: Mutex<std::collections::BTreeSet<(String, String)>>,
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    DbRestart,
    Swap,
}

/// Runs a blocking cluster command without stalling the other tasks of its worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn note(progress: bool, msg: &str) {
    if progress {
        eprintln!("chaos: {msg}");
    }
}

/// Runs the workload with the faults, then the checker.
pub async fn run(opts: &ChaosOptions) -> Result<ChaosReport, ChaosError> {
    let started = Instant::now();
    let cluster = match opts.backend {
        Backend::FromEnvironment => None,
        Backend::PostgresManaged => {
            Some(blocking(cluster::Cluster::start).map_err(ChaosError::Database)?)
        }
    };
    let server = match &cluster {
        None => {
            winmdm::embedded::start_process_with(
                opts.serve_exe.clone(),
                winmdm::embedded::postgres_admin_url(),
                opts.server_env.clone(),
            )
            .await
        }
        Some(c) => {
            winmdm::embedded::start_replicas_with(
                opts.serve_exe.clone(),
                2,
                c.admin_url(),
                opts.server_env.clone(),
                Some(1),
            )
            .await
        }
    }
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
        outage_epoch: std::sync::atomic::AtomicU64::new(0),
        assignments: Mutex::new(Vec::new()),
        assignment_requests: Mutex::new(Default::default()),
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
    let mut faults = vec![Fault::Kill; opts.kills];
    if cluster.is_some() {
        faults.extend(vec![Fault::DbRestart; opts.db_restarts]);
        faults.extend(vec![Fault::Swap; opts.swaps]);
        faults.shuffle(&mut rng);
    }
    let (mut kills, mut db_restarts, mut swaps) = (0, 0, 0);
    let total = faults.len();
    for (k, fault) in faults.into_iter().enumerate() {
        let (lo, hi) = opts.kill_gap;
        let gap = rng.gen_range(lo.as_millis()..=hi.as_millis().max(lo.as_millis()));
        tokio::time::sleep(Duration::from_millis(gap as u64)).await;
        match (fault, &cluster) {
            (Fault::Kill, _) => {
                server
                    .control
                    .kill_and_restart()
                    .await
                    .map_err(ChaosError::Server)?;
                kills += 1;
            }
            (Fault::DbRestart, Some(c)) => {
                let (lo, hi) = opts.outage;
                let outage = rng.gen_range(lo.as_millis()..=hi.as_millis().max(lo.as_millis()));
                blocking(|| c.stop_immediate()).map_err(ChaosError::Database)?;
                run.outage_epoch.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(outage as u64)).await;
                run.outage_epoch.fetch_add(1, Ordering::SeqCst);
                blocking(|| c.start_again()).map_err(ChaosError::Database)?;
                db_restarts += 1;
            }
            (Fault::Swap, Some(_)) => {
                let old = server.control.preferred_replica().await.unwrap_or(0);
                server
                    .control
                    .route_to_replica(1 - old.min(1))
                    .await
                    .map_err(ChaosError::Server)?;
                // Devices move over as their connections to the old replica end: let a
                // few do so by themselves before the old replica is killed.
                tokio::time::sleep(Duration::from_millis(rng.gen_range(100..500))).await;
                server
                    .control
                    .restart_replica(old)
                    .await
                    .map_err(ChaosError::Server)?;
                swaps += 1;
            }
            (_, None) => {}
        }
        note(
            opts.progress,
            &format!("fault {}/{total}: {fault:?}", k + 1),
        );
    }
    let mut crash_points = Vec::new();
    if opts.crash_points {
        for point in winmdm_server::crash::POINTS {
            let nth = rng.gen_range(1..=3);
            let mut env = opts.server_env.clone();
            env.retain(|(k, _)| k != "WINMDM_ALLOW_CRASH_POINTS");
            env.extend([
                ("WINMDM_CRASH_AT".to_string(), format!("{point}:{nth}")),
                ("WINMDM_ALLOW_CRASH_POINTS".to_string(), "1".to_string()),
            ]);
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
            .restart_with_env(opts.server_env.clone())
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
    drop(cluster);
    report.seed = opts.seed;
    report.kills = kills;
    report.db_restarts = db_restarts;
    report.swaps = swaps;
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
        let epoch = run.outage_epoch.load(Ordering::SeqCst);
        let _ = d.sync().await;
        let exchanges = d.take_exchanges();
        if epoch % 2 == 1 {
            let wholly = run.outage_epoch.load(Ordering::SeqCst) == epoch;
            ledger.read_during_outage(&exchanges, wholly);
        }
        ledger.read(&exchanges);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
    }
    // The last word: a session after the drain, with whatever certificate the device
    // holds (a certificate handed to it must be accepted on management).
    let last = d.sync().await;
    ledger.read(&d.take_exchanges());
    ledger.final_session_ok = Some(last.is_ok());
    ledger.tree = profiles::policy_nodes(&d);
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
    let mut saved = false;
    loop {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..250))).await;
        let devices: Vec<String> = run.enrolled.lock().map(|e| e.clone()).unwrap_or_default();
        if devices.is_empty() {
            continue;
        }
        // The profiles are saved once (again until the API says 201); then one round
        // in six assigns a profile instead of queueing a command.
        if !saved {
            saved = profiles::save_all(&run).await;
            if saved {
                profiles::assign_some(&run, &devices, &mut rng).await;
            }
            continue;
        }
        if rng.gen_bool(1.0 / 6.0) {
            profiles::assign_some(&run, &devices, &mut rng).await;
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

/// Posts `body` to the admin API; the response, None when the request failed.
async fn admin_send(run: &Run, url: &str, body: &serde_json::Value) -> Option<reqwest::Response> {
    let token = run.target.admin_token.as_deref()?;
    run.admin
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()
}

async fn admin_post(run: &Run, url: &str, body: &serde_json::Value) -> Option<String> {
    let resp = admin_send(run, url, body).await?;
    if resp.status().as_u16() != 201 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.ok()?).ok()?;
    v["command_id"].as_str().map(str::to_string)
}
