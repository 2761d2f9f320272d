//! One function per step: each arrow of the sequence diagram and each management
//! action, with its expectations.

use std::time::Duration;

use fake_windows_client::{ClientError, IdentityOverride};
use serde_json::Value;

use crate::capability::Capability;
use crate::runner::{Context, Skip};
use crate::scenario::{AgentAction, Identity, Step};

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
    let orbit_absent = target.lacking.why(Capability::Orbit).is_some();
    match step {
        Step::OrbitEnroll {
            enroll_secret,
            expect_status,
        } => {
            let secret = enroll_secret.as_deref().unwrap_or(&target.enroll_secret);
            let r = ctx.device.orbit_enroll(&target.server_url, secret).await;
            // An external server without the Orbit endpoints: skipped, not failed, even
            // when the step expected a refusal (the scenario is then about Orbit auth).
            let absent = match &r {
                Err(e) => e.http_status().filter(|s| matches!(s, 404 | 405)),
                Ok(_) => None,
            };
            if let (Some(status), None) = (absent, &target.control) {
                let why = format!("the server has no Orbit endpoints (HTTP {status})");
                target.lacking.mark(Capability::Orbit, why.clone());
                ctx.discovery_endpoint = Some(discovery_url(target));
                return skip(ctx, Capability::Orbit, why, false);
            }
            match check_status(r, *expect_status)? {
                Some(_) => Ok("node key issued".into()),
                None => Ok(format!(
                    "refused with HTTP {}",
                    expect_status.unwrap_or_default()
                )),
            }
        }
        Step::OrbitConfig {
            expect_notification,
            max_polls,
            poll_interval_ms,
        } => {
            for poll in 1..=(*max_polls).max(1) {
                let n = ctx.device.orbit_config().await.map_err(|e| e.to_string())?;
                let notified = n.needs_programmatic_windows_mdm_enrollment;
                if !*expect_notification {
                    return if notified {
                        Err("server still asks for MDM enrollment".into())
                    } else {
                        Ok("no enrollment notification".into())
                    };
                }
                if notified {
                    let url = n.windows_mdm_discovery_endpoint.ok_or(
                        "needs_programmatic_windows_mdm_enrollment without windows_mdm_discovery_endpoint",
                    )?;
                    ctx.discovery_endpoint = Some(url.clone());
                    return Ok(format!("notified after {poll} poll(s): {url}"));
                }
                tokio::time::sleep(Duration::from_millis(*poll_interval_ms)).await;
            }
            Err(format!(
                "no enrollment notification after {max_polls} polls"
            ))
        }
        Step::RegisterDeviceWithManagement { upn, token }
            if target.token.is_some()
                || orbit_absent
                || (ctx.discovery_endpoint.is_none()
                    && (target.credentials.is_some()
                        || target.auth_policy.as_deref() == Some("Federated"))) =>
        {
            if ctx.discovery_endpoint.is_none() {
                ctx.discovery_endpoint = Some(discovery_url(target));
            }
            if let Some(u) = upn {
                ctx.upn = u.clone();
            }
            ctx.token = token.clone().or_else(|| target.token.clone());
            if ctx.token.is_none() {
                if target.credentials.is_none()
                    && target.auth_policy.as_deref() != Some("Federated")
                {
                    // Nothing to enroll with: the rest of the scenario cannot run.
                    let why = "without Orbit there is no DeviceEnrollmentUserToken: pass --token, or --username/--password";
                    return skip(ctx, Capability::Orbit, why.into(), true);
                }
                // Authenticated by user name and password (or the federated page) instead.
                ctx.token = Some(String::new());
            }
            Ok(format!(
                "RegisterDeviceWithManagement({}, discovery URL, --token)",
                ctx.upn
            ))
        }
        Step::RegisterDeviceWithManagement { upn, token } => {
            need(&ctx.discovery_endpoint, "discovery endpoint")?;
            if let Some(u) = upn {
                ctx.upn = u.clone();
            }
            let t = match token {
                Some(t) => t.clone(),
                None => ctx
                    .device
                    .node_key()
                    .ok_or("no node key: run orbit_enroll first")?
                    .to_string(),
            };
            ctx.token = Some(t);
            Ok(format!(
                "RegisterDeviceWithManagement({}, discovery URL, node key)",
                ctx.upn
            ))
        }
        Step::DiscoveryProbe {} => {
            let url = need(&ctx.discovery_endpoint, "discovery endpoint")?.clone();
            ctx.device
                .discovery_probe(&url)
                .await
                .map_err(|e| e.to_string())?;
            Ok("GET answered 200".into())
        }
        Step::Discover { expect_fault } => {
            let url = need(&ctx.discovery_endpoint, "discovery endpoint")?.clone();
            let upn = ctx.upn.clone();
            let r = ctx.device.discover(&url, &upn).await;
            match check_fault(r, expect_fault)? {
                Some(d) => {
                    // Federated: the token comes from the authentication page, unless
                    // RegisterDeviceWithManagement already handed Windows one (its
                    // accessToken argument, sent as the security token as-is; the
                    // sign-in page is for a user enrolling without a token).
                    let has_token = ctx.token.as_deref().is_some_and(|t| !t.is_empty());
                    if d.auth_policy == "Federated" && !has_token {
                        let upn = ctx.upn.clone();
                        let token = ctx
                            .device
                            .federated_token(&d, &upn)
                            .await
                            .map_err(|e| e.to_string())?;
                        ctx.token = Some(token);
                    }
                    let detail = format!(
                        "policy {} / enroll {}",
                        d.enrollment_policy_service_url, d.enrollment_service_url
                    );
                    ctx.discover = Some(d);
                    Ok(detail)
                }
                None => Ok("fault as expected".into()),
            }
        }
        Step::GetPolicies {
            token,
            expect_fault,
        } => {
            let d = need(&ctx.discover, "discovery result")?.clone();
            let t = token
                .clone()
                .or_else(|| ctx.token.clone())
                .ok_or("no access token")?;
            let r = ctx.device.get_policies(&d, &t).await;
            match check_fault(r, expect_fault)? {
                Some(p) => {
                    let detail = format!("minimalKeyLength {}", p.minimal_key_length);
                    ctx.policy = Some(p);
                    Ok(detail)
                }
                None => Ok("fault as expected".into()),
            }
        }
        Step::GenerateKeyPair {} => {
            let p = need(&ctx.policy, "enrollment policy")?.clone();
            ctx.device
                .generate_key_pair(&p)
                .map_err(|e| e.to_string())?;
            Ok(format!("RSA-{} key pair", p.minimal_key_length.max(2048)))
        }
        Step::RequestSecurityToken {
            token,
            expect_fault,
        } => {
            let d = need(&ctx.discover, "discovery result")?.clone();
            let p = need(&ctx.policy, "enrollment policy")?.clone();
            let t = token
                .clone()
                .or_else(|| ctx.token.clone())
                .ok_or("no access token")?;
            let r = ctx.device.request_security_token(&d, &p, &t).await;
            match check_fault(r, expect_fault)? {
                Some(doc) => {
                    let url = need(&ctx.discovery_endpoint, "discovery endpoint")?.clone();
                    let upn = ctx.upn.clone();
                    ctx.device
                        .apply_provisioning(&url, &upn, &doc)
                        .map_err(|e| e.to_string())?;
                    Ok("certificate issued, provisioning document applied".into())
                }
                None => Ok("fault as expected".into()),
            }
        }
        Step::VerifyCertificate {} => crate::checks::verify_certificate(&ctx.device),
        Step::CheckDeviceState {} => {
            crate::checks::device_state(&ctx.device, ctx.discovery_endpoint.as_deref())
        }
        Step::QueueCommand {
            name,
            syncml,
            verb,
            target: node,
            format,
            mime_type,
            data,
            repeat,
        } => {
            let data = match (data, repeat) {
                (Some(d), Some(n)) => Some(d.repeat(*n)),
                (d, _) => d.clone(),
            };
            let body = strip_nulls(serde_json::json!({
                "syncml": syncml, "verb": verb, "target": node, "format": format, "type": mime_type, "data": data,
            }));
            let path = format!("/api/v1/devices/{}/commands", ctx.device.device_id());
            let v = admin(ctx, reqwest::Method::POST, &path, Some(body)).await?;
            let id = v["command_id"]
                .as_str()
                .ok_or("admin API answer lacks command_id")?
                .to_string();
            ctx.last_command = Some(id.clone());
            if let Some(n) = name {
                ctx.commands.insert(n.clone(), id.clone());
            }
            let what = match (verb, node) {
                (Some(v), Some(t)) => format!("{v} {t}"),
                _ => "SyncML command".to_string(),
            };
            Ok(format!("{what} queued as {id}"))
        }
        Step::ManagementSession {
            identity,
            expect_status,
            min_round_trips,
            expect_commands,
            expect_no_commands,
            source_device_id,
        } => {
            let o = match identity {
                Identity::Enrolled => IdentityOverride::None,
                Identity::None => IdentityOverride::NoCertificate,
                Identity::Previous => match ctx.device.previous_identity_pem() {
                    Some((cert_pem, key_pem)) => IdentityOverride::Foreign { cert_pem, key_pem },
                    None if ctx.skipped.contains(&Capability::Renewal) => {
                        let why = "no previous certificate: the renew step was skipped".into();
                        return skip(ctx, Capability::Renewal, why, false);
                    }
                    None => return Err("the device has no previous certificate".into()),
                },
                Identity::Foreign => {
                    let (cert_pem, key_pem) =
                        fake_windows_client::foreign_identity(ctx.device.device_id())
                            .map_err(|e| e.to_string())?;
                    IdentityOverride::Foreign { cert_pem, key_pem }
                }
            };
            ctx.presented_cert = match identity {
                Identity::Enrolled => ctx.device.enrollment().map(|e| e.client_thumbprint.clone()),
                Identity::None => None,
                Identity::Foreign => Some("foreign (self-signed CA)".into()),
                Identity::Previous => Some("previous certificate".into()),
            };
            if let Some(other) = source_device_id {
                // The device's own certificate, another device's DeviceID.
                let (cert_pem, key_pem) = match &o {
                    IdentityOverride::Foreign { cert_pem, key_pem } => {
                        (cert_pem.clone(), key_pem.clone())
                    }
                    _ => ctx
                        .device
                        .client_identity_pem()
                        .ok_or("the device holds no certificate")?,
                };
                let status = stale_session(ctx, &cert_pem, &key_pem, other).await?;
                return expect_answer(status, *expect_status);
            }
            if !ctx.device.is_enrolled() {
                // An unenrolled device no longer syncs; replay its last identity by hand
                // to check that the server refuses it.
                let IdentityOverride::Foreign { cert_pem, key_pem } = &o else {
                    return Err("the device is not enrolled".into());
                };
                let device_id = ctx.device.device_id().to_string();
                let status = stale_session(ctx, cert_pem, key_pem, &device_id).await?;
                return expect_answer(status, *expect_status);
            }
            ctx.device.set_identity_override(o);
            let r = ctx.device.sync().await;
            ctx.device.set_identity_override(IdentityOverride::None);
            if let Some(how) = refused_in_handshake(&r, *expect_status) {
                return Ok(how);
            }
            let Some(report) = check_status(r, *expect_status)? else {
                return Ok(format!(
                    "refused with HTTP {}",
                    expect_status.unwrap_or_default()
                ));
            };
            // Commands a skipped queue_command would have queued are not expected.
            let unqueued = ctx.skipped.contains(&Capability::AdminApi)
                && (*min_round_trips > 1 || !expect_commands.is_empty());
            let (min_round_trips, expect_commands): (&usize, &[String]) = if unqueued {
                (&1, &[])
            } else {
                (min_round_trips, expect_commands)
            };
            if report.round_trips < *min_round_trips {
                return Err(format!(
                    "{} round trip(s), expected at least {min_round_trips}",
                    report.round_trips
                ));
            }
            if *expect_no_commands && !report.server_commands.is_empty() {
                let sent: Vec<String> = report
                    .server_commands
                    .iter()
                    .map(|c| format!("{} {}", c.verb, c.target.as_deref().unwrap_or("")))
                    .collect();
                return Err(format!("expected no commands, the server sent {sent:?}"));
            }
            for want in expect_commands {
                let found = report
                    .server_commands
                    .iter()
                    .any(|c| format!("{} {}", c.verb, c.target.as_deref().unwrap_or("")) == *want);
                if !found {
                    return Err(format!("server did not send {want:?}"));
                }
            }
            Ok(format!(
                "{} round trip(s), {} server command(s){}",
                report.round_trips,
                report.server_commands.len(),
                if unqueued {
                    "; expected commands not checked: their queue_command was skipped"
                } else {
                    ""
                }
            ))
        }
        Step::CheckCommandResult {
            command,
            expect_status,
            expect_state,
            expect_result_contains,
            expect_result_min_bytes,
        } => {
            let id = match command {
                Some(n) => ctx
                    .commands
                    .get(n)
                    .cloned()
                    .ok_or_else(|| format!("no command named {n:?} was queued"))?,
                None => need(&ctx.last_command, "queued command")?.clone(),
            };
            let v = delivery(ctx, &id).await?;
            let status = v["status_code"].as_str().unwrap_or("");
            if let Some(want) = expect_status {
                if status != want {
                    return Err(format!(
                        "command status {status:?}, expected {want:?} ({v})"
                    ));
                }
            }
            let state = v["state"].as_str().unwrap_or("");
            if let Some(want) = expect_state {
                if state != want {
                    return Err(format!("command state {state:?}, expected {want:?}"));
                }
            }
            let results: Vec<&str> = v["results"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["kind"] == "Results")
                .filter_map(|r| r["body_xml"].as_str())
                .collect();
            if let Some(text) = expect_result_contains {
                if !results.iter().any(|b| b.contains(text.as_str())) {
                    return Err(format!("no stored Results containing {text:?}"));
                }
            }
            if let Some(min) = expect_result_min_bytes {
                let largest = results.iter().map(|b| b.len()).max().unwrap_or(0);
                if largest < *min {
                    return Err(format!(
                        "largest stored Results is {largest} bytes, expected at least {min}"
                    ));
                }
            }
            Ok(format!(
                "state {state}, status {status}, {} Results stored",
                results.len()
            ))
        }
        Step::CreateProfile { name, items } => {
            let body = serde_json::json!({ "name": name, "items": items });
            admin(ctx, reqwest::Method::POST, "/api/v1/profiles", Some(body)).await?;
            Ok(format!("profile {name} with {} item(s)", items.len()))
        }
        Step::AssignProfile { name } => {
            let body = serde_json::json!({ "device_ids": [ctx.device.device_id()] });
            admin(
                ctx,
                reqwest::Method::POST,
                &format!("/api/v1/profiles/{name}/assign"),
                Some(body),
            )
            .await?;
            Ok(format!("profile {name} assigned"))
        }
        Step::CheckProfile {
            name,
            expect_state,
            expect_detail_contains,
        } => {
            let v = admin(
                ctx,
                reqwest::Method::GET,
                &format!("/api/v1/profiles/{name}"),
                None,
            )
            .await?;
            let device_id = ctx.device.device_id();
            let d = v["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["device_id"] == device_id)
                .ok_or_else(|| format!("profile {name} is not assigned to this device"))?;
            let state = d["state"].as_str().unwrap_or("");
            let detail = d["detail"].as_str().unwrap_or("");
            if state != expect_state {
                return Err(format!(
                    "profile {name} is {state:?} ({detail}), expected {expect_state:?}"
                ));
            }
            if let Some(text) = expect_detail_contains {
                if !detail.contains(text.as_str()) {
                    return Err(format!("profile detail {detail:?} lacks {text:?}"));
                }
            }
            Ok(if detail.is_empty() {
                state.to_string()
            } else {
                format!("{state}: {detail}")
            })
        }
        Step::ServerUnenroll {} => {
            let path = format!("/api/v1/devices/{}/unenroll", ctx.device.device_id());
            let v = admin(ctx, reqwest::Method::POST, &path, None).await?;
            if let Some(id) = v["command_id"].as_str() {
                ctx.last_command = Some(id.to_string());
            }
            Ok("unenrollment requested".into())
        }
        Step::KillServer {
            during_session,
            after_ms,
        } => {
            let Some(control) = target.control.clone() else {
                let why = "an external server cannot be killed by the harness".into();
                return skip(ctx, Capability::Kill, why, false);
            };
            if !*during_session {
                control.kill_and_restart().await?;
                return Ok("killed with SIGKILL and restarted".into());
            }
            let kill = async {
                tokio::time::sleep(Duration::from_millis(*after_ms)).await;
                control.kill_and_restart().await
            };
            let (session, killed) = tokio::join!(ctx.device.sync(), kill);
            killed?;
            Ok(match session {
                Ok(r) => format!(
                    "killed {after_ms} ms into a session that still completed ({} round trips)",
                    r.round_trips
                ),
                Err(e) => format!("killed {after_ms} ms into a session, which failed: {e}"),
            })
        }
        Step::CheckAllCommands {
            expect_state,
            expect_status,
            max_results,
        } => {
            let ids: Vec<String> = ctx.commands.values().cloned().collect();
            if ids.is_empty() {
                return Err("no named commands were queued in this scenario".into());
            }
            for id in &ids {
                let d = &delivery(ctx, id).await?;
                let state = d["state"].as_str().unwrap_or("");
                if state != expect_state {
                    return Err(format!(
                        "command {id} is {state:?}, expected {expect_state:?}"
                    ));
                }
                if let Some(want) = expect_status {
                    let got = d["status_code"].as_str().unwrap_or("");
                    if got != want {
                        return Err(format!(
                            "command {id} has status {got:?}, expected {want:?}"
                        ));
                    }
                }
                let results = d["results"]
                    .as_array()
                    .map(|r| r.iter().filter(|r| r["kind"] == "Results").count())
                    .unwrap_or(0);
                if results > *max_results {
                    return Err(format!(
                        "command {id} has {results} stored Results: duplicated"
                    ));
                }
            }
            Ok(format!(
                "{} command(s) {expect_state}, none duplicated",
                ids.len()
            ))
        }
        Step::Unenroll {} => {
            // The session presents the enrollment's certificate (captures record it).
            ctx.presented_cert = ctx.device.enrollment().map(|e| e.client_thumbprint.clone());
            let r = ctx.device.unenroll().await;
            match r {
                Ok(report) => Ok(format!(
                    "unenrolled after {} round trip(s)",
                    report.round_trips
                )),
                Err(e) => Err(format!(
                    "unenroll session failed (enrollment removed anyway): {e}"
                )),
            }
        }
        Step::OrbitAgent { expect_action } => {
            ctx.presented_cert = ctx.device.enrollment().map(|e| e.client_thumbprint.clone());
            let action = ctx
                .device
                .handle_orbit_notifications()
                .await
                .map_err(|e| e.to_string())?;
            let got = match action {
                fake_windows_client::OrbitAction::None => AgentAction::None,
                fake_windows_client::OrbitAction::Enrolled => AgentAction::Enrolled,
                fake_windows_client::OrbitAction::Unenrolled => AgentAction::Unenrolled,
            };
            if got != *expect_action {
                return Err(format!("the agent did {got:?}, expected {expect_action:?}"));
            }
            Ok(format!("agent action: {got:?}"))
        }
        Step::Renew { expect_fault } => {
            ctx.presented_cert = ctx.device.enrollment().map(|e| e.client_thumbprint.clone());
            let before = ctx.presented_cert.clone().unwrap_or_default();
            match check_fault(ctx.device.renew().await, expect_fault)? {
                Some(()) => {
                    let after = ctx
                        .device
                        .enrollment()
                        .map(|e| e.client_thumbprint.clone())
                        .unwrap_or_default();
                    if after == before {
                        return Err("renewal succeeded but the certificate did not change".into());
                    }
                    Ok(format!("certificate {before} renewed as {after}"))
                }
                None => Ok("fault as expected".into()),
            }
        }
        Step::AdvanceClock { days, hours } => {
            ctx.device
                .advance_clock(Duration::from_secs(days * 86_400 + hours * 3_600));
            Ok(format!("device clock advanced {days} d {hours} h"))
        }
        Step::CheckDevice {
            enrolled,
            renewal_due,
            reboots,
        } => {
            if let Some(want) = enrolled {
                if ctx.device.is_enrolled() != *want {
                    return Err(format!(
                        "device enrolled = {}, expected {want}",
                        ctx.device.is_enrolled()
                    ));
                }
            }
            if let Some(want) = renewal_due {
                if ctx.device.renewal_due() != *want {
                    return Err(format!(
                        "renewal due = {}, expected {want}",
                        ctx.device.renewal_due()
                    ));
                }
            }
            if let Some(want) = reboots {
                if ctx.device.reboots() != *want {
                    return Err(format!(
                        "{} RebootNow execution(s), expected {want}",
                        ctx.device.reboots()
                    ));
                }
            }
            Ok("device state as expected".into())
        }
        Step::CheckResponse {
            of,
            path,
            equals,
            contains,
            exists,
        } => {
            let found = ctx
                .history
                .iter()
                .rev()
                .filter(|(name, _)| of.as_deref().is_none_or(|o| o == *name))
                .find(|(_, e)| e.response_body.trim_start().starts_with('<'))
                .ok_or_else(|| {
                    format!(
                        "no XML response from {}",
                        of.as_deref().unwrap_or("an earlier step")
                    )
                })?;
            let value = crate::checks::xml_path(&found.1.response_body, path)?;
            match (&value, exists) {
                (None, true) => {
                    return Err(format!("{path} is absent from the {} response", found.0))
                }
                (Some(v), false) => {
                    return Err(format!(
                        "{path} is present ({v:?}) in the {} response",
                        found.0
                    ))
                }
                _ => {}
            }
            let v = value.unwrap_or_default();
            crate::checks::compare(path, &v, equals.as_deref(), contains.as_deref())?;
            Ok(format!("{path} = {v:?}"))
        }
        Step::CheckCertificate {
            field,
            equals,
            contains,
        } => {
            let e = ctx
                .device
                .enrollment()
                .ok_or("the device holds no enrollment certificate")?;
            let v =
                crate::checks::certificate_field(&e.client_cert_der, &e.client_thumbprint, field)?;
            crate::checks::compare(field, &v, equals.as_deref(), contains.as_deref())?;
            Ok(format!("{field} = {v:?}"))
        }
        Step::CheckRegistry {
            key,
            value,
            equals,
            exists,
        } => {
            let got = ctx
                .device
                .registry()
                .get(key, value)
                .map(crate::checks::plain);
            match (&got, exists) {
                (None, true) => return Err(format!(r"registry value {key}\{value} is missing")),
                (Some(v), false) => {
                    return Err(format!(r"registry value {key}\{value} exists ({v:?})"))
                }
                (None, false) => return Ok(format!(r"{key}\{value} absent")),
                _ => {}
            }
            let v = got.unwrap_or_default();
            crate::checks::compare(value, &v, equals.as_deref(), None)?;
            Ok(format!(r"{key}\{value} = {v:?}"))
        }
        Step::UseReplica { index } => match &target.control {
            Some(c) => {
                c.route_to_replica(*index).await?;
                Ok(format!("new connections go to replica {index}"))
            }
            None => {
                let why = "an external server's replicas are not the harness's to route".into();
                skip(ctx, Capability::Replicas, why, false)
            }
        },
        Step::Attack {
            kind,
            max_wait_secs,
        } => crate::attacks::run(ctx, *kind, *max_wait_secs).await,
        Step::Wait { ms } => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Ok(format!("waited {ms} ms"))
        }
        Step::RestartServer {} => match &target.control {
            Some(c) => {
                c.restart().await?;
                Ok("embedded server restarted on the same port and data".into())
            }
            None => {
                let why = "an external server cannot be restarted by the harness".into();
                skip(ctx, Capability::Restart, why, false)
            }
        },
    }
}

