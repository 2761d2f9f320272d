//! `winmdm-load load`: many emulated devices enrolling through the full flow, then checking
//! in on their DMClient poll schedule (compressed by a time scale) until the run ends.
//!
//! Idle devices are cheap: an enrolled device is a [`CheckinState`] (DeviceID, client
//! certificate, session counter) plus an index into the [`keypool::KeyPool`], waiting
//! in one heap ordered by next check-in; `concurrency` worker tasks serve the heap and
//! the enrollment queue. Requests without a client certificate share one keep-alive
//! client; each check-in opens its own mTLS connection, as a device does, and resumes
//! the TLS session of the device's last check-in ([`session::DeviceSession`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_windows_client::http::TlsContext;
use fake_windows_client::{CheckinState, ClientError, Device, DeviceProfile};
use serde_json::json;

use crate::keypool::{self, KeyPool};
use crate::stats::{self, error_kind, Stats};
use crate::timeline::Timeline;
use winmdm::target::Target;

mod report;
mod session;

pub use report::LoadReport;

/// How long in-flight work may run past the end of the run before it is abandoned.
const GRACE: Duration = Duration::from_secs(30);
/// Orbit config polls before a device gives up waiting for the enrollment notification.
const MAX_CONFIG_POLLS: u32 = 10;

/// Why a load run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    KeyPool(#[from] keypool::KeyPoolError),
    #[error("TLS set-up: {0}")]
    Tls(#[from] ClientError),
    #[error("invalid option: {0}")]
    Option(String),
    #[error("worker failed: {0}")]
    Join(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub devices: usize,
    /// Worker tasks (enrollments or check-ins in flight at once).
    pub concurrency: usize,
    /// Length of the run; enrollment always completes (within `duration` + 10 min).
    pub duration: Duration,
    /// Device seconds per real second for the poll schedule (1440: a day per minute).
    pub time_scale: f64,
    pub key_pool_dir: std::path::PathBuf,
    /// Check in only once, right after enrollment (no poll schedule).
    pub checkin_once: bool,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Record figures per interval for the charts of `--html` (see [`Timeline`]).
    pub timeline: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            devices: 10,
            concurrency: 32,
            duration: Duration::from_secs(60),
            time_scale: 1440.0,
            key_pool_dir: keypool::default_dir(),
            checkin_once: false,
            progress: false,
            timeline: false,
        }
    }
}

/// An idle device waiting for its next check-in.
struct Idle {
    at: Instant,
    key: u32,
    enrolled_at: Instant,
    state: CheckinState,
    /// The TLS session to resume on the next check-in.
    session: Arc<session::DeviceSession>,
}

impl PartialEq for Idle {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at && self.key == o.key
    }
}
impl Eq for Idle {}
impl PartialOrd for Idle {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Idle {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.key).cmp(&(o.at, o.key))
    }
}

/// State shared by the workers.
struct Shared {
    target: Target,
    opts: LoadOptions,
    pool: KeyPool,
    /// The TLS configuration every check-in starts from: one server-certificate
    /// verifier for every device, so that their sessions resume.
    template: rustls::ClientConfig,
    plain: reqwest::Client,
    profile: DeviceProfile,
    /// Set by the first enrolled device.
    management_url: std::sync::OnceLock<Arc<str>>,
    /// DMClient poll sets, device minutes (from the first enrolled device).
    schedule: std::sync::OnceLock<[(u64, u64); 3]>,
    next_device: AtomicUsize,
    enrolled: AtomicU64,
    enroll_done: AtomicUsize,
    checkins: AtomicU64,
    heap: Mutex<BinaryHeap<Reverse<Idle>>>,
    /// Bits per device: checked in at least once.
    checked_in: Mutex<Vec<bool>>,
    started: Instant,
    deadline: Instant,
    timeline: Option<Arc<Timeline>>,
}

impl Shared {
    /// When the device next checks in, per the poll schedule; None when the run is over.
    fn next_checkin(&self, enrolled_at: Instant, now: Instant) -> Option<Instant> {
        if self.opts.checkin_once {
            return None;
        }
        let sets = self.schedule.get()?;
        let scale = self.opts.time_scale.max(f64::MIN_POSITIVE);
        let device_now = (now.duration_since(enrolled_at).as_secs_f64() * scale) as i64;
        let next = fake_windows_client::poll::next_after(0, device_now, sets)?;
        let real = Duration::try_from_secs_f64(next as f64 / scale).ok()?;
        let at = enrolled_at.checked_add(real)?;
        (at < self.deadline).then_some(at)
    }
}

