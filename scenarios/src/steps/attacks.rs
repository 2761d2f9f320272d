//! Security attacks any server can be checked for: each plays an attacker against the
//! device the scenario enrolled (the victim) and judges what the server did. A server
//! that lets the attack through fails the step with a `SECURITY FINDING`; one that
//! refuses it passes; an attack the target gives no way to try (no Orbit, no federated
//! login, a fixed `--token`) is skipped with the reason.

use std::time::{Duration, Instant};

use fake_windows_client::{Device, DeviceProfile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use fake_windows_client::auth::form_encode;

use super::post_syncml;
use crate::capability::Capability;
use crate::context::Context;
use crate::scenario::Attack;

type StepResult = Result<String, String>;

/// The attack cannot be tried: the target lacks `capability` (the step is skipped).
fn skipped(ctx: &mut Context<'_>, capability: Capability, why: &str) -> StepResult {
    crate::steps::skip(ctx, capability, why.to_string(), false)
}

fn finding(attack: &str, what: String) -> StepResult {
    Err(format!("SECURITY FINDING ({attack}): {what}"))
}

/// Runs one attack; `max_wait_secs` bounds the slow request.
pub(crate) async fn run(ctx: &mut Context<'_>, attack: Attack, max_wait_secs: u64) -> StepResult {
    match attack {
        Attack::DeviceIdTakeover => device_id_takeover(ctx).await,
        Attack::ForeignDeviceId => foreign_device_id(ctx).await,
        Attack::ReplayByOtherDevice => replay_by_other_device(ctx).await,
        Attack::TokenReuse => token_reuse(ctx).await,
        Attack::FederatedAppru => federated_appru(ctx).await,
        Attack::SlowRequest => slow_request(ctx, Duration::from_secs(max_wait_secs)).await,
        digest => crate::steps::digest::attack(ctx, digest).await,
    }
}

/// A fresh machine, set up like the scenario's device.
fn new_device(ctx: &Context<'_>) -> Result<Device, String> {
    let mut d =
        Device::new(DeviceProfile::random(), ctx.target.tls()).map_err(|e| e.to_string())?;
    if ctx.target.auth_policy.is_some() || ctx.target.credentials.is_some() {
        d.set_enrollment_auth(
            ctx.target.auth_policy.clone().into_iter().collect(),
            ctx.target.credentials.clone(),
        );
    }
    Ok(d)
}

/// Whether the harness can get tokens issued per host (Orbit node keys): not with a
/// fixed `--token` or user credentials, nor from a target without Orbit.
fn tokens_per_host(ctx: &Context<'_>) -> bool {
    ctx.target.lacking.why(Capability::Orbit).is_none()
        && ctx.target.token.is_none()
        && ctx.target.credentials.is_none()
}

/// A second host with a token of its own (an Orbit node key), or None when the harness
/// cannot obtain one.
async fn second_host(ctx: &Context<'_>) -> Result<Option<(Device, String)>, String> {
    if !tokens_per_host(ctx) {
        return Ok(None);
    }
    let mut d = new_device(ctx)?;
    d.orbit_enroll(&ctx.target.server_url, &ctx.target.enroll_secret)
        .await
        .map_err(|e| format!("second host's Orbit enroll: {e}"))?;
    let key = d
        .node_key()
        .ok_or("second host got no node key")?
        .to_string();
    Ok(Some((d, key)))
}

fn discovery(ctx: &Context<'_>) -> Result<String, String> {
    ctx.discovery_endpoint
        .clone()
        .ok_or_else(|| "enroll the victim first (no discovery endpoint)".into())
}

/// After an attack: the victim still has its enrollment and is still served.
async fn victim_unharmed(ctx: &mut Context<'_>, attack: &str) -> Result<(), String> {
    ctx.presented_cert = ctx.device.enrollment().map(|e| e.client_thumbprint.clone());
    match ctx.device.sync().await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "SECURITY FINDING ({attack}): the victim's next management session failed: {e}"
        )),
    }
}

