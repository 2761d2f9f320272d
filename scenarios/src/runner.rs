//! Runs scenarios against a target server with a fresh emulated Windows device each.

use std::time::{Duration, Instant};

use fake_windows_client::{DeviceProfile, DiscoverResult, EnrollmentPolicy, TlsOptions};

use crate::scenario::Scenario;

/// The server under test and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub server_url: String,
    pub enroll_secret: String,
    /// Bearer token of the admin API (needed by queue_command / check_command_result).
    pub admin_token: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    /// The embedded server's controls (restart, kill), absent for external servers.
    pub control: Option<std::sync::Arc<crate::embedded::Control>>,
    /// `winmdm-serve`, for scenarios that need the embedded server as a process.
    pub serve_exe: Option<std::path::PathBuf>,
}

impl Target {
    pub(crate) fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_pem: self.ca_pem.clone(),
            insecure: self.insecure,
        }
    }
}

/// Result of one step.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
    pub elapsed: Duration,
    /// Every HTTP exchange the device made during the step.
    pub exchanges: Vec<fake_windows_client::Exchange>,
    /// SHA-1 thumbprint of the client certificate the device presented on its TLS
    /// connections during the step, if any.
    pub client_cert: Option<String>,
}

/// Result of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioOutcome {
    pub name: String,
    pub steps: Vec<StepOutcome>,
    pub elapsed: Duration,
}

impl ScenarioOutcome {
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.passed)
    }
}

/// What the steps of one scenario share.
pub(crate) struct Context<'a> {
    pub(crate) target: &'a Target,
    pub(crate) device: fake_windows_client::Device,
    pub(crate) discovery_endpoint: Option<String>,
    pub(crate) upn: String,
    pub(crate) token: Option<String>,
    pub(crate) discover: Option<DiscoverResult>,
    pub(crate) policy: Option<EnrollmentPolicy>,
    pub(crate) last_command: Option<String>,
    /// Named commands: name → command id.
    pub(crate) commands: std::collections::HashMap<String, String>,
    /// Thumbprint of the client certificate presented in the current step.
    pub(crate) presented_cert: Option<String>,
    /// The management URL of the device's latest enrollment.
    pub(crate) management_url: Option<String>,
    /// Admin API exchanges of the current step.
    pub(crate) admin_exchanges: Vec<fake_windows_client::Exchange>,
    pub(crate) http: reqwest::Client,
}

/// Runs one scenario; stops at the first failing step. A scenario that wants its own
/// server process gets one when the target is the embedded server.
pub async fn run_scenario(target: &Target, scenario: &Scenario) -> ScenarioOutcome {
    if scenario.server == crate::scenario::ServerKind::Process && target.control.is_some() {
        let Some(exe) = target.serve_exe.clone() else {
            return setup_failure(
                scenario,
                "this scenario needs the winmdm-serve binary (set WINMDM_SERVE_EXE)".into(),
            );
        };
        return match crate::embedded::start_process(exe).await {
            Ok(e) => {
                let outcome = run_on(&e.target, scenario).await;
                e.control.shutdown().await;
                outcome
            }
            Err(e) => setup_failure(scenario, e),
        };
    }
    if scenario.server == crate::scenario::ServerKind::Replicas && target.control.is_some() {
        let Some(exe) = target.serve_exe.clone() else {
            return setup_failure(
                scenario,
                "this scenario needs the winmdm-serve binary (set WINMDM_SERVE_EXE)".into(),
            );
        };
        if crate::embedded::postgres_admin_url().is_none() {
            return skipped(
                scenario,
                "replicas need Postgres (set WINMDM_TEST_POSTGRES_URL)",
            );
        }
        return match crate::embedded::start_replicas(exe, 2).await {
            Ok(e) => {
                let outcome = run_on(&e.target, scenario).await;
                e.control.shutdown().await;
                outcome
            }
            Err(e) => setup_failure(scenario, e),
        };
    }
    run_on(target, scenario).await
}

/// A scenario that cannot run here, reported as passed with the reason.
fn skipped(scenario: &Scenario, why: &str) -> ScenarioOutcome {
    let mut o = setup_failure(scenario, format!("skipped: {why}"));
    o.steps[0].passed = true;
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
            passed: false,
            detail,
            elapsed: Duration::ZERO,
            exchanges: Vec::new(),
            client_cert: None,
        }],
        elapsed: Duration::ZERO,
    }
}

async fn run_on(target: &Target, scenario: &Scenario) -> ScenarioOutcome {
    let started = Instant::now();
    let mut steps = Vec::new();
    let setup = fake_windows_client::Device::new(DeviceProfile::random(), target.tls())
        .and_then(|d| Ok((d, admin_client(target)?)));
    let (device, http) = match setup {
        Ok(v) => v,
        Err(e) => {
            steps.push(StepOutcome {
                name: "setup",
                passed: false,
                detail: e.to_string(),
                elapsed: started.elapsed(),
                exchanges: Vec::new(),
                client_cert: None,
            });
            return ScenarioOutcome {
                name: scenario.name.clone(),
                steps,
                elapsed: started.elapsed(),
            };
        }
    };
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
        http,
    };
    for step in &scenario.steps {
        let t = Instant::now();
        let seen = ctx.device.exchanges().len();
        if let Some(e) = ctx.device.enrollment() {
            ctx.management_url = Some(e.management_url.clone());
        }
        ctx.presented_cert = None;
        let result = crate::steps::run_step(&mut ctx, step).await;
        let passed = result.is_ok();
        steps.push(StepOutcome {
            name: step.name(),
            passed,
            detail: result.unwrap_or_else(|e| e),
            elapsed: t.elapsed(),
            exchanges: ctx
                .device
                .exchanges()
                .get(seen..)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            client_cert: ctx.presented_cert.take(),
        });
        if !passed {
            break;
        }
    }
    ScenarioOutcome {
        name: scenario.name.clone(),
        steps,
        elapsed: started.elapsed(),
    }
}
