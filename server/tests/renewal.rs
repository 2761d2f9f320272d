//! MS-WSTEP renewal: authenticated by the current certificate, a new certificate is
//! issued, and the old one is refused once the new one is in use.

mod common;

use axum::http::StatusCode;
use common::*;

const DEVICE: &str = "A0B1C2D3E4F5A6B7C8D9E0F1A2B3C4D5";
const PATH: &str = "/api/mdm/microsoft/management";

/// Package 1 of a new session (each call uses a new SessionID).
fn sync(device: &str) -> String {
    static SESSION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let session = SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>1</MsgID><Target><LocURI>https://mdm.example.test{PATH}</LocURI></Target><Source><LocURI>{device}</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#
    )
}

fn renew_request(token_b64: &str) -> String {
    vector("wstep-renew-request.xml").replace("BinarySecurityTokenInsertedHere", token_b64)
}

async fn enroll(s: &TestServer) -> (rsa::RsaPrivateKey, Vec<u8>) {
    let key = s.node_key().await;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(&key, &hand_csr(&rsa, b"d", true), DEVICE),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("DeviceEnrollmentProvisionDoc"));
    (rsa, client_cert(&r.body))
}

async fn renew(
    s: &TestServer,
    old_key: &rsa::RsaPrivateKey,
    old_cert: &[u8],
    signed_attrs: bool,
    mtls: bool,
) -> (u16, String) {
    let new_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let p7 = pkcs7_signed(
        &hand_csr(&new_key, b"d", false),
        old_key,
        old_cert,
        signed_attrs,
    );
    let r = s
        .send(
            "POST",
            "/api/mdm/microsoft/enroll",
            "application/soap+xml; charset=utf-8",
            renew_request(&b64(&p7)),
            mtls.then(|| old_cert.to_vec()),
        )
        .await;
    (r.status.as_u16(), r.body)
}

#[tokio::test]
async fn renewal_issues_a_new_certificate_and_retires_the_old_one_on_first_use() {
    let s = server().await;
    let (key, old) = enroll(&s).await;
    let (status, body) = renew(&s, &key, &old, true, true).await;
    assert_eq!(status, 200, "{body}");
    let new = client_cert(&body);
    assert_ne!(new, old);
    // Grace period: the old certificate still works until the new one is used.
    let r = s
        .send(
            "POST",
            PATH,
            "application/vnd.syncml.dm+xml",
            sync(DEVICE),
            Some(old.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .send(
            "POST",
            PATH,
            "application/vnd.syncml.dm+xml",
            sync(DEVICE),
            Some(new),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = s
        .send(
            "POST",
            PATH,
            "application/vnd.syncml.dm+xml",
            sync(DEVICE),
            Some(old),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "old certificate refused after the new one is used"
    );
    let e = s.state.store.enrollment(DEVICE).await.unwrap().unwrap();
    assert_ne!(e.cert_thumbprint, "");
}

#[tokio::test]
async fn renewal_without_signed_attributes_over_plain_tls_is_accepted() {
    // The PKCS#7 signature alone authenticates the request when no client cert is presented.
    let s = server().await;
    let (key, old) = enroll(&s).await;
    let (status, body) = renew(&s, &key, &old, false, false).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn renewal_signed_by_another_key_is_refused() {
    let s = server().await;
    let (_key, old) = enroll(&s).await;
    let thief = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let (status, body) = renew(&s, &thief, &old, true, false).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("s:Authentication") && body.contains("signature"),
        "{body}"
    );
}

#[tokio::test]
async fn renewal_without_any_certificate_is_refused() {
    let s = server().await;
    let r = s
        .soap("/api/mdm/microsoft/enroll", renew_request("AAAA"))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.body.contains("s:MessageFormat") || r.body.contains("s:Authentication"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn renewal_of_an_unenrolled_device_is_not_eligible() {
    let s = server().await;
    let (key, old) = enroll(&s).await;
    s.state
        .store
        .set_enrollment_state(DEVICE, "unenrolled")
        .await
        .unwrap();
    let (status, body) = renew(&s, &key, &old, true, true).await;
    assert_eq!(status, 500);
    assert!(body.contains("NotEligibleToRenew"), "{body}");
}

#[tokio::test]
async fn the_old_certificate_is_refused_once_the_grace_period_ends() {
    // Even if the device never uses its new certificate.
    let s = server_with(|c| c.renewal_grace_secs = 1).await;
    let (key, old) = enroll(&s).await;
    let (status, body) = renew(&s, &key, &old, true, true).await;
    assert_eq!(status, 200, "{body}");
    let r = s
        .send(
            "POST",
            PATH,
            "application/vnd.syncml.dm+xml",
            sync(DEVICE),
            Some(old.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "within the grace period");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = s
        .send(
            "POST",
            PATH,
            "application/vnd.syncml.dm+xml",
            sync(DEVICE),
            Some(old),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "after the grace period");
}