/// MS-MDE2 §3.3 (RequestSecurityToken): a DeviceID enrolled for one host is not the
/// next host's to take; the server must refuse with a fault and leave the victim alone.
async fn device_id_takeover(ctx: &mut Context<'_>) -> StepResult {
    const NAME: &str = "DeviceID takeover";
    let victim = ctx.device.device_id().to_string();
    if !ctx.device.is_enrolled() {
        return Err("enroll the victim first".into());
    }
    let url = discovery(ctx)?;
    let Some((mut attacker, key)) = second_host(ctx).await? else {
        return skipped(
            ctx,
            Capability::Orbit,
            "a second host needs a token of its own (Orbit enroll); with one shared token the server cannot tell an attacker from the same machine enrolling again",
        );
    };
    attacker.set_device_id(&victim);
    let upn = attacker.profile().upn.clone();
    let outcome = attacker
        .register_device_with_management(&upn, &url, &key)
        .await;
    let verdict = match outcome {
        Ok(()) => {
            return finding(
                NAME,
                format!(
                "a second host enrolled under the victim's DeviceID {victim} and got a certificate"
            ),
            )
        }
        Err(e) => match e.soap_fault() {
            Some(f) => format!("refused with fault {}", f.subcode),
            None => format!("refused: {e}"),
        },
    };
    victim_unharmed(ctx, NAME).await?;
    Ok(format!("{verdict}; the victim is still managed"))
}

/// A second enrolled device: with a node key of its own where the target issues them,
/// else with the token or credentials the victim enrolled with (`--token`, user).
async fn enrolled_second_device(ctx: &Context<'_>) -> Result<Device, String> {
    let url = discovery(ctx)?;
    let (mut other, key) = match second_host(ctx).await? {
        Some(host) => host,
        None => (
            new_device(ctx)?,
            ctx.token
                .clone()
                .ok_or("enroll the victim first (no token)")?,
        ),
    };
    let upn = other.profile().upn.clone();
    other
        .register_device_with_management(&upn, &url, &key)
        .await
        .map_err(|e| format!("enrolling the second device: {e}"))?;
    Ok(other)
}

/// The second device's management client (its own certificate).
fn client_of(ctx: &Context<'_>, device: &Device) -> Result<reqwest::Client, String> {
    let (cert_pem, key_pem) = device
        .client_identity_pem()
        .ok_or("the second device holds no certificate")?;
    crate::steps::mtls_client(ctx.target, &cert_pem, &key_pem)
}

/// An HTTP 200 whose SyncML refuses the device: the SyncHdr Status is not 200/212
/// (OMA-DM 1.2 Protocol §8.3: 401/403/407 deny the session) and the server sends no
/// command. Servers that authenticate inside OMA-DM refuse this way.
fn refused_inside_syncml(status: u16, reply: &str) -> Option<String> {
    if !(200..300).contains(&status) {
        return None;
    }
    let doc = roxmltree::Document::parse(reply).ok()?;
    let body = doc
        .root_element()
        .children()
        .find(|n| n.tag_name().name() == "SyncBody")?;
    const COMMANDS: [&str; 7] = [
        "Get", "Add", "Replace", "Delete", "Exec", "Atomic", "Sequence",
    ];
    if body
        .children()
        .any(|n| COMMANDS.contains(&n.tag_name().name()))
    {
        return None;
    }
    let hdr_status = body
        .children()
        .filter(|n| n.tag_name().name() == "Status")
        .find(|st| {
            st.children()
                .any(|c| c.tag_name().name() == "CmdRef" && c.text().map(str::trim) == Some("0"))
        })?;
    let code = hdr_status
        .children()
        .find(|c| c.tag_name().name() == "Data")
        .and_then(|c| c.text())
        .map(str::trim)?
        .to_string();
    (!matches!(code.as_str(), "200" | "212"))
        .then(|| format!("refused inside SyncML (SyncHdr Status {code}, no command)"))
}

fn management_url(ctx: &Context<'_>) -> Result<String, String> {
    ctx.device
        .enrollment()
        .map(|e| e.management_url.clone())
        .ok_or_else(|| "enroll the victim first".into())
}

