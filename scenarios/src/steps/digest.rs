//! OMA-DM MD5 digest authentication of management sessions (OMA-DM 1.2 Security,
//! `syncml:auth-md5`) judged from outside: the challenge a digest session must meet,
//! and attacks on it. The attacks send package 1 by hand (Alert 1201) to the device's
//! management URL with the credentials they try, and read the SyncHdr Status: 407
//! (credentials missing) or 401 (refused), each with a new nonce in `Chal`, and no
//! server command.

use base64::Engine;
use fake_windows_client::digest::DigestAuth;
use fake_windows_client::SyncReport;

use super::post_syncml as post;
use crate::context::Context;
use crate::scenario::Attack;

type StepResult = Result<String, String>;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The Status a server gave our SyncHdr.
struct HdrStatus {
    code: String,
    /// A `Chal` is present.
    chal: bool,
    /// Its `NextNonce` (base64).
    next_nonce: Option<String>,
}

fn synchdr_status(xml: &str) -> Option<HdrStatus> {
    let d = roxmltree::Document::parse(xml).ok()?;
    let st = d
        .descendants()
        .filter(|n| n.has_tag_name("Status"))
        .find(|n| {
            n.children()
                .any(|c| c.has_tag_name("Cmd") && c.text().map(str::trim) == Some("SyncHdr"))
        })?;
    let text =
        |n: Option<roxmltree::Node<'_, '_>>| n.and_then(|n| n.text()).map(|t| t.trim().to_string());
    let chal = st.children().find(|c| c.has_tag_name("Chal"));
    Some(HdrStatus {
        code: text(st.children().find(|c| c.has_tag_name("Data"))).unwrap_or_default(),
        chal: chal.is_some(),
        next_nonce: text(st.descendants().find(|c| c.has_tag_name("NextNonce"))),
    })
}

/// The commands of a server message (every SyncBody element but Status and Final).
fn server_commands(xml: &str) -> Vec<String> {
    let Ok(d) = roxmltree::Document::parse(xml) else {
        return Vec::new();
    };
    d.descendants()
        .filter(|n| n.has_tag_name("SyncBody"))
        .flat_map(|b| b.children().filter(|c| c.is_element()))
        .map(|c| c.tag_name().name().to_string())
        .filter(|n| n != "Status" && n != "Final")
        .collect()
}

/// A digest session's first exchanges as OMA-DM 1.2 Security has them: package 1
/// without credentials, challenged (407 or 401 with `Chal`), sent again with `Cred`.
/// A server accepting package 1 without any credentials or certificate is a finding.
pub(super) fn challenge_answered(report: &SyncReport) -> Result<String, String> {
    let (first, reply) = report
        .transcript
        .first()
        .ok_or("the session exchanged no message")?;
    if first.contains("<Cred>") {
        return Err("package 1 carried credentials before any challenge".into());
    }
    let st = synchdr_status(reply).ok_or("the answer to package 1 has no SyncHdr Status")?;
    if st.code != "407" && st.code != "401" {
        return Err(format!(
            "SECURITY FINDING (digest): package 1 without credentials or certificate was answered SyncHdr {}, not challenged",
            st.code
        ));
    }
    if !st.chal {
        return Err(format!("the {} challenge has no Chal", st.code));
    }
    if !report
        .transcript
        .get(1)
        .is_some_and(|(m, _)| m.contains("<Cred>"))
    {
        return Err("the challenge was not answered with credentials".into());
    }
    Ok(format!(
        "challenged ({} with Chal), answered with credentials; ",
        st.code
    ))
}

/// Runs one of the digest attacks.
pub(crate) async fn attack(ctx: &mut Context<'_>, attack: Attack) -> StepResult {
    let url = ctx
        .management_url
        .clone()
        .ok_or("enroll the device first (no management URL)")?;
    let creds = ctx
        .device
        .enrollment()
        .and_then(|e| e.digest.clone())
        .ok_or("the provisioning document carried no APPSRV digest credentials (w7 APPAUTH): is the server in a digest mode?")?;
    let plain =
        fake_windows_client::http::client(&ctx.target.tls(), None).map_err(|e| e.to_string())?;
    match attack {
        Attack::DigestWrongSecret => wrong_secret(&plain, &url, &creds).await,
        Attack::DigestReplay => replay(ctx, &plain, &url, &creds.name).await,
        Attack::DigestUnknownDevice => unknown_device(&plain, &url, &creds.name).await,
        _ => bad_certificate(ctx, &plain, &url, &creds).await,
    }
}

