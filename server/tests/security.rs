//! Hostile and malformed input: each protection here fails its test when removed.

mod common;

use axum::http::StatusCode;
use common::*;

const DEVICE: &str = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";
const PATH: &str = "/api/mdm/microsoft/management";
const SYNCML: &str = "application/vnd.syncml.dm+xml";

async fn enroll(s: &TestServer, device: &str, rsa: &rsa::RsaPrivateKey) -> (u16, String) {
    let key = s.node_key().await;
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(&key, &hand_csr(rsa, b"d", false), device),
        )
        .await;
    (r.status.as_u16(), r.body)
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let s = server().await;
    let r = s
        .send(
            "POST",
            "/api/mdm/microsoft/discovery",
            "text/xml",
            vector("mde2-discover-request.xml"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        r.body.contains("s:MessageFormat") && r.body.contains("Content-Type"),
        "{}",
        r.body
    );
    // The management route judges the client certificate first (401 without one, before
    // any body is read); an enrolled device with the wrong Content-Type gets 415.
    let r = s.send("POST", PATH, "text/plain", "x".into(), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let (_, body) = enroll(&s, DEVICE, &rsa).await;
    let cert = client_cert(&body);
    let r = s
        .send("POST", PATH, "text/plain", "x".into(), Some(cert))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn enrollment_endpoints_are_rate_limited_with_retry_after() {
    let s = server_with(|c| c.enroll_rate_global = 1).await;
    let mut limited = None;
    for _ in 0..10 {
        let r = s
            .soap(
                "/api/mdm/microsoft/discovery",
                vector("mde2-discover-request.xml"),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 10 requests at 1 request/s");
    assert!(r.body.contains("retry"), "{}", r.body);
}

#[tokio::test]
async fn csr_key_already_certified_for_another_device_is_refused() {
    let s = server().await;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    assert_eq!(enroll(&s, DEVICE, &rsa).await.0, 200);
    let (status, body) = enroll(&s, "11111111111111111111111111111111", &rsa).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("s:CertificateRequest") && body.contains("another device"),
        "{body}"
    );
}

#[tokio::test]
async fn one_node_key_enrolls_one_device() {
    let s = server().await;
    let key = s.node_key().await;
    let a = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let b = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(&key, &hand_csr(&a, b"d", false), DEVICE),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(
                &key,
                &hand_csr(&b, b"d", false),
                "22222222222222222222222222222222",
            ),
        )
        .await;
    assert!(
        r.body.contains("s:Authorization") && r.body.contains("DeviceCapReached"),
        "{}",
        r.body
    );
}

/// Requests racing with one token: the rule is checked again where the enrollment is
/// recorded, so exactly one device gets a certificate.
#[tokio::test]
async fn racing_requests_with_one_node_key_enroll_one_device() {
    let s = server().await;
    let key = s.node_key().await;
    let mut bodies = Vec::new();
    for i in 0..4u8 {
        let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let device_id = format!("{:032X}", u128::from(i) + 0xA0);
        bodies.push(rst_request(&key, &hand_csr(&k, b"d", false), &device_id));
    }
    let path = "/api/mdm/microsoft/enroll";
    let (a, b, c, d) = tokio::join!(
        s.soap(path, bodies[0].clone()),
        s.soap(path, bodies[1].clone()),
        s.soap(path, bodies[2].clone()),
        s.soap(path, bodies[3].clone()),
    );
    let mut enrolled = 0;
    for r in [a, b, c, d] {
        if r.status == StatusCode::OK {
            enrolled += 1;
        } else {
            assert!(r.body.contains("DeviceCapReached"), "{}", r.body);
        }
    }
    assert_eq!(enrolled, 1);
}

#[tokio::test]
async fn empty_and_oversized_tokens_are_faults() {
    let s = server().await;
    for token in [String::new(), "A".repeat(20_000)] {
        let req = vector("xcep-getpolicies-request.xml")
            .replace("B64EncodedSampleBinarySecurityToken", &token);
        let r = s.soap("/api/mdm/microsoft/policy", req).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.body.contains("s:Authentication"), "{}", r.body);
    }
    let wrong_type = vector("xcep-getpolicies-request.xml")
        .replace("DeviceEnrollmentUserToken", "SomethingElse");
    let r = s.soap("/api/mdm/microsoft/policy", wrong_type).await;
    assert!(r.body.contains("a:InvalidSecurity"), "{}", r.body);
}

#[tokio::test]
async fn deeply_nested_and_huge_documents_are_refused_early() {
    let s = server().await;
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let r = s.soap("/api/mdm/microsoft/discovery", deep).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.body.contains("s:MessageFormat"), "{}", r.body);
    let huge = "x".repeat(2 * 1024 * 1024);
    let r = s.soap("/api/mdm/microsoft/discovery", huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn resent_message_is_answered_once_and_msgid_reuse_is_refused() {
    let s = server().await;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let (_, body) = enroll(&s, DEVICE, &rsa).await;
    let cert = client_cert(&body);

    s.queue_get(DEVICE).await;
    let msg = |body: &str| {
        format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>5</SessionID><MsgID>1</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{DEVICE}</LocURI></Source></SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"#
        )
    };
    let first = s
        .send(
            "POST",
            PATH,
            SYNCML,
            msg("<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>"),
            Some(cert.clone()),
        )
        .await;
    assert!(first.body.contains("<Get>"));
    // The connection dropped; the device sends the same message again.
    let again = s
        .send(
            "POST",
            PATH,
            SYNCML,
            msg("<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>"),
            Some(cert.clone()),
        )
        .await;
    assert_eq!(
        again.body, first.body,
        "same answer, command not claimed twice"
    );
    let conflict = s
        .send(
            "POST",
            PATH,
            SYNCML,
            msg("<Alert><CmdID>1</CmdID><Data>1200</Data></Alert>"),
            Some(cert.clone()),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::BAD_REQUEST);
    // Another session at the same time does not get the command a second time.
    let other = s
        .send(
            "POST",
            PATH,
            SYNCML,
            msg("<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>")
                .replace("<SessionID>5<", "<SessionID>6<"),
            Some(cert),
        )
        .await;
    assert!(!other.body.contains("<Get>"), "{}", other.body);
}

#[tokio::test]
async fn syncml_bodies_over_the_message_limit_are_413() {
    let s = server_with(|c| c.max_device_message_bytes = 4096).await;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let (_, body) = enroll(&s, DEVICE, &rsa).await;
    let cert = client_cert(&body);
    let r = s
        .send("POST", PATH, SYNCML, "x".repeat(20_000), Some(cert))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A certificate for DEVICE signed by the server's own identity CA, with the given
/// validity window and extended key usages: what only someone holding the CA key could
/// make, to check the route's own validity and EKU checks.
fn ca_signed(
    s: &TestServer,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
    client_auth: bool,
) -> Vec<u8> {
    use rsa::pkcs8::EncodePrivateKey;
    let ca_pem = std::fs::read_to_string(s.dir.path().join("identity-ca.pem")).unwrap();
    let key_pem = std::fs::read_to_string(s.dir.path().join("identity-ca.key.pem")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let device_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let der = device_key.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEVICE);
    params.not_before = not_before;
    params.not_after = not_after;
    params.extended_key_usages = if client_auth {
        vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]
    };
    params.signed_by(&kp, &issuer).unwrap().der().to_vec()
}

#[tokio::test]
async fn expired_not_yet_valid_and_wrong_eku_certificates_are_403() {
    let s = server().await;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    enroll(&s, DEVICE, &rsa).await;
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let msg = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{DEVICE}</LocURI></Source></SyncHdr><SyncBody><Final/></SyncBody></SyncML>"#
    );
    for (cert, why) in [
        (ca_signed(&s, now - day * 10, now - day, true), "expired"),
        (
            ca_signed(&s, now + day, now + day * 10, true),
            "not yet valid",
        ),
        (ca_signed(&s, now - day, now + day, false), "clientAuth"),
    ] {
        let r = s.send("POST", PATH, SYNCML, msg.clone(), Some(cert)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{why}: {}", r.body);
        assert!(r.body.contains(why), "{why}: {}", r.body);
    }
    // Valid and from the right CA, but never issued to an enrollment: still refused.
    let stray = ca_signed(&s, now - day, now + day, true);
    let r = s.send("POST", PATH, SYNCML, msg, Some(stray)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("active enrollment"), "{}", r.body);
}

#[tokio::test]
async fn expired_node_keys_are_refused_at_config_policy_and_enroll() {
    let s = server_with(|c| c.node_key_ttl_secs = 1).await;
    let key = s.node_key().await;
    let req = vector("xcep-getpolicies-request.xml")
        .replace("B64EncodedSampleBinarySecurityToken", &b64(key.as_bytes()));
    let r = s.soap("/api/mdm/microsoft/policy", req.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "fresh key accepted: {}", r.body);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = s.soap("/api/mdm/microsoft/policy", req).await;
    assert!(
        r.body.contains("s:Authentication") && r.body.contains("expired"),
        "{}",
        r.body
    );
    let body = serde_json::json!({ "orbit_node_key": key }).to_string();
    let r = s
        .send(
            "POST",
            "/api/fleet/orbit/config",
            "application/json",
            body,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("expired"), "{}", r.body);
}