/// MS-MDM §3.1.5.1: the SyncHdr Source must be the DeviceID the client certificate was
/// issued to; device B's certificate opening a session as device A is refused.
async fn foreign_device_id(ctx: &mut Context<'_>) -> StepResult {
    const NAME: &str = "certificate of another device";
    let url = management_url(ctx)?;
    let other = enrolled_second_device(ctx).await?;
    let client = client_of(ctx, &other)?;
    let victim = ctx.device.device_id().to_string();
    let body = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>1</MsgID><Target><LocURI>{url}</LocURI></Target><Source><LocURI>{victim}</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#
    );
    let (status, reply) = post_syncml(&client, &url, body).await?;
    if let Some(how) = refused_inside_syncml(status, &reply) {
        return Ok(how);
    }
    if (200..300).contains(&status) {
        return finding(
            NAME,
            format!(
                "device {}'s certificate opened a session as {victim} (HTTP {status})",
                other.device_id()
            ),
        );
    }
    Ok(format!("refused with HTTP {status}"))
}

/// A management package captured from the victim and sent again by another enrolled
/// device must not be answered as the victim's.
async fn replay_by_other_device(ctx: &mut Context<'_>) -> StepResult {
    const NAME: &str = "replay by another device";
    let url = management_url(ctx)?;
    let captured = ctx
        .device
        .exchanges()
        .iter()
        .rev()
        .find(|x| x.method == "POST" && x.request_body.contains("SYNCML:SYNCML1.2"))
        .map(|x| (x.url.clone(), x.request_body.clone()));
    let Some((target_url, body)) = captured else {
        return Err("run a management session of the victim first (nothing to replay)".into());
    };
    let other = enrolled_second_device(ctx).await?;
    let client = client_of(ctx, &other)?;
    let dest = if target_url.is_empty() {
        url
    } else {
        target_url
    };
    let (status, reply) = post_syncml(&client, &dest, body).await?;
    if let Some(how) = refused_inside_syncml(status, &reply) {
        return Ok(how);
    }
    if (200..300).contains(&status) && reply.contains("<SyncML") {
        return finding(
            NAME,
            format!("the victim's package sent with device {}'s certificate was answered (HTTP {status})", other.device_id()),
        );
    }
    Ok(format!("refused with HTTP {status}"))
}

/// One enrollment token enrolls one device: the victim's node key is refused for a
/// second machine.
async fn token_reuse(ctx: &mut Context<'_>) -> StepResult {
    const NAME: &str = "token reuse";
    if !tokens_per_host(ctx) {
        return skipped(
            ctx,
            Capability::Orbit,
            "the target's tokens are not issued per host (no Orbit, a fixed --token or user credentials)",
        );
    }
    let url = discovery(ctx)?;
    let token = ctx
        .token
        .clone()
        .ok_or("enroll the victim first (no token)")?;
    let mut second = new_device(ctx)?;
    let upn = second.profile().upn.clone();
    match second
        .register_device_with_management(&upn, &url, &token)
        .await
    {
        Ok(()) => finding(
            NAME,
            "the victim's token enrolled a second device, which got a certificate".into(),
        ),
        Err(e) => Ok(match e.soap_fault() {
            Some(f) => format!("refused with fault {}", f.subcode),
            None => format!("refused: {e}"),
        }),
    }
}

