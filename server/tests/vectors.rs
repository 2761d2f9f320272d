//! The server accepts the published request vectors it should accept, and refuses the
//! malformed ones with the SOAP fault Windows understands.

mod common;

use axum::http::StatusCode;
use common::*;

#[tokio::test]
async fn discovery_get_probe_is_200_empty() {
    let s = server().await;
    let r = s
        .send(
            "GET",
            "/api/mdm/microsoft/discovery?mode=probe",
            "",
            String::new(),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn published_discover_request_is_answered() {
    // The sample has whitespace around Action, a space inside MessageID, XML comments,
    // and a trailing slash on the Discover namespace.
    let s = server().await;
    let r = s
        .soap(
            "/api/mdm/microsoft/discovery",
            vector("mde2-discover-request.xml"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.content_type.starts_with("application/soap+xml"));
    assert!(
        r.content_length.is_some(),
        "SOAP responses carry Content-Length"
    );
    assert_eq!(
        element_text(&r.body, "RelatesTo").as_deref(),
        Some("urn:uuid: 748132ec-a575-4329-b01b-6171a9cf8478")
    );
    assert_eq!(
        element_text(&r.body, "EnrollmentServiceUrl").as_deref(),
        Some("https://mdm.example.test/api/mdm/microsoft/enroll")
    );
    assert_eq!(
        element_text(&r.body, "AuthPolicy").as_deref(),
        Some("OnPremise")
    );
}

#[tokio::test]
async fn discover_children_in_any_order() {
    let s = server().await;
    let reordered = vector("mde2-discover-request.xml")
        .replace("<EmailAddress>user@contoso.com</EmailAddress>", "")
        .replace(
            "</AuthPolicies>",
            "</AuthPolicies><EmailAddress>user@contoso.com</EmailAddress>",
        );
    let r = s.soap("/api/mdm/microsoft/discovery", reordered).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn published_getpolicies_request_with_a_real_node_key_is_answered() {
    let s = server().await;
    let key = s.node_key().await;
    let req = vector("xcep-getpolicies-request.xml")
        .replace("B64EncodedSampleBinarySecurityToken", &b64(key.as_bytes()));
    let r = s.soap("/api/mdm/microsoft/policy", req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        element_text(&r.body, "minimalKeyLength").as_deref(),
        Some("2048")
    );
}

#[tokio::test]
async fn published_getpolicies_request_with_its_placeholder_token_is_refused() {
    let s = server().await;
    let r = s
        .soap(
            "/api/mdm/microsoft/policy",
            vector("xcep-getpolicies-request.xml"),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let sub = element_text(&r.body, "Subcode").unwrap_or_default();
    let value = r.body.contains("a:InvalidSecurity") || r.body.contains("s:Authentication");
    assert!(value, "{sub} {}", r.body);
}

#[tokio::test]
async fn unknown_token_is_an_authentication_fault() {
    let s = server().await;
    let req = vector("xcep-getpolicies-request.xml")
        .replace("B64EncodedSampleBinarySecurityToken", &b64(b"nope"));
    let r = s.soap("/api/mdm/microsoft/policy", req).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.body.contains("<s:Value>s:Authentication</s:Value>"),
        "{}",
        r.body
    );
    assert!(r.content_type.starts_with("application/soap+xml"));
}

#[tokio::test]
async fn published_rst_request_as_published_is_a_message_format_fault() {
    let s = server().await;
    let r = s
        .soap("/api/mdm/microsoft/enroll", vector("wstep-rst-request.xml"))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.body.contains("s:MessageFormat"), "{}", r.body);
}

#[tokio::test]
async fn repaired_rst_request_with_prefixed_attributes_enrolls() {
    // The sample writes wsse:ValueType / wsse:EncodingType on the security header token
    // and a GUID-style DeviceID: both must be accepted.
    let s = server().await;
    let key = s.node_key().await;
    let (_k, csr) =
        rsa_csr("B1C43CD0-1624-5FBB-8E54-34CF17DFD3A1!7BA748C8703E4DF2A74A92984117346A\0");
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(&key, &csr, "7BA748C8703E4DF2A74A92984117346A"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("DeviceEnrollmentProvisionDoc"));
    let e = s
        .state
        .store
        .enrollment("7BA748C8703E4DF2A74A92984117346A")
        .await
        .unwrap();
    assert_eq!(e.map(|e| e.state).as_deref(), Some("enrolled"));
}

#[tokio::test]
async fn short_rsa_keys_are_refused() {
    let s = server().await;
    let key = s.node_key().await;
    let small = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
    let csr = hand_csr(&small, b"device", false);
    let r = s
        .soap("/api/mdm/microsoft/enroll", rst_request(&key, &csr, "AB"))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.body.contains("s:CertificateRequest") && r.body.contains("1024"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn windows_shaped_csr_with_oiw_sha1_and_nul_in_cn_enrolls() {
    let s = server().await;
    let key = s.node_key().await;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let csr = hand_csr(
        &rsa,
        b"B1C43CD0-1624-5FBB-8E54-34CF17DFD3A1!ABCDEF0123456789ABCDEF0123456789\0",
        true,
    );
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(&key, &csr, "ABCDEF0123456789ABCDEF0123456789"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let parsed = winmdm_server::csr::parse_and_verify(&csr, 2048).unwrap();
    assert_eq!(parsed.signature_hash, "sha1");
}

#[tokio::test]
async fn tampered_csr_signature_is_refused() {
    let s = server().await;
    let key = s.node_key().await;
    let (_k, mut csr) = rsa_csr("device");
    let last = csr.len() - 1;
    csr[last] ^= 0x01;
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(&key, &csr, "ABCDEF"),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        r.body.contains("s:CertificateRequest") && r.body.contains("signature"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn soap_11_envelope_and_wrong_action_are_message_format_faults() {
    let s = server().await;
    let soap11 = vector("mde2-discover-request.xml").replace(
        "http://www.w3.org/2003/05/soap-envelope",
        "http://schemas.xmlsoap.org/soap/envelope/",
    );
    let r = s.soap("/api/mdm/microsoft/discovery", soap11).await;
    assert!(
        r.body.contains("s:MessageFormat") && r.body.contains("SOAP 1.2"),
        "{}",
        r.body
    );
    let r = s
        .soap(
            "/api/mdm/microsoft/policy",
            vector("mde2-discover-request.xml"),
        )
        .await;
    assert!(
        r.body.contains("s:MessageFormat") && r.body.contains("a:Action"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn dtds_are_refused() {
    let s = server().await;
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\">&lol2;</s:Envelope>";
    let r = s
        .soap("/api/mdm/microsoft/discovery", bomb.to_string())
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.body.contains("s:MessageFormat"), "{}", r.body);
}

#[tokio::test]
async fn orbit_wrong_secret_is_401_json() {
    let s = server().await;
    let body = serde_json::json!({"enroll_secret": "wrong", "hardware_uuid": "x"}).to_string();
    let r = s
        .send(
            "POST",
            "/api/fleet/orbit/enroll",
            "application/json",
            body,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["error"].as_str().is_some());
}
