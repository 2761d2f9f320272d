//! Runs scenarios against a target server with a fresh emulated Windows device each.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::capability::Capability;
use crate::context::Context;
use crate::scenario::{Scenario, Step};
pub use crate::target::Target;

/// How a step or a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// Not run, or run without the part the target cannot do; the detail says why.
    Skipped,
}

impl Verdict {
    /// `passed`, `failed` or `skipped` (CSS classes, summaries).
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Skipped => "skipped",
        }
    }
}

/// Result of one step.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    pub elapsed: Duration,
    /// Every HTTP exchange the device made during the step.
    pub exchanges: Vec<fake_windows_client::Exchange>,
    /// SHA-1 thumbprint of the client certificate the device presented on its TLS
    /// connections during the step, if any.
    pub client_cert: Option<String>,
    /// Deviations the emulated device tolerated during the step, as Windows does
    /// (warn-level checks, `docs/conformance.md`): reported, never a failure.
    pub warnings: Vec<fake_windows_client::Warning>,
}

/// Result of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioOutcome {
    pub name: String,
    pub steps: Vec<StepOutcome>,
    pub elapsed: Duration,
    /// Why the scenario as a whole was skipped: the target lacks a capability it
    /// requires. Steps skipped for other capabilities leave it None.
    pub skipped: Option<String>,
}

impl ScenarioOutcome {
    /// Failed when a step failed; else skipped when the target lacks a capability the
    /// scenario requires; else passed.
    pub fn verdict(&self) -> Verdict {
        if self.steps.iter().any(|s| s.verdict == Verdict::Failed) {
            Verdict::Failed
        } else if self.skipped.is_some() {
            Verdict::Skipped
        } else {
            Verdict::Passed
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict() == Verdict::Passed
    }

    pub fn failed(&self) -> bool {
        self.verdict() == Verdict::Failed
    }
}

/// Runs one scenario; stops at the first failing step. A scenario that wants its own
/// server process gets one when the target is the embedded server.
pub async fn run_scenario(target: &Target, scenario: &Scenario) -> ScenarioOutcome {
    if let Some((c, why)) = target.lacking.first_of(&scenario.requires) {
        return skipped(scenario, format!("needs {c}: {why}"));
    }
    if let Some(mode) = scenario
        .management_auth
        .filter(|m| *m != target.management_auth)
    {
        return in_mode(target, scenario, mode).await;
    }
    let kind = scenario.server;
    if kind != crate::scenario::ServerKind::Shared && target.control.is_some() {
        let Some(exe) = target.serve_exe.clone() else {
            return setup_failure(
                scenario,
                "this scenario needs the server as a process: no winmdm executable to run `winmdm serve` with".into(),
            );
        };
        let started = match kind {
            crate::scenario::ServerKind::Replicas => crate::embedded::start_replicas(exe, 2).await,
            _ => crate::embedded::start_process(exe).await,
        };
        return on_own_server(target, scenario, started).await;
    }
    run_on(target, scenario).await
}

/// Runs the scenario on the server started for it (with the target's lacking
/// capabilities), then stops that server.
async fn on_own_server(
    target: &Target,
    scenario: &Scenario,
    started: Result<crate::embedded::Embedded, String>,
) -> ScenarioOutcome {
    match started {
        Ok(mut e) => {
            e.target.lacking = target.lacking.clone();
            let outcome = run_on(&e.target, scenario).await;
            e.control.shutdown().await;
            outcome
        }
        Err(e) => setup_failure(scenario, e),
    }
}

/// A scenario written for another management authentication than the target's: on
/// its own embedded server in that mode, or skipped against an external server (whose
/// mode is not the harness's to change).
async fn in_mode(
    target: &Target,
    scenario: &Scenario,
    mode: crate::target::ManagementAuth,
) -> ScenarioOutcome {
    if target.control.is_none() {
        return skipped(
            scenario,
            format!(
                "needs a server in --management-auth {mode}: the server under test is declared {} (harness --management-auth)",
                target.management_auth
            ),
        );
    }
    if scenario.server != crate::scenario::ServerKind::Shared {
        return setup_failure(
            scenario,
            "management_auth needs the in-process server (no server = \"process\" or \"replicas\")"
                .into(),
        );
    }
    let started = crate::embedded::start_in_mode(target.serve_exe.clone(), mode).await;
    on_own_server(target, scenario, started).await
}

/// A scenario that cannot run against this target, skipped with the reason.
fn skipped(scenario: &Scenario, why: String) -> ScenarioOutcome {
    let mut o = setup_failure(scenario, format!("skipped: {why}"));
    o.steps[0].verdict = Verdict::Skipped;
    o.skipped = Some(why);
    o
}

/// The harness's own HTTP client for the admin API: no connection reuse, so every call
/// goes wherever the target routes new connections (replica scenarios).
fn admin_client(target: &Target) -> Result<reqwest::Client, fake_windows_client::ClientError> {
    let tls = fake_windows_client::http::rustls_config(&target.tls(), None)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .http1_only()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| fake_windows_client::ClientError::Tls(e.to_string()))
}