/// Runs the load against `target`.
pub async fn run(target: &Target, opts: &LoadOptions) -> Result<LoadReport, LoadError> {
    if opts.devices == 0 || opts.devices > u32::MAX as usize {
        return Err(LoadError::Option("--devices must be at least 1".into()));
    }
    if opts.concurrency == 0 {
        return Err(LoadError::Option("--concurrency must be at least 1".into()));
    }
    if !(opts.time_scale > 0.0 && opts.time_scale.is_finite()) {
        return Err(LoadError::Option(
            "--time-scale must be a positive number".into(),
        ));
    }
    let t = Instant::now();
    let pool = open_pool(&opts.key_pool_dir, opts.devices, opts.progress).await?;
    let key_generation = t.elapsed();
    let tls = TlsContext::new(&target.tls())?;
    let plain = tls.client(None)?;
    let rss_before = stats::rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let shared = Arc::new(Shared {
        target: target.clone(),
        opts: opts.clone(),
        pool,
        template: tls.config(None)?,
        plain,
        profile: DeviceProfile::random(),
        management_url: Default::default(),
        schedule: Default::default(),
        next_device: AtomicUsize::new(0),
        enrolled: AtomicU64::new(0),
        enroll_done: AtomicUsize::new(0),
        checkins: AtomicU64::new(0),
        heap: Mutex::new(BinaryHeap::new()),
        checked_in: Mutex::new(vec![false; opts.devices]),
        started,
        deadline: started + opts.duration,
        timeline: opts
            .timeline
            .then(|| Arc::new(Timeline::new(Timeline::interval_for(opts.duration)))),
    });
    let sampler = shared.timeline.clone().map(|t| {
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                t.sample_memory(stats::rss_bytes(), s.enrolled.load(Ordering::Relaxed));
                tokio::time::sleep(t.interval() / 2).await;
            }
        })
    });
    let bar = progress_bar(opts, &shared);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency {
        workers.spawn(worker(shared.clone()));
    }
    let hard_stop = shared.deadline + Duration::from_secs(600) + GRACE;
    let mut stats = Stats::default();
    let mut enroll_elapsed = Duration::ZERO;
    let mut rss_enrolled = 0;
    loop {
        let left = hard_stop.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, workers.join_next()).await {
            Ok(Some(Ok(w))) => {
                stats.merge(&w.stats);
                if w.enroll_elapsed > enroll_elapsed {
                    enroll_elapsed = w.enroll_elapsed;
                }
                if rss_enrolled == 0 {
                    rss_enrolled = w.rss_enrolled;
                }
            }
            Ok(Some(Err(e))) => return Err(LoadError::Join(e.to_string())),
            Ok(None) => break,
            Err(_) => {
                workers.abort_all();
                stats.error("run: workers stopped at the hard time limit");
                break;
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(t) = sampler {
        t.abort();
    }
    if let Some(t) = &shared.timeline {
        t.sample_memory(stats::rss_bytes(), shared.enrolled.load(Ordering::Relaxed));
    }
    let elapsed = started.elapsed();
    // Enrollment stopped at its time limit before every device was done.
    if enroll_elapsed.is_zero() {
        enroll_elapsed = elapsed;
    }
    if rss_enrolled == 0 {
        rss_enrolled = stats::rss_bytes().unwrap_or(0);
    }
    let devices_checked_in = shared
        .checked_in
        .lock()
        .map(|v| v.iter().filter(|b| **b).count() as u64)
        .unwrap_or(0);
    let state_bytes_per_device = {
        let heap = shared
            .heap
            .lock()
            .map_err(|e| LoadError::Join(e.to_string()))?;
        let n = heap.len().max(1);
        let bytes: usize = heap
            .iter()
            .map(|Reverse(i)| {
                std::mem::size_of::<Reverse<Idle>>()
                    + i.state.footprint()
                    + session::DeviceSession::footprint()
            })
            .sum();
        (bytes / n + shared.pool.bytes_per_key()) as u64
    };
    Ok(LoadReport {
        devices: opts.devices,
        concurrency: opts.concurrency,
        enrolled: stats.enrolled,
        devices_checked_in,
        checkins: stats.checkins,
        checkin_resumptions: stats.checkin_resumptions,
        checkin_full_handshakes: stats.checkin_full_handshakes,
        syncml_messages: stats.syncml_messages,
        commands: stats.commands,
        enroll_elapsed,
        elapsed,
        stats,
        rss_before,
        rss_enrolled,
        state_bytes_per_device,
        keys_generated: shared.pool.generated,
        key_generation,
        timeline: shared.timeline.as_ref().map(|t| (t.interval(), t.slots())),
    })
}

async fn open_pool(dir: &std::path::Path, n: usize, progress: bool) -> Result<KeyPool, LoadError> {
    let dir = dir.to_path_buf();
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(n as u64);
        b.set_style(style("key pool"));
        b
    });
    let b2 = bar.clone();
    let pool = tokio::task::spawn_blocking(move || {
        KeyPool::open(&dir, n, &|done, total| {
            if let Some(b) = &b2 {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        })
    })
    .await
    .map_err(|e| LoadError::Join(e.to_string()))??;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(pool)
}

