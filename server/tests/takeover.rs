//! DeviceID takeover: a DeviceID enrolled for one host (or enrollment user) is enrolled
//! again only by that host, or once it has been unenrolled or released; a renewal may not
//! certify a key that belongs to another device.

mod common;

use axum::http::StatusCode;
use common::*;

const VICTIM: &str = "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A";
const ENROLL: &str = "/api/mdm/microsoft/enroll";
const MANAGEMENT: &str = "/api/mdm/microsoft/management";
const SYNCML: &str = "application/vnd.syncml.dm+xml";
const PKG1: &str = "<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>";

fn rsa() -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa")
}

/// Enrolls a host through Orbit with this hardware UUID; returns its node key.
async fn orbit_node_key(s: &TestServer, hardware_uuid: &str) -> String {
    s.node_key_for(hardware_uuid).await
}

async fn enroll_with_node_key(s: &TestServer, node_key: &str, device: &str) -> Reply {
    s.soap(
        ENROLL,
        rst_request(node_key, &hand_csr(&rsa(), b"d", false), device),
    )
    .await
}

/// An RST authenticated OnPremise with a UsernameToken instead of a node key.
async fn enroll_as_user(s: &TestServer, user: &str, password: &str, device: &str) -> Reply {
    let rst = rst_request("unused", &hand_csr(&rsa(), b"d", false), device);
    let start = rst.find("<wsse:BinarySecurityToken").expect("token");
    let end = rst.find("</wsse:BinarySecurityToken>").expect("token end")
        + "</wsse:BinarySecurityToken>".len();
    let username_token = format!(
        "<wsse:UsernameToken><wsse:Username>{user}</wsse:Username><wsse:Password>{password}</wsse:Password></wsse:UsernameToken>"
    );
    let body = format!("{}{username_token}{}", &rst[..start], &rst[end..]);
    s.soap(ENROLL, body).await
}

fn session(device: &str, session_id: u32) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session_id}</SessionID><MsgID>1</MsgID><Target><LocURI>https://mdm.example.test{MANAGEMENT}</LocURI></Target><Source><LocURI>{device}</LocURI></Source></SyncHdr><SyncBody>{PKG1}<Final/></SyncBody></SyncML>"#
    )
}