/// MS-MDE2 §3.1.4.1.1.2 (Federated): Windows' web authentication broker always calls
/// back an `ms-app://` URI; a login page that posts its token anywhere else hands the
/// enrollment token to whoever wrote the link.
async fn federated_appru(ctx: &mut Context<'_>) -> StepResult {
    const NAME: &str = "federated appru";
    const EVIL: &str = "https://attacker.invalid/collect";
    let Some(auth_url) = federated_login_url(ctx).await? else {
        return skipped(
            ctx,
            Capability::Federated,
            "the server offers no federated login (no AuthenticationServiceUrl)",
        );
    };
    let sep = if auth_url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{auth_url}{sep}appru={}&login_hint=a%40b",
        form_encode(EVIL)
    );
    let client =
        fake_windows_client::http::client(&ctx.target.tls(), None).map_err(|e| e.to_string())?;
    let page = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("login page: {e}"))?;
    let status = page.status().as_u16();
    let location = location_of(&page);
    let body = page.text().await.unwrap_or_default();
    if location.as_deref().is_some_and(|l| l.starts_with(EVIL)) {
        return finding(NAME, format!("the login page redirects to {EVIL}"));
    }
    if (300..400).contains(&status) {
        // Most likely an external identity provider; nothing to judge here.
        return skipped(
            ctx,
            Capability::Federated,
            "the login page redirects elsewhere (an identity provider the harness cannot log in to)",
        );
    }
    if !(200..300).contains(&status) {
        return Ok(format!("refused with HTTP {status}"));
    }
    if hands_to(&body, EVIL) {
        return finding(NAME, format!("the login page posts to {EVIL}"));
    }
    let account = ctx.target.credentials.clone().or_else(|| {
        ctx.target
            .control
            .as_ref()
            .and_then(|c| c.federated_account())
    });
    let known_account = account.is_some();
    let (user, password) = account.unwrap_or_else(|| ("attacker".into(), "attacker".into()));
    let form = format!(
        "username={}&password={}",
        form_encode(&user),
        form_encode(&password)
    );
    let r = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| format!("login: {e}"))?;
    let status = r.status().as_u16();
    let location = location_of(&r);
    let body = r.text().await.unwrap_or_default();
    if location.as_deref().is_some_and(|l| l.starts_with(EVIL)) {
        return finding(NAME, format!("after login the page redirects to {EVIL}"));
    }
    if matches!(status, 401 | 403) && !known_account {
        return skipped(
            ctx,
            Capability::Federated,
            "the login page answered 200 and logging in needs --username/--password",
        );
    }
    if (200..300).contains(&status) && hands_to(&body, EVIL) {
        return finding(
            NAME,
            format!("after login the page posts its token to {EVIL}"),
        );
    }
    Ok(format!("refused (HTTP {status}, no form to {EVIL})"))
}

/// The AuthenticationServiceUrl: from the scenario's discovery, else from a Discover
/// that offers only the Federated AuthPolicy (as a device does that cannot do OnPremise).
async fn federated_login_url(ctx: &Context<'_>) -> Result<Option<String>, String> {
    if let Some(url) = ctx
        .discover
        .as_ref()
        .and_then(|d| d.authentication_service_url.clone())
    {
        return Ok(Some(url));
    }
    let endpoint = discovery(ctx)?;
    let mut probe = new_device(ctx)?;
    probe.set_enrollment_auth(vec!["Federated".into()], None);
    let upn = probe.profile().upn.clone();
    Ok(probe
        .discover(&endpoint, &upn)
        .await
        .ok()
        .and_then(|d| d.authentication_service_url))
}

fn location_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Whether an HTML page hands the browser to `url`: a form action, a meta refresh or a
/// script assigning `location` that starts with it (after undoing HTML escapes). A page
/// that merely shows the URL as text does not.
fn hands_to(html: &str, url: &str) -> bool {
    let text = html
        .to_ascii_lowercase()
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x3a;", ":")
        .replace("&#58;", ":")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let url = url.to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = text[at..].find(&url) {
        let start = at + i;
        let before = text[..start].trim_end_matches(['"', '\'', ' ']);
        let mut near = start.saturating_sub(40);
        while !text.is_char_boundary(near) {
            near -= 1;
        }
        if before.ends_with("action=")
            || before.ends_with("url=")
            || before.ends_with("href=")
            || text[near..start].contains("location")
        {
            return true;
        }
        at = start + url.len();
    }
    false
}

