//! The timed phases: enrollment of prepared devices and SyncML rounds.

use super::*;

/// A fresh server and `opts.enroll_devices` devices through Orbit (and, with `presign`,
/// their CSR signing) untimed, then the rest of their enrollment timed. Returns the
/// server, still running, the figure and the enrolled devices.
pub(super) async fn enroll_phase(
    pool: &KeyPool,
    opts: &BenchOptions,
    presign: bool,
) -> Result<(BenchServer, EnrollFigure, Vec<Enrolled>), BenchError> {
    let server = BenchServer::start(None, opts.tls_key_type).await?;
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

/// A device that did its Orbit enrollment and got the MDM notification.
pub(super) struct Prepared {
    key: u32,
    device: Device,
    discovery_url: String,
}

/// Orbit enroll + config for `n` devices (keys 0..n), untimed. With `presign`, each
/// device also signs its CSR now (SHA-1, what the embedded server's policy asks for;
/// a device facing another hash signs again in the timed window).
pub(super) async fn prepare(
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
pub(super) type Enrolled = (u32, CheckinState, String);

/// Discovery, policy and RequestSecurityToken for every prepared device, `concurrency`
/// at a time; the enrolled devices and what failed.
pub(super) async fn finish_enrollment(
    prepared: Vec<Prepared>,
    concurrency: usize,
) -> (Vec<Enrolled>, Stats) {
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

/// How the devices of a SyncML phase connect for each session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    /// One keep-alive mTLS connection per device, opened before the clock starts.
    KeepAlive,
    /// A new connection per session, as a device on its poll schedule opens one; the
    /// device keeps its TLS session cache, so the server may resume the session.
    New,
    /// A new connection per session with an empty session cache: a full handshake.
    NewFullHandshake,
}

impl Connect {
    pub fn label(self) -> &'static str {
        match self {
            Connect::KeepAlive => "keep-alive",
            Connect::New => "new connection",
            Connect::NewFullHandshake => "new connection, full handshake",
        }
    }
}

/// One device of a SyncML phase.
pub(super) struct Slot {
    state: CheckinState,
    client: reqwest::Client,
    url: String,
    /// The device's TLS configuration: its clones share one session cache.
    config: rustls::ClientConfig,
    tls: TlsContext,
    identity: fake_windows_client::http::ClientIdentity,
}

impl Slot {
    /// The client of the next session.
    fn client_for(&self, connect: Connect) -> Result<reqwest::Client, ClientError> {
        let config = match connect {
            Connect::KeepAlive => return Ok(self.client.clone()),
            Connect::New => self.config.clone(),
            Connect::NewFullHandshake => self.tls.config(Some(&self.identity))?,
        };
        // The session's messages share the connection (kept alive between them, as
        // Windows does within a session); it closes when the client is dropped after
        // the session.
        reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .http1_only()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))
    }
}