/// The enrollment of `device` as the admin API lists it.
async fn device_row(s: &TestServer, device: &str) -> serde_json::Value {
    let r = s.send_admin("GET", "/api/v1/devices", "").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    v["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["device_id"] == device)
        .cloned()
        .expect("device listed")
}

fn assert_takeover_refused(r: &Reply) {
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert!(
        r.body.contains("s:Authorization") && r.body.contains("enrolled by another host"),
        "{}",
        r.body
    );
    assert!(
        !r.body.contains("DeviceEnrollmentProvisionDoc"),
        "{}",
        r.body
    );
}

/// The victim's enrollment is untouched: same row, its certificate still opens a
/// session, and its queued command is delivered to it.
async fn assert_victim_intact(
    s: &TestServer,
    before: &serde_json::Value,
    cert: Vec<u8>,
    command_id: &str,
) {
    assert_eq!(&device_row(s, VICTIM).await, before);
    let r = s
        .send("POST", MANAGEMENT, SYNCML, session(VICTIM, 41), Some(cert))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("<Get><CmdID>{command_id}</CmdID>")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_second_orbit_host_cannot_take_over_an_enrolled_device_id() {
    let s = server().await;
    let victim_key = orbit_node_key(&s, "hw-victim").await;
    let r = enroll_with_node_key(&s, &victim_key, VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cert = client_cert(&r.body);
    let command_id = s.queue_get(VICTIM).await;
    let before = device_row(&s, VICTIM).await;

    let attacker_key = orbit_node_key(&s, "hw-attacker").await;
    let r = enroll_with_node_key(&s, &attacker_key, VICTIM).await;
    assert_takeover_refused(&r);
    assert_victim_intact(&s, &before, cert, &command_id).await;
}

#[tokio::test]
async fn an_enrollment_user_cannot_take_over_a_device_id() {
    let s = server_with(|c| {
        c.enroll_users = vec!["alice:wonderland".into(), "mallory:evil".into()];
    })
    .await;
    // A device enrolled by one user is refused to another user and to an Orbit host.
    let r = enroll_as_user(&s, "alice", "wonderland", VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cert = client_cert(&r.body);
    let command_id = s.queue_get(VICTIM).await;
    let before = device_row(&s, VICTIM).await;
    assert_takeover_refused(&enroll_as_user(&s, "mallory", "evil", VICTIM).await);
    let orbit = orbit_node_key(&s, "hw-attacker").await;
    assert_takeover_refused(&enroll_with_node_key(&s, &orbit, VICTIM).await);
    assert_victim_intact(&s, &before, cert, &command_id).await;

    // And a device enrolled by an Orbit host is refused to a user.
    const OTHER: &str = "6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B";
    let key = orbit_node_key(&s, "hw-other").await;
    let r = enroll_with_node_key(&s, &key, OTHER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_takeover_refused(&enroll_as_user(&s, "mallory", "evil", OTHER).await);
    // The same user enrolling its own device again is allowed.
    let r = enroll_as_user(&s, "alice", "wonderland", VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn an_orbit_agent_cannot_claim_an_enrollment_users_host() {
    let s = server_with(|c| c.enroll_users = vec!["alice:wonderland".into()]).await;
    let r = enroll_as_user(&s, "alice", "wonderland", VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cert = client_cert(&r.body);
    let command_id = s.queue_get(VICTIM).await;
    let before = device_row(&s, VICTIM).await;
    // `user:alice` is the key of alice's host: an agent claiming it would get a node
    // key for that host, and with it alice's devices.
    let body = serde_json::json!({"enroll_secret": SECRET, "hardware_uuid": "user:alice"});
    let r = s
        .send(
            "POST",
            "/api/fleet/orbit/enroll",
            "application/json",
            body.to_string(),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_victim_intact(&s, &before, cert, &command_id).await;
}

#[tokio::test]
async fn the_same_host_re_enrolling_with_a_new_node_key_keeps_its_device() {
    let s = server().await;
    let first = orbit_node_key(&s, "hw-victim").await;
    let r = enroll_with_node_key(&s, &first, VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The agent enrolls through Orbit again (reinstall): new node key, same hardware.
    let second = orbit_node_key(&s, "hw-victim").await;
    assert_ne!(first, second);
    let r = enroll_with_node_key(&s, &second, VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cert = client_cert(&r.body);
    let r = s
        .send("POST", MANAGEMENT, SYNCML, session(VICTIM, 42), Some(cert))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn another_host_may_enroll_the_device_id_after_the_device_unenrolled() {
    let s = server().await;
    let key = orbit_node_key(&s, "hw-first").await;
    let r = enroll_with_node_key(&s, &key, VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cert = client_cert(&r.body);
    // Device-initiated unenrollment: Alert 1226.
    let alert = "<Alert><CmdID>2</CmdID><Data>1226</Data><Item><Meta><Type xmlns=\"syncml:metinf\">com.microsoft:mdm.unenrollment.userrequest</Type><Format xmlns=\"syncml:metinf\">int</Format></Meta><Data>1</Data></Item></Alert>";
    let r = s
        .send(
            "POST",
            MANAGEMENT,
            SYNCML,
            session(VICTIM, 43).replace(PKG1, &format!("{PKG1}{alert}")),
            Some(cert),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(device_row(&s, VICTIM).await["state"], "unenrolled");
    let other = orbit_node_key(&s, "hw-second").await;
    let r = enroll_with_node_key(&s, &other, VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(device_row(&s, VICTIM).await["hardware_uuid"], "hw-second");
}

#[tokio::test]
async fn an_admin_release_frees_the_device_id_and_a_pending_unenroll_does_not() {
    let s = server().await;
    let key = orbit_node_key(&s, "hw-first").await;
    let r = enroll_with_node_key(&s, &key, VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cert = client_cert(&r.body);
    let other = orbit_node_key(&s, "hw-second").await;
    // A server unenrollment the device has not acknowledged: still its device.
    let r = s
        .send_admin("POST", &format!("/api/v1/devices/{VICTIM}/unenroll"), "")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_takeover_refused(&enroll_with_node_key(&s, &other, VICTIM).await);
    // Release is an admin route: the bearer token is required.
    let r = s
        .send(
            "POST",
            &format!("/api/v1/devices/{VICTIM}/release"),
            "application/json",
            String::new(),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // Released by an administrator: the old certificate no longer opens a session,
    // and another host may enroll the DeviceID.
    let r = s
        .send_admin("POST", &format!("/api/v1/devices/{VICTIM}/release"), "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = s
        .send("POST", MANAGEMENT, SYNCML, session(VICTIM, 44), Some(cert))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = s
        .send_admin("POST", &format!("/api/v1/devices/{VICTIM}/release"), "")
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = s
        .send_admin("POST", "/api/v1/devices/0000/release", "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = enroll_with_node_key(&s, &other, VICTIM).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_renewal_with_the_key_of_another_device_is_refused() {
    let s = server().await;
    let victim_rsa = rsa();
    let victim_key = orbit_node_key(&s, "hw-victim").await;
    let r = s
        .soap(
            ENROLL,
            rst_request(&victim_key, &hand_csr(&victim_rsa, b"d", false), VICTIM),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let victim_cert = client_cert(&r.body);

    const RENEWER: &str = "7C7C7C7C7C7C7C7C7C7C7C7C7C7C7C7C";
    let renewer_rsa = rsa();
    let renewer_key = orbit_node_key(&s, "hw-renewer").await;
    let r = s
        .soap(
            ENROLL,
            rst_request(&renewer_key, &hand_csr(&renewer_rsa, b"d", false), RENEWER),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let renewer_cert = client_cert(&r.body);
    let before = device_row(&s, RENEWER).await;

    // The renewer asks for a certificate on the victim's public key.
    let p7 = pkcs7_signed(
        &hand_csr(&victim_rsa, b"d", false),
        &renewer_rsa,
        &renewer_cert,
        true,
    );
    let body =
        vector("wstep-renew-request.xml").replace("BinarySecurityTokenInsertedHere", &b64(&p7));
    let r = s
        .send(
            "POST",
            ENROLL,
            "application/soap+xml; charset=utf-8",
            body,
            Some(renewer_cert.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.body);
    assert!(
        r.body.contains("s:CertificateRequest") && r.body.contains("another device"),
        "{}",
        r.body
    );
    assert_eq!(device_row(&s, RENEWER).await, before, "nothing recorded");
    for (device, cert, id) in [(VICTIM, victim_cert, 45), (RENEWER, renewer_cert, 46)] {
        let r = s
            .send("POST", MANAGEMENT, SYNCML, session(device, id), Some(cert))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}