fn finding(attack: &str, what: String) -> StepResult {
    Err(format!("SECURITY FINDING ({attack}): {what}"))
}

/// A SessionID no session of the device used.
fn fresh_session() -> String {
    (1000 + uuid::Uuid::new_v4().as_u128() % 60000).to_string()
}

/// Package 1 (Alert 1201) of `device_id` with optional `Cred`.
fn package_one(url: &str, device_id: &str, session: &str, msg_id: u32, cred: &str) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>{url}</LocURI></Target><Source><LocURI>{device_id}</LocURI></Source>{cred}</SyncHdr><SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#
    )
}

/// Package 1 without credentials: it must be challenged. The challenge's status.
async fn challenge(
    client: &reqwest::Client,
    url: &str,
    device_id: &str,
    session: &str,
) -> Result<(HdrStatus, String), String> {
    let (status, reply) = post(client, url, package_one(url, device_id, session, 1, "")).await?;
    if status != 200 {
        return Err(format!(
            "package 1 without credentials got HTTP {status}, expected a SyncHdr challenge"
        ));
    }
    let st = synchdr_status(&reply).ok_or("the answer has no SyncHdr Status")?;
    if !matches!(st.code.as_str(), "401" | "407") || st.next_nonce.is_none() {
        return Err(format!(
            "package 1 without credentials got SyncHdr {}, expected 407 with Chal/NextNonce",
            st.code
        ));
    }
    Ok((st, reply))
}

/// Judges the answer to credentials the server must refuse: SyncHdr 401 with a new
/// challenge and no command.
fn refused(attack: &str, status: u16, reply: &str) -> StepResult {
    if status != 200 {
        return Err(format!(
            "HTTP {status}; OMA-DM refuses credentials with SyncHdr status 401 and Chal"
        ));
    }
    let commands = server_commands(reply);
    if !commands.is_empty() {
        return finding(attack, format!("the server sent commands: {commands:?}"));
    }
    let st = synchdr_status(reply).ok_or("the answer has no SyncHdr Status")?;
    match st.code.as_str() {
        "401" if st.chal && st.next_nonce.is_some() => {
            Ok("refused with SyncHdr 401 and a new challenge (Chal/NextNonce), no command".into())
        }
        "401" => Err("SyncHdr 401 without Chal/NextNonce: the device cannot try again".into()),
        "200" | "212" => finding(attack, format!("accepted with SyncHdr {}", st.code)),
        other => Err(format!("SyncHdr {other}, expected 401 with Chal")),
    }
}

/// The right DeviceID and nonce, a wrong secret.
async fn wrong_secret(client: &reqwest::Client, url: &str, creds: &DigestAuth) -> StepResult {
    let session = fresh_session();
    let (st, _) = challenge(client, url, &creds.name, &session).await?;
    let nonce = B64
        .decode(st.next_nonce.unwrap_or_default())
        .map_err(|e| format!("NextNonce is not base64: {e}"))?;
    let wrong = DigestAuth {
        secret: format!("{}-not", creds.secret),
        nonce,
        ..creds.clone()
    };
    let body = package_one(url, &creds.name, &session, 2, &wrong.cred_xml());
    let (status, reply) = post(client, url, body).await?;
    refused("digest with a wrong secret", status, &reply)
}

/// The `Cred` of the device's last accepted message, sent again in a new session.
async fn replay(
    ctx: &Context<'_>,
    client: &reqwest::Client,
    url: &str,
    device_id: &str,
) -> StepResult {
    let accepted = ctx.history.iter().rev().find_map(|(_, e)| {
        let start = e.request_body.find("<Cred>")?;
        let end = e.request_body[start..].find("</Cred>")? + start + "</Cred>".len();
        let ok = synchdr_status(&e.response_body).is_some_and(|s| s.code == "200");
        ok.then(|| e.request_body[start..end].to_string())
    });
    let cred = accepted.ok_or(
        "no accepted message with credentials to replay: run a digest management_session first",
    )?;
    let body = package_one(url, device_id, &fresh_session(), 1, &cred);
    let (status, reply) = post(client, url, body).await?;
    refused("replayed digest nonce", status, &reply)
}

