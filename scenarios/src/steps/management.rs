//! Management steps: commands queued through the admin API, OMA-DM sessions with the
//! device's own or another identity, and the delivery state the server recorded.

use super::*;

pub(super) async fn run(ctx: &mut Context<'_>, step: &Step) -> StepResult {
    match step {
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
                Identity::Enrolled | Identity::Digest => IdentityOverride::None,
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
                Identity::None | Identity::Digest => None,
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
            let digest = *identity == Identity::Digest;
            if digest {
                ctx.device.set_management_auth(ManagementAuth::Digest);
            }
            ctx.device.set_identity_override(o);
            let r = ctx.device.sync().await;
            ctx.device.set_identity_override(IdentityOverride::None);
            ctx.device.set_management_auth(ManagementAuth::Certificate);
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
            let challenged = if digest {
                super::digest::challenge_answered(&report)?
            } else {
                String::new()
            };
            Ok(format!(
                "{challenged}{} round trip(s), {} server command(s){}",
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
        Step::ServerUnenroll {} => {
            let path = format!("/api/v1/devices/{}/unenroll", ctx.device.device_id());
            let v = admin(ctx, reqwest::Method::POST, &path, None).await?;
            if let Some(id) = v["command_id"].as_str() {
                ctx.last_command = Some(id.to_string());
            }
            Ok("unenrollment requested".into())
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
        _ => Err("not a management step".into()),
    }
}

/// An HTTPS client presenting this PEM certificate and key.
pub(crate) fn mtls_client(
    target: &crate::target::Target,
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

/// Package 1 of a session sent by hand, with the given certificate and SyncHdr Source
/// DeviceID, to the management URL the device last used; returns the HTTP status. Used
/// for identities the device itself would not present.
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

/// Checks an HTTP status against the expected one (200 when none is expected).
fn expect_http(status: u16, expect: Option<u16>) -> Result<String, String> {
    match expect {
        Some(want) if want == status => Ok(format!("refused with HTTP {status}")),
        Some(want) => Err(format!("expected HTTP {want}, got HTTP {status}")),
        None if status == 200 => Ok("HTTP 200".into()),
        None => Err(format!("HTTP {status}")),
    }
}