fn style(prefix: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(&format!(
        "{prefix} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{msg}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// The enrollment bar, with check-ins in its message, redrawn by a ticker task that
/// ends with the run.
fn progress_bar(opts: &LoadOptions, shared: &Arc<Shared>) -> Option<indicatif::ProgressBar> {
    if !opts.progress {
        return None;
    }
    let bar = indicatif::ProgressBar::new(opts.devices as u64);
    bar.set_style(style("load"));
    let (b, s) = (bar.clone(), shared.clone());
    tokio::spawn(async move {
        while !b.is_finished() && Instant::now() < s.deadline + Duration::from_secs(660) {
            b.set_position(s.enrolled.load(Ordering::Relaxed));
            let left = s.deadline.saturating_duration_since(Instant::now());
            b.set_message(format!(
                "enrolled, {} check-ins, {:.0} s left",
                s.checkins.load(Ordering::Relaxed),
                left.as_secs_f64()
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Some(bar)
}

/// What one worker measured.
struct WorkerResult {
    stats: Stats,
    /// When this worker saw the last enrollment finish (since the start).
    enroll_elapsed: Duration,
    rss_enrolled: u64,
}

async fn worker(s: Arc<Shared>) -> WorkerResult {
    let mut stats = Stats::with_timeline(s.timeline.clone());
    let mut enroll_elapsed = Duration::ZERO;
    let mut rss_enrolled = 0;
    let enroll_stop = s.deadline + Duration::from_secs(600);
    loop {
        let now = Instant::now();
        // A due check-in first: idle devices keep their schedule while others enroll.
        let due = {
            let mut heap = match s.heap.lock() {
                Ok(h) => h,
                Err(_) => break,
            };
            match heap.peek() {
                Some(Reverse(i)) if i.at <= now && now < s.deadline => heap.pop().map(|r| r.0),
                _ => None,
            }
        };
        if let Some(idle) = due {
            let idle = check_in(&s, idle, &mut stats).await;
            if let Ok(mut heap) = s.heap.lock() {
                heap.push(Reverse(idle));
            }
            continue;
        }
        let i = s.next_device.fetch_add(1, Ordering::Relaxed);
        if i < s.opts.devices && now < enroll_stop {
            if let Some(idle) = enroll(&s, i, &mut stats).await {
                let idle = check_in(&s, idle, &mut stats).await;
                if let Ok(mut heap) = s.heap.lock() {
                    heap.push(Reverse(idle));
                }
            }
            let done = s.enroll_done.fetch_add(1, Ordering::AcqRel) + 1;
            if done == s.opts.devices {
                enroll_elapsed = s.started.elapsed();
                rss_enrolled = stats::rss_bytes().unwrap_or(0);
            }
            continue;
        }
        // Every device is taken; past the deadline nothing is left for this worker.
        if now >= s.deadline || now >= enroll_stop {
            break;
        }
        // Nothing due: sleep until the earliest check-in (or a short while, so that
        // devices enrolled by other workers are picked up).
        let wake = s
            .heap
            .lock()
            .ok()
            .and_then(|h| h.peek().map(|Reverse(i)| i.at))
            .unwrap_or(now + Duration::from_millis(50))
            .min(now + Duration::from_millis(50))
            .min(s.deadline.max(now + Duration::from_millis(1)));
        tokio::time::sleep_until(wake.into()).await;
    }
    WorkerResult {
        stats,
        enroll_elapsed,
        rss_enrolled,
    }
}

/// Times one step into `stats`; errors are counted by kind.
async fn timed<T>(
    stats: &mut Stats,
    endpoint: &'static str,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Option<T> {
    let t = Instant::now();
    match f.await {
        Ok(v) => {
            stats.time(endpoint, t.elapsed());
            Some(v)
        }
        Err(e) => {
            stats.error(error_kind(&e));
            None
        }
    }
}

/// The full enrollment of device `i`; None (error counted) when a step failed.
async fn enroll(s: &Shared, i: usize, stats: &mut Stats) -> Option<Idle> {
    let stop = s.deadline + Duration::from_secs(600) + GRACE;
    let left = stop.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, enroll_inner(s, i, stats)).await {
        Ok(r) => r,
        Err(_) => {
            stats.error("enroll: stopped at the hard time limit");
            None
        }
    }
}

async fn enroll_inner(s: &Shared, i: usize, stats: &mut Stats) -> Option<Idle> {
    let mut d = match Device::new(DeviceProfile::random(), s.target.tls()) {
        Ok(d) => d,
        Err(e) => {
            stats.error(error_kind(&e));
            return None;
        }
    };
    d.set_http_client(s.plain.clone());
    match s.pool.der(i).map(|k| d.use_key_pkcs8(k)) {
        Some(Ok(())) => {}
        _ => {
            stats.error("key pool: unreadable key");
            return None;
        }
    }
    let url = s.target.server_url.clone();
    timed(
        stats,
        "orbit_enroll",
        d.orbit_enroll(&url, &s.target.enroll_secret),
    )
    .await?;
    let mut discovery_url = None;
    for _ in 0..MAX_CONFIG_POLLS {
        let n = timed(stats, "orbit_config", d.orbit_config()).await?;
        if n.needs_programmatic_windows_mdm_enrollment {
            discovery_url = n.windows_mdm_discovery_endpoint;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(discovery_url) = discovery_url else {
        stats.error("orbit_config: no enrollment notification");
        return None;
    };
    let upn = d.profile().upn.clone();
    let token = d.node_key().unwrap_or_default().to_string();
    timed(stats, "discovery", d.discovery_probe(&discovery_url)).await?;
    let discovery = timed(stats, "discovery", d.discover(&discovery_url, &upn)).await?;
    let policy = timed(stats, "policy", d.get_policies(&discovery, &token)).await?;
    if let Err(e) = d.generate_key_pair(&policy) {
        stats.error(error_kind(&e));
        return None;
    }
    let doc = timed(
        stats,
        "enroll",
        d.request_security_token(&discovery, &policy, &token),
    )
    .await?;
    if let Err(e) = d.apply_provisioning(&discovery_url, &upn, &doc) {
        stats.error(error_kind(&e));
        return None;
    }
    let Some(state) = d.checkin_state() else {
        stats.error("client: no enrollment after provisioning");
        return None;
    };
    if let Some(e) = d.enrollment() {
        let _ = s.management_url.set(Arc::from(e.management_url.as_str()));
        if s.schedule.get().is_none() {
            let base = format!("./Vendor/MSFT/DMClient/Provider/{}/Poll/", e.provider_id);
            let sets = fake_windows_client::poll::schedule(|n| {
                d.nodes()
                    .nodes
                    .get(&format!("{base}{n}"))
                    .and_then(|v| v.data.as_deref())
                    .and_then(|v| v.trim().parse().ok())
            });
            let _ = s.schedule.set(sets);
        }
    }
    stats.enrolled += 1;
    s.enrolled.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    Some(Idle {
        at: now,
        key: i as u32,
        enrolled_at: now,
        state,
        session: Default::default(),
    })
}

/// One check-in of an idle device; returns it with its next check-in time (far in the
/// future when none is left in this run).
async fn check_in(s: &Shared, mut idle: Idle, stats: &mut Stats) -> Idle {
    let result = async {
        let url = s
            .management_url
            .get()
            .ok_or_else(|| "client: no management URL".to_string())?
            .clone();
        let key = s
            .pool
            .der(idle.key as usize)
            .ok_or_else(|| "key pool: missing key".to_string())?;
        let config = idle.session.lend(&s.template, idle.state.identity(key));
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .http1_only()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("client: TLS set-up: {e}"))?;
        // A device enrolled after the deadline still gets its first check-in.
        let now = Instant::now();
        let left = (s.deadline.max(now) + GRACE).saturating_duration_since(now);
        match tokio::time::timeout(left, idle.state.check_in(&client, &url, &s.profile)).await {
            Ok(r) => r.map_err(|e| error_kind(&e)),
            Err(_) => Err("sync: stopped at the hard time limit".to_string()),
        }
    }
    .await;
    let full_handshakes = idle.session.give_back();
    stats.checkin_full_handshakes += u64::from(full_handshakes);
    match result {
        Ok(report) => {
            if full_handshakes == 0 {
                stats.checkin_resumptions += 1;
            }
            for l in &report.latencies {
                stats.time("management", *l);
            }
            stats.checkins += 1;
            stats.syncml_messages += report.latencies.len() as u64;
            stats.commands += report.commands as u64;
            s.checkins.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut v) = s.checked_in.lock() {
                if let Some(b) = v.get_mut(idle.key as usize) {
                    *b = true;
                }
            }
        }
        Err(kind) => stats.error(kind),
    }
    let now = Instant::now();
    idle.at = s
        .next_checkin(idle.enrolled_at, now)
        .unwrap_or(s.deadline + Duration::from_secs(86_400 * 365));
    idle
}
