//! The steps of a scenario, one module per family (enrollment, management, profiles,
//! device checks, server control); each arrow of the sequence diagram and each
//! management action with its expectations. `run_step` dispatches by family.

use std::time::Duration;

use fake_windows_client::{ClientError, IdentityOverride, ManagementAuth};
use serde_json::Value;

use crate::capability::Capability;
use crate::context::{Context, Skip};
use crate::scenario::{AgentAction, Identity, Step};
use admin_api::{admin, delivery, strip_nulls};

mod admin_api;
pub use admin_api::error_text as admin_error_text;
mod attacks;
mod device_checks;
mod digest;
mod enrollment;
mod management;
mod profiles;
mod server_control;

pub(crate) use management::mtls_client;

type StepResult = Result<String, String>;

/// Checks a result against an optional expected SOAP fault subcode.
fn check_fault<T>(
    result: Result<T, ClientError>,
    expect_fault: &Option<String>,
) -> Result<Option<T>, String> {
    match (result, expect_fault) {
        (Ok(v), None) => Ok(Some(v)),
        (Ok(_), Some(f)) => Err(format!(
            "expected SOAP fault {f}, but the server accepted the request"
        )),
        (Err(e), None) => Err(e.to_string()),
        (Err(e), Some(f)) => match e.soap_fault() {
            Some(fault) if subcode_matches(&fault.subcode, f) => Ok(None),
            Some(fault) => Err(format!(
                "expected fault {f}, got {} ({})",
                fault.subcode, fault.reason
            )),
            None => Err(format!("expected fault {f}, got: {e}")),
        },
    }
}

fn subcode_matches(actual: &str, expected: &str) -> bool {
    let local = |s: &str| s.rsplit(':').next().unwrap_or(s).to_string();
    actual == expected || local(actual) == local(expected)
}

fn check_status<T>(
    result: Result<T, ClientError>,
    expect: Option<u16>,
) -> Result<Option<T>, String> {
    match (result, expect) {
        (Ok(v), None) => Ok(Some(v)),
        (Ok(_), Some(s)) => Err(format!("expected HTTP {s}, but the request succeeded")),
        (Err(e), None) => Err(e.to_string()),
        (Err(e), Some(s)) => match e.http_status() {
            Some(got) if got == s => Ok(None),
            _ => Err(format!("expected HTTP {s}, got: {e}")),
        },
    }
}

fn need<'a, T>(v: &'a Option<T>, what: &str) -> Result<&'a T, String> {
    v.as_ref()
        .ok_or_else(|| format!("no {what} yet: an earlier step must provide it"))
}

/// Marks the current step skipped for lack of `capability` and returns its detail.
pub(crate) fn skip(
    ctx: &mut Context<'_>,
    capability: Capability,
    why: String,
    blocking: bool,
) -> StepResult {
    let detail = format!("skipped (no {capability}): {why}");
    ctx.skip = Some(Skip {
        capability,
        why,
        blocking,
    });
    Ok(detail)
}

pub(crate) async fn run_step(ctx: &mut Context<'_>, step: &Step) -> StepResult {
    let target = ctx.target;
    if let Some(c) = step.needs() {
        if let Some(why) = target.lacking.why(c) {
            if c == Capability::Orbit && ctx.discovery_endpoint.is_none() {
                ctx.discovery_endpoint = Some(discovery_url(target));
            }
            return skip(ctx, c, why, false);
        }
    }
    match step {
        Step::OrbitEnroll { .. }
        | Step::OrbitConfig { .. }
        | Step::RegisterDeviceWithManagement { .. }
        | Step::DiscoveryProbe { .. }
        | Step::Discover { .. }
        | Step::GetPolicies { .. }
        | Step::GenerateKeyPair { .. }
        | Step::RequestSecurityToken { .. }
        | Step::Renew { .. }
        | Step::Unenroll { .. }
        | Step::OrbitAgent { .. } => enrollment::run(ctx, step).await,
        Step::QueueCommand { .. }
        | Step::ManagementSession { .. }
        | Step::CheckCommandResult { .. }
        | Step::CheckAllCommands { .. }
        | Step::ServerUnenroll { .. } => management::run(ctx, step).await,
        Step::CreateProfile { .. } | Step::AssignProfile { .. } | Step::CheckProfile { .. } => {
            profiles::run(ctx, step).await
        }
        Step::VerifyCertificate { .. }
        | Step::CheckDeviceState { .. }
        | Step::AdvanceClock { .. }
        | Step::CheckDevice { .. }
        | Step::CheckResponse { .. }
        | Step::CheckCertificate { .. }
        | Step::CheckRegistry { .. } => device_checks::run(ctx, step).await,
        Step::KillServer { .. }
        | Step::UseReplica { .. }
        | Step::RestartServer { .. }
        | Step::Wait { .. }
        | Step::Attack { .. } => server_control::run(ctx, step).await,
    }
}

/// The discovery URL of the target when no Orbit notification gives one:
/// `--discovery-url`, else the path Windows itself derives from a user's address
/// (`/EnrollmentServer/Discovery.svc`, MS-MDE2 §3.1.5), which every server a user can
/// enroll in through "Access work or school" answers.
fn discovery_url(target: &crate::target::Target) -> String {
    target
        .discovery_url
        .clone()
        .unwrap_or_else(|| format!("{}/EnrollmentServer/Discovery.svc", target.server_url))
}

/// Posts a SyncML message as a device would (the raw steps: attacks, digest); the HTTP
/// status and body.
pub(crate) async fn post_syncml(
    client: &reqwest::Client,
    url: &str,
    body: String,
) -> Result<(u16, String), String> {
    let r = client
        .post(url)
        .header("content-type", "application/vnd.syncml.dm+xml")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("management request: {e}"))?;
    let status = r.status().as_u16();
    let text = r
        .text()
        .await
        .map_err(|e| format!("management answer: {e}"))?;
    Ok((status, text))
}