/// Per group of devices, rounds of: one admin request queueing a Get for every device, then every device
/// in a session at once over its own keep-alive mTLS connection (two messages: the
/// package 1 answered with the command, then Status and Results, stored durably).
pub(super) async fn syncml_phase(
    backend: &'static str,
    connect: Connect,
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
    let offered = Arc::new(AtomicU64::new(0));
    let mut slots = Vec::with_capacity(devices.len());
    for (key, state, url) in devices {
        let der = pool
            .der(key as usize)
            .ok_or_else(|| BenchError::Failed("missing pool key".into()))?;
        let identity = state.identity(der);
        let mut config = tls.config(Some(&identity))?;
        config.resumption = rustls::client::Resumption::store(Arc::new(
            super::resume::CountingStore::new(offered.clone()),
        ));
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config.clone())
            .http1_only()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| BenchError::Failed(e.to_string()))?;
        slots.push(Slot {
            state,
            client,
            url,
            config,
            tls: tls.clone(),
            identity,
        });
    }
    let acked_before = acknowledged(store).await?;
    let mut figure = SyncmlFigure {
        backend,
        connect,
        messages: 0,
        commands: 0,
        sessions: 0,
        errors: 0,
        acknowledged: 0,
        elapsed: Duration::ZERO,
        server_cpu: Duration::ZERO,
        device_cpu: Duration::ZERO,
        database_cpu: None,
        resumptions_offered: 0,
        disk_written: None,
        machine_idle: None,
    };
    let queue_url = format!("{}/api/v1/commands", target.server_url);
    // Warm-up: every connection is opened (and every TLS session cached) before timing
    // starts.
    let (s, _) = sessions(slots, &profile, Connect::KeepAlive).await;
    slots = s;
    // The devices run in groups, each group its own loop of rounds, so that one group's
    // admin request and slowest session overlap with the other groups' sessions.
    let per_group = slots.len().div_ceil(SYNCML_GROUPS).max(1);
    let mut groups: Vec<Vec<Slot>> = Vec::new();
    while !slots.is_empty() {
        let rest = slots.split_off(per_group.min(slots.len()));
        groups.push(std::mem::replace(&mut slots, rest));
    }
    let db_before = database_cpu(store).await;
    let offered_before = offered.load(Ordering::Relaxed);
    let cpu_before = server_cpu();
    let process_before = process_cpu();
    let (disk_before, idle_before) = (disk_written(), machine_idle());
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
                .map(|s| s.state.device_id.to_string())
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
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.text().await.unwrap_or_default();
                        return Err(format!(
                            "queueing commands: HTTP {status}: {}",
                            winmdm::admin_error_text(&body)
                        ));
                    }
                    Err(e) => return Err(format!("queueing commands: {e}")),
                }
                let (s, stats) = sessions(slots, &profile, connect).await;
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
    figure.disk_written = disk_written()
        .zip(disk_before)
        .map(|(after, before)| after.saturating_sub(before));
    figure.machine_idle = machine_idle()
        .zip(idle_before)
        .map(|(after, before)| after.saturating_sub(before));
    figure.server_cpu = server_cpu().saturating_sub(cpu_before);
    figure.device_cpu = process_cpu()
        .saturating_sub(process_before)
        .saturating_sub(figure.server_cpu);
    figure.resumptions_offered = offered.load(Ordering::Relaxed) - offered_before;
    if let (Some(before), Some(after)) = (db_before, database_cpu(store).await) {
        // A backend that started during the phase counts whole; one that ended is lost.
        let ticks: u64 = after
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
            .sum();
        figure.database_cpu = Some(Duration::from_millis(ticks * 1000 / CLOCK_TICKS_PER_S));
    }
    figure.acknowledged = acknowledged(store).await?.saturating_sub(acked_before);
    Ok(figure)
}

/// `USER_HZ`, the unit of /proc/<pid>/stat CPU times (100 on Linux for every
/// architecture the project runs on).
const CLOCK_TICKS_PER_S: u64 = 100;

/// CPU time so far (user + system, clock ticks) of each Postgres backend serving the
/// store's database (`pg_stat_activity`, then `/proc/<pid>/stat`); None on SQLite or
/// when the backends' /proc entries cannot be read (the database on another host).
async fn database_cpu(
    store: &winmdm_server::db::Store,
) -> Option<std::collections::HashMap<i64, u64>> {
    if store.backend() != winmdm_server::db::Backend::Postgres {
        return None;
    }
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'",
    )
    .fetch_all(store.pool())
    .await
    .ok()?;
    let mut out = std::collections::HashMap::new();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        out.insert(i64::from(pid), utime + stime);
    }
    Some(out)
}

/// Commands the server stored as acknowledged so far.
async fn acknowledged(store: &winmdm_server::db::Store) -> Result<u64, BenchError> {
    let acked: Result<i64, _> =
        sqlx::query_scalar("SELECT COUNT(*) FROM commands WHERE state = 'acknowledged'")
            .fetch_one(store.pool())
            .await;
    acked
        .map(|n| n as u64)
        .map_err(|e| BenchError::Failed(format!("counting acknowledged commands: {e}")))
}

/// One session per device, all at once.
async fn sessions(
    slots: Vec<Slot>,
    profile: &Arc<DeviceProfile>,
    connect: Connect,
) -> (Vec<Slot>, Stats) {
    let mut set = tokio::task::JoinSet::new();
    for mut slot in slots {
        let profile = profile.clone();
        set.spawn(async move {
            let r = match slot.client_for(connect) {
                Ok(client) => {
                    tokio::time::timeout(
                        Duration::from_secs(60),
                        slot.state.check_in(&client, &slot.url, &profile),
                    )
                    .await
                }
                Err(e) => Ok(Err(e)),
            };
            (slot, r)
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
