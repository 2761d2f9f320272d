//! Enrollment steps: the Orbit agent, RegisterDeviceWithManagement, discovery
//! (MS-MDE2 §3.1), GetPolicies (MS-XCEP), RequestSecurityToken (MS-WSTEP), renewal and
//! unenrollment, each with its expected refusal.

use super::*;

pub(super) async fn run(ctx: &mut Context<'_>, step: &Step) -> StepResult {
    let target = ctx.target;
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
        _ => Err("not a enrollment step".into()),
    }
}