/// The answer with the nonce and the DeviceID blanked out.
fn shape(xml: &str, device_id: &str) -> String {
    let nonce = synchdr_status(xml).and_then(|s| s.next_nonce);
    let blanked = match nonce {
        Some(n) if !n.is_empty() => xml.replace(&n, "NONCE"),
        _ => xml.to_string(),
    };
    blanked.replace(device_id, "DEVICE")
}

/// Package 1 of the device and of an unknown DeviceID, without and then with wrong
/// credentials: the answers differ only in nonce and DeviceID, so that they tell an
/// attacker nothing about which DeviceIDs exist.
async fn unknown_device(client: &reqwest::Client, url: &str, device_id: &str) -> StepResult {
    const NAME: &str = "digest, unknown DeviceID";
    let unknown = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let session = fresh_session();
    let (known_st, known) = challenge(client, url, device_id, &session).await?;
    let (unknown_st, other) = challenge(client, url, &unknown, &session)
        .await
        .map_err(|e| format!("unknown DeviceID: {e}"))?;
    if shape(&known, device_id) != shape(&other, &unknown) {
        return finding(
            NAME,
            format!(
                "an unknown DeviceID is challenged differently from an enrolled one ({} vs {}): it tells which DeviceIDs are enrolled",
                unknown_st.code, known_st.code
            ),
        );
    }
    let mut answers = Vec::new();
    for (id, st) in [(device_id, known_st), (unknown.as_str(), unknown_st)] {
        let bad = DigestAuth {
            name: id.to_string(),
            secret: uuid::Uuid::new_v4().simple().to_string(),
            nonce: B64
                .decode(st.next_nonce.unwrap_or_default())
                .unwrap_or_default(),
        };
        let (status, reply) = post(
            client,
            url,
            package_one(url, id, &session, 2, &bad.cred_xml()),
        )
        .await?;
        refused(NAME, status, &reply)?;
        answers.push(shape(&reply, id));
    }
    if answers[0] != answers[1] {
        return finding(
            NAME,
            "wrong credentials of an unknown DeviceID are refused differently from an enrolled one's".into(),
        );
    }
    Ok("an unknown DeviceID is challenged and refused exactly like an enrolled one".into())
}

/// `mtls-or-digest`: a certificate from a foreign CA with the device's good
/// credentials is refused (the certificate is judged; digest is only for connections
/// without one), and the same credentials without the certificate are then accepted,
/// which shows they were good and the refusal was the certificate's.
async fn bad_certificate(
    ctx: &Context<'_>,
    plain: &reqwest::Client,
    url: &str,
    creds: &DigestAuth,
) -> StepResult {
    const NAME: &str = "foreign certificate with good digest";
    let (cert_pem, key_pem) =
        fake_windows_client::foreign_identity(&creds.name).map_err(|e| e.to_string())?;
    let foreign = super::mtls_client(ctx.target, &cert_pem, &key_pem)?;
    let good = creds.cred_xml();
    let body = package_one(url, &creds.name, &fresh_session(), 1, &good);
    let how = match foreign
        .post(url)
        .header("content-type", "application/vnd.syncml.dm+xml")
        .body(body)
        .send()
        .await
    {
        Err(e) => match fake_windows_client::http::refusal_in(&e) {
            Some(alert) => format!("refused in the TLS handshake ({alert})"),
            None => return Err(format!("management request: {e}")),
        },
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => {
            format!("refused with HTTP {}", r.status().as_u16())
        }
        Ok(r) => {
            let status = r.status().as_u16();
            let reply = r.text().await.unwrap_or_default();
            let code = synchdr_status(&reply).map(|s| s.code).unwrap_or_default();
            if status == 200 && (code == "200" || code == "212") {
                return finding(
                    NAME,
                    format!("accepted with SyncHdr {code}: the digest replaced the certificate"),
                );
            }
            return Err(format!(
                "HTTP {status}, SyncHdr {code:?}: expected a refusal of the certificate (HTTP 403)"
            ));
        }
    };
    let body = package_one(url, &creds.name, &fresh_session(), 1, &good);
    let (status, reply) = post(plain, url, body).await?;
    let code = synchdr_status(&reply).map(|s| s.code).unwrap_or_default();
    if status != 200 || code != "200" {
        return Err(format!(
            "{how}, but the same credentials without a certificate got HTTP {status}, SyncHdr {code:?}: they were not good, the attack proves nothing"
        ));
    }
    Ok(format!(
        "{how}; the same credentials without the certificate are accepted"
    ))
}