fn setup_failure(scenario: &Scenario, detail: String) -> ScenarioOutcome {
    ScenarioOutcome {
        name: scenario.name.clone(),
        steps: vec![StepOutcome {
            name: "setup",
            verdict: Verdict::Failed,
            detail,
            elapsed: Duration::ZERO,
            exchanges: Vec::new(),
            client_cert: None,
            warnings: Vec::new(),
        }],
        elapsed: Duration::ZERO,
        skipped: None,
    }
}

/// Runs the scenario once per device (`devices`), all at once; the outcome holds every
/// device's steps, each detail prefixed with its device number when there are several.
async fn run_on(target: &Target, scenario: &Scenario) -> ScenarioOutcome {
    if scenario.devices <= 1 {
        return run_one(target, scenario).await;
    }
    let started = Instant::now();
    let runs = (0..scenario.devices).map(|_| run_one(target, scenario));
    let outcomes = join_all(runs).await;
    let mut steps = Vec::new();
    let skipped = outcomes.iter().find_map(|o| o.skipped.clone());
    for (k, o) in outcomes.into_iter().enumerate() {
        for mut s in o.steps {
            s.detail = format!("[device {}/{}] {}", k + 1, scenario.devices, s.detail);
            steps.push(s);
        }
    }
    ScenarioOutcome {
        name: scenario.name.clone(),
        steps,
        elapsed: started.elapsed(),
        skipped,
    }
}

/// Polls a set of futures to completion concurrently, keeping their order.
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The scenario's variables: `${device_id}`, `${node_key}`, `${server_url}`,
/// `${discovery_url}`, `${enrollment_id}`, `${management_url}`, `${client_thumbprint}`,
/// `${provider_id}`, `${command:<name>}`.
fn variable(ctx: &Context<'_>, name: &str) -> Option<String> {
    if let Some(cmd) = name.strip_prefix("command:") {
        return ctx.commands.get(cmd).cloned();
    }
    let e = ctx.device.enrollment();
    match name {
        "device_id" => Some(ctx.device.device_id().to_string()),
        "node_key" => ctx.device.node_key().map(str::to_string),
        "server_url" => Some(ctx.target.server_url.clone()),
        "discovery_url" => ctx.discovery_endpoint.clone(),
        "enrollment_id" => e.map(|e| e.enrollment_guid.clone()),
        "management_url" => e.map(|e| e.management_url.clone()),
        "client_thumbprint" => e.map(|e| e.client_thumbprint.clone()),
        "provider_id" => e.map(|e| e.provider_id.clone()),
        _ => None,
    }
}

/// Why a step's variables could not be filled in.
enum Unsubstituted {
    /// The step is wrong (unknown or not yet set variable, invalid result).
    Error(String),
    /// It names a command whose `queue_command` was skipped: skipped with it.
    Skipped(String),
}

