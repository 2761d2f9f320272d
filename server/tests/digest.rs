//! OMA-DM MD5 digest authentication of management sessions (`--management-auth`),
//! driven through the router as a device without a client certificate would. The
//! digests are computed here from the provisioned credentials (OMA-DM 1.2 Security,
//! `syncml:auth-md5`), independently of the server's code.

mod common;

use axum::http::StatusCode;
use base64::Engine;
use common::*;
use md5::{Digest, Md5};
use winmdm_server::model::ManagementAuth;

const DEVICE: &str = "00112233445566778899AABBCCDDEEFF";
const UNKNOWN: &str = "FFEEDDCCBBAA99887766554433221100";
const SYNCML: &str = "application/vnd.syncml.dm+xml";
const PATH: &str = "/api/mdm/microsoft/management";
const PKG1: &str = "<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The APPSRV credentials of a provisioning document.
struct Creds {
    name: String,
    secret: String,
    nonce: String,
}

async fn server_in(mode: ManagementAuth) -> TestServer {
    server_with(|c| c.management_auth = mode).await
}

/// Enrolls DEVICE and returns its certificate and the APPSRV APPAUTH values.
async fn enroll(s: &TestServer) -> (Vec<u8>, Creds) {
    let key = s.node_key().await;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(&key, &hand_csr(&rsa, b"d", false), DEVICE),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let doc = provisioning_doc(&r.body);
    let d = roxmltree::Document::parse(&doc).unwrap();
    let appsrv = d
        .descendants()
        .filter(|n| n.attribute("type") == Some("APPAUTH"))
        .find(|n| parm(*n, "AAUTHLEVEL").as_deref() == Some("APPSRV"))
        .expect("APPSRV APPAUTH");
    let creds = Creds {
        name: parm(appsrv, "AAUTHNAME").unwrap(),
        secret: parm(appsrv, "AAUTHSECRET").unwrap(),
        nonce: parm(appsrv, "AAUTHDATA").unwrap(),
    };
    (client_cert_from_doc(&doc), creds)
}

fn parm(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    n.children()
        .find(|c| c.attribute("name") == Some(name))
        .and_then(|c| c.attribute("value"))
        .map(str::to_string)
}

/// `B64(MD5(B64(MD5(name ":" secret)) ":" nonce))`.
fn digest(name: &str, secret: &str, nonce_b64: &str) -> String {
    let inner = B64.encode(Md5::digest(format!("{name}:{secret}").as_bytes()));
    let mut h = Md5::new();
    h.update(inner.as_bytes());
    h.update(b":");
    h.update(B64.decode(nonce_b64).unwrap());
    B64.encode(h.finalize())
}

fn cred(data: &str) -> String {
    format!(
        r#"<Cred><Meta><Format xmlns="syncml:metinf">b64</Format><Type xmlns="syncml:metinf">syncml:auth-md5</Type></Meta><Data>{data}</Data></Cred>"#
    )
}

fn message(device: &str, session: u32, msg_id: u32, cred: &str, body: &str) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>https://mdm.example.test{PATH}</LocURI></Target><Source><LocURI>{device}</LocURI></Source>{cred}</SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"#
    )
}

async fn post(s: &TestServer, body: String, cert: Option<Vec<u8>>) -> Reply {
    s.send("POST", PATH, SYNCML, body, cert).await
}

/// The SyncHdr Status's code and NextNonce of a server message.
fn hdr_status(xml: &str) -> (String, Option<String>) {
    let d = roxmltree::Document::parse(xml).expect("server XML");
    let st = d
        .descendants()
        .filter(|n| n.has_tag_name("Status"))
        .find(|n| {
            n.children()
                .any(|c| c.has_tag_name("Cmd") && c.text() == Some("SyncHdr"))
        })
        .expect("SyncHdr Status");
    let code = st
        .children()
        .find(|c| c.has_tag_name("Data"))
        .and_then(|c| c.text())
        .unwrap_or("")
        .to_string();
    let nonce = st
        .descendants()
        .find(|c| c.has_tag_name("NextNonce"))
        .and_then(|c| c.text())
        .map(str::to_string);
    (code, nonce)
}