/// Package 1 of a session sent by hand, with the given certificate and SyncHdr Source
/// DeviceID, to the management URL the device last used; returns the HTTP status. Used
/// for identities the device itself would not present.
/// An HTTPS client presenting this PEM certificate and key.
pub(crate) fn mtls_client(
    target: &crate::runner::Target,
    cert_pem: &str,
    key_pem: &str,
) -> Result<reqwest::Client, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .to_vec();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let identity = fake_windows_client::http::ClientIdentity { cert_der, key };
    fake_windows_client::http::client(&target.tls(), Some(&identity)).map_err(|e| e.to_string())
}

/// How a server answered a management request.
enum Answer {
    Status(u16),
    /// Refused in the TLS handshake, with this alert.
    Handshake(String),
}

/// A server may refuse a client certificate in the TLS handshake instead of with an
/// HTTP status (web servers that verify client certificates themselves, such as IIS
/// or nginx with `ssl_verify_client on`): Windows then cannot connect at all, the
/// same outcome as a 401/403 for the device. So an expected 401/403 is met by a TLS
/// alert too.
fn refused_in_handshake<T>(r: &Result<T, ClientError>, expect: Option<u16>) -> Option<String> {
    let alert = r.as_ref().err()?.tls_alert()?;
    matches!(expect, Some(401 | 403)).then(|| format!("refused in the TLS handshake ({alert})"))
}