/// Substitutes `${...}` in every string of a step as written; None when it has none.
fn substitute_step(
    raw: Option<&toml::Value>,
    ctx: &Context<'_>,
) -> Result<Option<Step>, Unsubstituted> {
    fn walk(v: &mut toml::Value, ctx: &Context<'_>, used: &mut bool) -> Result<(), Unsubstituted> {
        match v {
            toml::Value::String(s) if s.contains("${") => {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..].find('}').ok_or_else(|| {
                        Unsubstituted::Error(format!("unclosed variable in {s:?}"))
                    })?;
                    let name = &rest[start + 2..start + end];
                    let value = variable(ctx, name).ok_or_else(|| {
                        if name.starts_with("command:")
                            && ctx.skipped.contains(&Capability::AdminApi)
                        {
                            Unsubstituted::Skipped(format!(
                                "${{{name}}} has no value: its queue_command was skipped"
                            ))
                        } else {
                            Unsubstituted::Error(format!("variable ${{{name}}} has no value yet"))
                        }
                    })?;
                    out.push_str(&value);
                    rest = &rest[start + end + 1..];
                }
                out.push_str(rest);
                *s = out;
                *used = true;
            }
            toml::Value::Array(items) => {
                for i in items {
                    walk(i, ctx, used)?;
                }
            }
            toml::Value::Table(t) => {
                for (_, i) in t.iter_mut() {
                    walk(i, ctx, used)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let Some(raw) = raw else { return Ok(None) };
    let mut v = raw.clone();
    let mut used = false;
    walk(&mut v, ctx, &mut used)?;
    if !used {
        return Ok(None);
    }
    Step::deserialize(v)
        .map(Some)
        .map_err(|e| Unsubstituted::Error(e.to_string()))
}

async fn run_one(target: &Target, scenario: &Scenario) -> ScenarioOutcome {
    let started = Instant::now();
    let mut steps = Vec::new();
    let setup = fake_windows_client::Device::new(scenario.device_profile(), target.tls())
        .and_then(|d| Ok((d, admin_client(target)?)));
    let (device, http) = match setup {
        Ok(v) => v,
        Err(e) => {
            steps.push(StepOutcome {
                name: "setup",
                verdict: Verdict::Failed,
                detail: e.to_string(),
                elapsed: started.elapsed(),
                exchanges: Vec::new(),
                client_cert: None,
                warnings: Vec::new(),
            });
            return ScenarioOutcome {
                name: scenario.name.clone(),
                steps,
                elapsed: started.elapsed(),
                skipped: None,
            };
        }
    };
    let mut device = device;
    if target.auth_policy.is_some() || target.credentials.is_some() {
        device.set_enrollment_auth(
            target.auth_policy.clone().into_iter().collect(),
            target.credentials.clone(),
        );
    }
    let upn = device.profile().upn.clone();
    let mut ctx = Context {
        target,
        device,
        discovery_endpoint: None,
        upn,
        token: None,
        discover: None,
        policy: None,
        last_command: None,
        commands: Default::default(),
        presented_cert: None,
        management_url: None,
        admin_exchanges: Vec::new(),
        history: Vec::new(),
        skip: None,
        skipped: Default::default(),
        http,
    };
    // Set when the rest of the scenario cannot run: why its steps are skipped.
    let mut skip_rest: Option<String> = None;
    let mut scenario_skipped = None;
    for (i, parsed) in scenario.steps.iter().enumerate() {
        if let Some(why) = &skip_rest {
            steps.push(skipped_step(parsed.name(), format!("skipped: {why}")));
            continue;
        }
        let substituted = substitute_step(scenario.raw_steps.get(i), &ctx);
        let step = match &substituted {
            Ok(Some(s)) => s,
            Ok(None) => parsed,
            Err(Unsubstituted::Skipped(why)) => {
                steps.push(skipped_step(parsed.name(), format!("skipped: {why}")));
                continue;
            }
            Err(Unsubstituted::Error(e)) => {
                steps.push(StepOutcome {
                    name: parsed.name(),
                    verdict: Verdict::Failed,
                    detail: e.clone(),
                    elapsed: Duration::ZERO,
                    exchanges: Vec::new(),
                    client_cert: None,
                    warnings: Vec::new(),
                });
                break;
            }
        };
        let t = Instant::now();
        let seen = ctx.device.exchanges().len();
        if let Some(e) = ctx.device.enrollment() {
            ctx.management_url = Some(e.management_url.clone());
        }
        ctx.presented_cert = None;
        let result = crate::steps::run_step(&mut ctx, step).await;
        let skip = ctx.skip.take();
        let verdict = match (&result, &skip) {
            (Err(_), _) => Verdict::Failed,
            (Ok(_), Some(_)) => Verdict::Skipped,
            (Ok(_), None) => Verdict::Passed,
        };
        if let (Ok(_), Some(k)) = (&result, &skip) {
            ctx.skipped.insert(k.capability);
            if k.blocking || scenario.requires.contains(&k.capability) {
                scenario_skipped = Some(format!("needs {}: {}", k.capability, k.why));
                skip_rest = Some(format!("step {} {} was skipped", i + 1, step.name()));
            }
        }
        steps.push(StepOutcome {
            name: step.name(),
            verdict,
            detail: result.unwrap_or_else(|e| e),
            elapsed: t.elapsed(),
            exchanges: {
                let mut all: Vec<_> = ctx
                    .device
                    .exchanges()
                    .get(seen..)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
                all.append(&mut ctx.admin_exchanges);
                ctx.history
                    .extend(all.iter().map(|e| (step.name(), e.clone())));
                all
            },
            client_cert: ctx.presented_cert.take(),
            warnings: ctx.device.take_warnings(),
        });
        if verdict == Verdict::Failed {
            break;
        }
    }
    ScenarioOutcome {
        name: scenario.name.clone(),
        steps,
        elapsed: started.elapsed(),
        skipped: scenario_skipped,
    }
}

fn skipped_step(name: &'static str, detail: String) -> StepOutcome {
    StepOutcome {
        name,
        verdict: Verdict::Skipped,
        detail,
        elapsed: Duration::ZERO,
        exchanges: Vec::new(),
        client_cert: None,
        warnings: Vec::new(),
    }
}