/// A client that opens TLS and sends half a request must not hold its connection for
/// ever (RFC 9112 §9.5 lets a server close it; 408 is the usual answer).
async fn slow_request(ctx: &mut Context<'_>, max_wait: Duration) -> StepResult {
    const NAME: &str = "slow half-sent request";
    let server = reqwest::Url::parse(&ctx.target.server_url).map_err(|e| e.to_string())?;
    let host = server
        .host_str()
        .ok_or("server URL has no host")?
        .to_string();
    // A route that reads a body: the discovery endpoint when known.
    let path = ctx
        .discovery_endpoint
        .as_deref()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .map(|u| u.path().to_string())
        .unwrap_or_else(|| server.path().to_string());
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/soap+xml; charset=utf-8\r\n"
    );
    let mut verdicts = Vec::new();
    for (what, request) in [
        ("half a request's headers", head.clone()),
        (
            "whole headers and part of the body they announce",
            format!("{head}Content-Length: 1000\r\n\r\n<s:Envelope"),
        ),
    ] {
        match hold(ctx, &request, max_wait).await? {
            Held::StillOpen => {
                return finding(
                    NAME,
                    format!(
                        "the connection was still open {} s after {what}",
                        max_wait.as_secs()
                    ),
                )
            }
            Held::Closed(secs) => verdicts.push(format!("{what}: closed after {secs:.1} s")),
            Held::Answered(status, secs) => {
                verdicts.push(format!("{what}: answered HTTP {status} after {secs:.1} s"))
            }
        }
    }
    Ok(verdicts.join("; "))
}

/// What the server did with a connection that sent `request` and then nothing.
enum Held {
    StillOpen,
    Closed(f64),
    Answered(String, f64),
}

async fn hold(ctx: &Context<'_>, request: &str, max_wait: Duration) -> Result<Held, String> {
    let url = reqwest::Url::parse(&ctx.target.server_url).map_err(|e| e.to_string())?;
    let host = url.host_str().ok_or("server URL has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let config = fake_windows_client::http::rustls_config(&ctx.target.tls(), None)
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let started = Instant::now();
    let mut buf = [0u8; 512];
    Ok(
        match tokio::time::timeout(max_wait, tls.read(&mut buf)).await {
            Err(_) => Held::StillOpen,
            Ok(Ok(0)) | Ok(Err(_)) => Held::Closed(started.elapsed().as_secs_f64()),
            Ok(Ok(n)) => {
                let head = String::from_utf8_lossy(&buf[..n]);
                let status = head.split_whitespace().nth(1).unwrap_or("?").to_string();
                Held::Answered(status, started.elapsed().as_secs_f64())
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVIL: &str = "https://attacker.invalid/collect";

    #[test]
    fn pages_that_hand_the_browser_to_the_url_are_recognised() {
        for page in [
            r#"<form method="post" action="https://attacker.invalid/collect">"#,
            r#"<form action='https://attacker.invalid/collect?wresult=x'>"#,
            r#"<FORM ACTION="https:&#x2F;&#x2F;attacker.invalid&#x2F;collect">"#,
            r#"<meta http-equiv="refresh" content="0; url=https://attacker.invalid/collect">"#,
            r#"<script>window.location = "https://attacker.invalid/collect#t";</script>"#,
        ] {
            assert!(hands_to(page, EVIL), "{page}");
        }
        for page in [
            "<p>appru https://attacker.invalid/collect is not allowed</p>",
            r#"<form action="ms-app://windows.immersivecontrolpanel">"#,
            "",
        ] {
            assert!(!hands_to(page, EVIL), "{page}");
        }
    }

    #[test]
    fn a_syncml_refusal_inside_http_200_is_a_refusal() {
        let reply = |status: &str, extra: &str| {
            format!(
                "<SyncML xmlns='SYNCML:SYNCML1.2'><SyncHdr/><SyncBody><Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>{status}</Data></Status>{extra}<Final/></SyncBody></SyncML>"
            )
        };
        assert!(refused_inside_syncml(200, &reply("401", "")).is_some());
        assert!(refused_inside_syncml(200, &reply("407", "")).is_some());
        assert!(refused_inside_syncml(200, &reply("200", "")).is_none());
        assert!(refused_inside_syncml(200, &reply("212", "")).is_none());
        let get = "<Get><CmdID>2</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>";
        assert!(refused_inside_syncml(200, &reply("401", get)).is_none());
        assert!(refused_inside_syncml(403, &reply("401", "")).is_none());
        assert!(refused_inside_syncml(200, "not xml").is_none());
    }
}