#[tokio::test]
async fn a_device_authenticated_by_digest_runs_a_queued_command() {
    let s = server_in(ManagementAuth::Digest).await;
    let (_, c) = enroll(&s).await;
    assert_eq!(c.name, DEVICE);
    assert_ne!(c.secret, "dummy");
    assert!(B64.decode(&c.nonce).is_ok(), "AAUTHDATA is base64");
    // Only B64(MD5(name:secret)) is stored, never the secret.
    let stored = s
        .state
        .store
        .digest_credentials(DEVICE)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.credential_hash, c.secret);
    assert_eq!(
        stored.credential_hash,
        B64.encode(Md5::digest(format!("{DEVICE}:{}", c.secret).as_bytes()))
    );
    let id = s.queue_get(DEVICE).await;

    // Package 1 without credentials: challenged, nothing delivered.
    let r = post(&s, message(DEVICE, 7, 1, "", PKG1), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (code, n1) = hdr_status(&r.body);
    assert_eq!(code, "407", "{}", r.body);
    assert!(r
        .body
        .contains("<Type xmlns=\"syncml:metinf\">syncml:auth-md5</Type>"));
    assert!(!r.body.contains("<Get>"), "{}", r.body);
    let n1 = n1.expect("NextNonce");

    // Package 1 again with credentials: accepted, the command goes out.
    let r = post(
        &s,
        message(DEVICE, 7, 2, &cred(&digest(&c.name, &c.secret, &n1)), PKG1),
        None,
    )
    .await;
    let (code, n2) = hdr_status(&r.body);
    assert_eq!(code, "200", "{}", r.body);
    assert!(
        r.body.contains(&format!("<Get><CmdID>{id}</CmdID>")),
        "{}",
        r.body
    );
    let n2 = n2.expect("every reply carries the next nonce");
    let e = s.state.store.enrollment(DEVICE).await.unwrap().unwrap();
    assert!(
        e.last_checkin_at.is_some(),
        "package 1 after the challenge checks in"
    );
    assert_ne!(n1, n2);

    let reply = format!(
        "<Status><CmdID>1</CmdID><MsgRef>2</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>\
         <Status><CmdID>2</CmdID><MsgRef>2</MsgRef><CmdRef>{id}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>\
         <Results><CmdID>3</CmdID><MsgRef>2</MsgRef><CmdRef>{id}</CmdRef><Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Data>10.0.22631.2428</Data></Item></Results>"
    );
    let r = post(
        &s,
        message(
            DEVICE,
            7,
            3,
            &cred(&digest(&c.name, &c.secret, &n2)),
            &reply,
        ),
        None,
    )
    .await;
    assert_eq!(hdr_status(&r.body).0, "200", "{}", r.body);
    let v = s
        .send_admin("GET", &format!("/api/v1/commands/{id}"), "")
        .await;
    let v: serde_json::Value = serde_json::from_str(&v.body).unwrap();
    assert_eq!(v["devices"][0]["state"], "acknowledged");
    assert!(v["devices"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["body_xml"].as_str().unwrap().contains("10.0.22631.2428")));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_a_challenge_and_nothing_is_stored() {
    let s = server_in(ManagementAuth::Digest).await;
    let (_, c) = enroll(&s).await;
    let id = s.queue_get(DEVICE).await;
    let wrong = cred(&digest(&c.name, "not-the-secret", &c.nonce));
    let answer = format!(
        "<Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>"
    );
    let r = post(
        &s,
        message(DEVICE, 7, 1, &wrong, &format!("{PKG1}{answer}")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let (code, nonce) = hdr_status(&r.body);
    assert_eq!(code, "401", "{}", r.body);
    assert!(nonce.is_some(), "a refusal carries a new challenge");
    assert!(
        r.body
            .contains("<CmdRef>1</CmdRef><Cmd>Alert</Cmd><Data>401</Data>"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<Get>"), "{}", r.body);
    let v = s
        .send_admin("GET", &format!("/api/v1/commands/{id}"), "")
        .await;
    let v: serde_json::Value = serde_json::from_str(&v.body).unwrap();
    assert_eq!(v["devices"][0]["state"], "pending", "{v}");
}

#[tokio::test]
async fn a_nonce_is_used_once_and_expires() {
    let s = server_in(ManagementAuth::Digest).await;
    let (_, c) = enroll(&s).await;
    let first = cred(&digest(&c.name, &c.secret, &c.nonce));
    let r = post(&s, message(DEVICE, 7, 1, &first, PKG1), None).await;
    assert_eq!(hdr_status(&r.body).0, "200", "{}", r.body);
    // The same credentials in another message (another session) are refused.
    let r = post(&s, message(DEVICE, 8, 1, &first, PKG1), None).await;
    let (code, next) = hdr_status(&r.body);
    assert_eq!(code, "401", "{}", r.body);
    // A nonce older than its lifetime is refused too.
    let next = next.unwrap();
    sqlx::query("UPDATE digest_credentials SET nonce_expires_unix = 0")
        .execute(s.state.store.pool())
        .await
        .unwrap();
    let r = post(
        &s,
        message(
            DEVICE,
            9,
            1,
            &cred(&digest(&c.name, &c.secret, &next)),
            PKG1,
        ),
        None,
    )
    .await;
    assert_eq!(hdr_status(&r.body).0, "401", "{}", r.body);
}

/// The answer with the nonce and the DeviceID blanked out.
fn shape(xml: &str, device: &str) -> String {
    let (_, nonce) = hdr_status(xml);
    xml.replace(&nonce.unwrap_or_default(), "NONCE")
        .replace(device, "DEVICE")
}

#[tokio::test]
async fn an_unknown_device_gets_the_same_challenge() {
    let s = server_in(ManagementAuth::Digest).await;
    let (_, c) = enroll(&s).await;
    let known = post(&s, message(DEVICE, 7, 1, "", PKG1), None).await;
    let unknown = post(&s, message(UNKNOWN, 7, 1, "", PKG1), None).await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert_eq!(hdr_status(&unknown.body).0, "407");
    assert_eq!(shape(&known.body, DEVICE), shape(&unknown.body, UNKNOWN));
    let bad = cred(&digest(UNKNOWN, &c.secret, &c.nonce));
    let known = post(&s, message(DEVICE, 8, 1, &bad, PKG1), None).await;
    let unknown = post(&s, message(UNKNOWN, 8, 1, &bad, PKG1), None).await;
    assert_eq!(hdr_status(&unknown.body).0, "401");
    assert_eq!(shape(&known.body, DEVICE), shape(&unknown.body, UNKNOWN));
}

#[tokio::test]
async fn mtls_or_digest_judges_a_presented_certificate_and_never_falls_back() {
    let s = server_in(ManagementAuth::MtlsOrDigest).await;
    let (cert, c) = enroll(&s).await;
    let good = cred(&digest(&c.name, &c.secret, &c.nonce));
    let other = rcgen::generate_simple_self_signed(vec!["device".to_string()]).unwrap();
    let r = post(
        &s,
        message(DEVICE, 7, 1, &good, PKG1),
        Some(other.cert.der().to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // The certificate still works, and without one the digest does.
    let r = post(&s, message(DEVICE, 7, 1, "", PKG1), Some(cert)).await;
    assert_eq!(hdr_status(&r.body).0, "200", "{}", r.body);
    let r = post(&s, message(DEVICE, 8, 1, &good, PKG1), None).await;
    assert_eq!(hdr_status(&r.body).0, "200", "{}", r.body);
}

#[tokio::test]
async fn by_default_management_needs_a_certificate_and_provisions_no_secret() {
    let s = server().await;
    let (_, c) = enroll(&s).await;
    assert_eq!(c.secret, "dummy");
    let good = cred(&digest(
        &c.name,
        &c.secret,
        &c.nonce.replace("nonce", "bm9uY2U="),
    ));
    let r = post(&s, message(DEVICE, 7, 1, &good, PKG1), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(s
        .state
        .store
        .digest_credentials(DEVICE)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn nonces_survive_a_restart() {
    let s = server_in(ManagementAuth::Digest).await;
    let (_, c) = enroll(&s).await;
    // A server started again on the same database accepts the provisioned nonce once.
    let again = TestServer {
        state: winmdm_server::app::build_state(s.state.config.clone(), PUBLIC_URL.into())
            .await
            .expect("state"),
        dir: tempfile::tempdir().unwrap(),
    };
    let first = cred(&digest(&c.name, &c.secret, &c.nonce));
    let r = post(&again, message(DEVICE, 7, 1, &first, PKG1), None).await;
    assert_eq!(hdr_status(&r.body).0, "200", "{}", r.body);
    let r = post(&s, message(DEVICE, 8, 1, &first, PKG1), None).await;
    assert_eq!(
        hdr_status(&r.body).0,
        "401",
        "used up for the first server too: {}",
        r.body
    );
}