fn expect_answer(answer: Answer, expect: Option<u16>) -> StepResult {
    match answer {
        Answer::Status(status) => expect_http(status, expect),
        Answer::Handshake(alert) if matches!(expect, Some(401 | 403)) => {
            Ok(format!("refused in the TLS handshake ({alert})"))
        }
        Answer::Handshake(alert) => Err(format!("the TLS handshake was refused ({alert})")),
    }
}

async fn stale_session(
    ctx: &mut Context<'_>,
    cert_pem: &str,
    key_pem: &str,
    device_id: &str,
) -> Result<Answer, String> {
    let url = ctx
        .management_url
        .clone()
        .ok_or("the device never learned a management URL")?;
    let client = mtls_client(ctx.target, cert_pem, key_pem)?;
    let body = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>{url}</LocURI></Target><Source><LocURI>{device_id}</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#
    );
    let resp = match client
        .post(&url)
        .header("content-type", "application/vnd.syncml.dm+xml")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => match fake_windows_client::http::refusal_in(&e) {
            Some(alert) => return Ok(Answer::Handshake(alert)),
            None => return Err(format!("management request: {e}")),
        },
    };
    Ok(Answer::Status(resp.status().as_u16()))
}

/// This device's delivery of a queued command, from the admin API (state, status code,
/// stored results); a command without one was lost.
async fn delivery(ctx: &mut Context<'_>, id: &str) -> Result<Value, String> {
    let all = admin(
        ctx,
        reqwest::Method::GET,
        &format!("/api/v1/commands/{id}"),
        None,
    )
    .await?;
    let device_id = ctx.device.device_id();
    all["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["device_id"] == device_id)
        .cloned()
        .ok_or_else(|| format!("command {id} lost: no delivery for this device ({all})"))
}

/// Checks an HTTP status against the expected one (200 when none is expected).
fn expect_http(status: u16, expect: Option<u16>) -> Result<String, String> {
    match expect {
        Some(want) if want == status => Ok(format!("refused with HTTP {status}")),
        Some(want) => Err(format!("expected HTTP {want}, got HTTP {status}")),
        None if status == 200 => Ok("HTTP 200".into()),
        None => Err(format!("HTTP {status}")),
    }
}

/// The discovery URL of the target when no Orbit notification gives one:
/// `--discovery-url`, else the path Windows itself derives from a user's address
/// (`/EnrollmentServer/Discovery.svc`, MS-MDE2 §3.1.5), which every server a user can
/// enroll in through "Access work or school" answers.
fn discovery_url(target: &crate::runner::Target) -> String {
    target
        .discovery_url
        .clone()
        .unwrap_or_else(|| format!("{}/EnrollmentServer/Discovery.svc", target.server_url))
}

/// Drops null members so optional fields are simply absent.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// Calls the admin API of the target.
async fn admin(
    ctx: &mut Context<'_>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let token = ctx
        .target
        .admin_token
        .clone()
        .ok_or("this step needs the server's admin API: pass --admin-token")?;
    let url = format!("{}{path}", ctx.target.server_url);
    let body_text = body.map(|b| b.to_string());
    let mut req = ctx.http.request(method.clone(), &url).bearer_auth(&token);
    if let Some(b) = &body_text {
        req = req
            .header("content-type", "application/json")
            .body(b.clone());
    }
    // Recorded like the device's own exchanges, so reports and captures show them.
    let mut exchange = fake_windows_client::Exchange {
        step: "admin".into(),
        method: method.to_string(),
        url: url.clone(),
        request_headers: vec![
            ("authorization".into(), "Bearer [redacted]".into()),
            ("content-type".into(), "application/json".into()),
        ],
        request_body: body_text.unwrap_or_default(),
        status: None,
        response_headers: Vec::new(),
        response_body: String::new(),
        error: None,
    };
    let result = async {
        let resp = req.send().await.map_err(|e| format!("admin API: {e}"))?;
        let status = resp.status();
        exchange.status = Some(status.as_u16());
        exchange.response_headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp.text().await.map_err(|e| format!("admin API: {e}"))?;
        exchange.response_body = text.clone();
        if !status.is_success() {
            return Err(format!("admin API {path}: HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("admin API {path}: invalid JSON: {e}"))
    }
    .await;
    if let Err(e) = &result {
        exchange.error = Some(e.clone());
    }
    ctx.admin_exchanges.push(exchange);
    result
}
