//! The management route: mTLS binding and command delivery, driven through the router
//! with the client certificate a TLS handshake would have produced.

mod common;

use axum::http::StatusCode;
use common::*;

const DEVICE: &str = "00112233445566778899AABBCCDDEEFF";
const SYNCML: &str = "application/vnd.syncml.dm+xml";
const PATH: &str = "/api/mdm/microsoft/management";

/// Enrolls DEVICE through the enroll endpoint and returns its certificate (DER).
async fn enrolled(s: &TestServer) -> Vec<u8> {
    enrolled_with_key(s).await.0
}

/// Enrolls DEVICE and returns its certificate and the host's node key.
async fn enrolled_with_key(s: &TestServer) -> (Vec<u8>, String) {
    s.enroll_device(DEVICE).await
}

async fn config(s: &TestServer, node_key: &str) -> serde_json::Value {
    let body = serde_json::json!({ "orbit_node_key": node_key }).to_string();
    let r = s
        .send(
            "POST",
            "/api/fleet/orbit/config",
            "application/json",
            body,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["notifications"].clone()
}

/// POSTs a SyncML message to the management route, with `cert` as the TLS client
/// certificate.
async fn post_syncml(s: &TestServer, body: String, cert: Option<Vec<u8>>) -> common::Reply {
    s.send("POST", PATH, SYNCML, body, cert).await
}

fn message(device: &str, msg_id: u32, body: &str) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>https://mdm.example.test{PATH}</LocURI></Target><Source><LocURI>{device}</LocURI></Source></SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"#
    )
}

const PKG1: &str = "<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>";

#[tokio::test]
async fn no_certificate_is_401() {
    let s = server().await;
    let r = post_syncml(&s, message(DEVICE, 1, PKG1), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("client certificate"));
}

#[tokio::test]
async fn certificate_from_another_ca_is_403() {
    let s = server().await;
    let _ = enrolled(&s).await;
    let other = rcgen::generate_simple_self_signed(vec!["device".to_string()]).unwrap();
    let r = post_syncml(
        &s,
        message(DEVICE, 1, PKG1),
        Some(other.cert.der().to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("identity CA"), "{}", r.body);
}

#[tokio::test]
async fn certificate_bound_to_another_device_id_is_403() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let r = post_syncml(
        &s,
        message("FFEEDDCCBBAA99887766554433221100", 1, PKG1),
        Some(cert),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("DeviceID"), "{}", r.body);
}

#[tokio::test]
async fn malformed_syncml_is_400() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let r = post_syncml(
        &s,
        "<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncBody/></SyncML>".into(),
        Some(cert),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("SyncHdr"), "{}", r.body);
}

#[tokio::test]
async fn queued_command_is_delivered_once_and_its_result_stored() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let id = s.queue_get(DEVICE).await;

    let r = post_syncml(&s, message(DEVICE, 1, PKG1), Some(cert.clone())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains(&format!("<Get><CmdID>{id}</CmdID>")),
        "{}",
        r.body
    );
    assert!(r.content_type.starts_with(SYNCML));

    let reply = format!(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>\
         <Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>\
         <Results><CmdID>3</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Data>10.0.22631.2428</Data></Item></Results>"
    );
    let r = post_syncml(&s, message(DEVICE, 2, &reply), Some(cert.clone())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains("<Get>"), "delivered once: {}", r.body);
    assert!(
        r.body.contains("<Cmd>Results</Cmd>"),
        "Results are acknowledged: {}",
        r.body
    );

    let c = s
        .send_admin("GET", &format!("/api/v1/commands/{id}"), "")
        .await;
    let v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    let v = &v["devices"][0];
    assert_eq!(v["device_id"], DEVICE);
    assert_eq!(v["status_code"], "200");
    assert_eq!(v["state"], "acknowledged");
    assert!(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["body_xml"].as_str().unwrap().contains("10.0.22631.2428")));

    // A new session does not deliver it again.
    let r = post_syncml(
        &s,
        message(DEVICE, 1, PKG1).replace("<SessionID>7<", "<SessionID>8<"),
        Some(cert),
    )
    .await;
    assert!(!r.body.contains("<Get>"), "{}", r.body);
}

#[tokio::test]
async fn admin_api_requires_the_bearer_token() {
    let s = server().await;
    let r = s
        .send("GET", "/api/v1/devices", "", String::new(), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s.send_admin("GET", "/api/v1/devices", "").await;
    assert_eq!(r.status, StatusCode::OK);
    // Every admin route, not only the listing, is behind the token.
    for (method, path) in [
        ("POST", "/api/v1/devices/D/commands"),
        ("POST", "/api/v1/devices/D/unenroll"),
        ("POST", "/api/v1/devices/D/release"),
        ("POST", "/api/v1/commands"),
        ("POST", "/api/v1/profiles"),
        ("GET", "/api/v1/profiles/p"),
        ("POST", "/api/v1/profiles/p/assign"),
        ("GET", "/api/v1/commands/c"),
        ("DELETE", "/api/v1/commands/c"),
    ] {
        let r = s
            .send(method, path, "application/json", "{}".into(), None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

#[tokio::test]
async fn published_client_alert_vectors_are_acknowledged() {
    // The 1224 LoginStatus alert and the 1226 unenrollment alert fragments, inside a
    // package 1 as Windows sends them.
    let s = server().await;
    let cert = enrolled(&s).await;
    let body = format!(
        "{PKG1}{}{}",
        vector("omadm-alert-1224-loginstatus.xml").replace("<CmdID>1</CmdID>", "<CmdID>2</CmdID>"),
        vector("omadm-alert-1226-unenroll.xml").replace("<CmdID>4</CmdID>", "<CmdID>3</CmdID>"),
    );
    let r = post_syncml(&s, message(DEVICE, 1, &body), Some(cert)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for cmd_ref in ["1", "2", "3"] {
        assert!(
            r.body.contains(&format!(
                "<CmdRef>{cmd_ref}</CmdRef><Cmd>Alert</Cmd><Data>200</Data>"
            )),
            "{cmd_ref}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn device_initiated_unenrollment_retires_the_certificate() {
    let s = server().await;
    let (cert, key) = enrolled_with_key(&s).await;
    assert_eq!(config(&s, &key).await, serde_json::json!({}));
    // Newer builds send the 1226 alert with an empty Meta/Type.
    let alert = "<Alert><CmdID>2</CmdID><Data>1226</Data><Item><Meta><Type xmlns=\"syncml:metinf\"></Type><Format xmlns=\"syncml:metinf\">int</Format></Meta><Data>1</Data></Item></Alert>";
    let r = post_syncml(
        &s,
        message(DEVICE, 1, &format!("{PKG1}{alert}")),
        Some(cert.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .contains("<CmdRef>2</CmdRef><Cmd>Alert</Cmd><Data>200</Data>"),
        "{}",
        r.body
    );
    let r = post_syncml(&s, message(DEVICE, 1, PKG1), Some(cert)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "old certificate refused");
    assert_eq!(
        config(&s, &key).await["needs_programmatic_windows_mdm_enrollment"],
        true,
        "may enroll again"
    );
}

#[tokio::test]
async fn server_initiated_unenrollment_via_notification_and_exec() {
    let s = server().await;
    let (cert, key) = enrolled_with_key(&s).await;
    let r = s
        .send_admin("POST", &format!("/api/v1/devices/{DEVICE}/unenroll"), "")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let id = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        config(&s, &key).await["needs_programmatic_windows_mdm_unenrollment"],
        true
    );
    let r = post_syncml(&s, message(DEVICE, 1, PKG1), Some(cert.clone())).await;
    assert!(
        r.body.contains(&format!("<Exec><CmdID>{id}</CmdID>")),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("./Vendor/MSFT/DMClient/Provider/winmdm/Unenroll"),
        "{}",
        r.body
    );
    let status = format!("<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Cmd>Exec</Cmd><Data>200</Data></Status>");
    let r = post_syncml(&s, message(DEVICE, 2, &status), Some(cert.clone())).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post_syncml(&s, message(DEVICE, 1, PKG1), Some(cert)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn cancelled_commands_are_not_delivered() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let q = s.send_admin("POST", "/api/v1/commands", &format!(r#"{{"device_ids":["{DEVICE}"],"syncml":"<Get><Item><Target><LocURI>./DevDetail/OEM</LocURI></Target></Item></Get>"}}"#)).await;
    assert_eq!(q.status, StatusCode::CREATED, "{}", q.body);
    let id = serde_json::from_str::<serde_json::Value>(&q.body).unwrap()["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = s
        .send_admin("DELETE", &format!("/api/v1/commands/{id}"), "")
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert!(c.body.contains("\"cancelled\":1"), "{}", c.body);
    let r = post_syncml(&s, message(DEVICE, 1, PKG1), Some(cert)).await;
    assert!(!r.body.contains("<Get>"), "{}", r.body);
}

#[tokio::test]
async fn large_results_arrive_in_chunks_and_are_stored_whole() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let q = s
        .send_admin(
            "POST",
            &format!("/api/v1/devices/{DEVICE}/commands"),
            r#"{"verb":"Get","target":"./Vendor/MSFT/Big"}"#,
        )
        .await;
    let id = serde_json::from_str::<serde_json::Value>(&q.body).unwrap()["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_syncml(&s, message(DEVICE, 1, PKG1), Some(cert.clone())).await;
    assert!(r.body.contains(&id));
    let chunk = |n: u32, data: &str, more: bool| {
        format!(
            "<Results><CmdID>{n}</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Item><Source><LocURI>./Vendor/MSFT/Big</LocURI></Source><Meta><Format xmlns=\"syncml:metinf\">chr</Format></Meta><Data>{data}</Data>{}</Item></Results>",
            if more { "<MoreData/>" } else { "" }
        )
    };
    let first = format!(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>{}",
        chunk(2, "AAAA", true)
    );
    // No Final: the server answers 213 and asks for the next message.
    let msg2 = message(DEVICE, 2, &first).replace("<Final/>", "");
    let r = post_syncml(&s, msg2, Some(cert.clone())).await;
    assert!(
        r.body
            .contains("<CmdRef>2</CmdRef><Cmd>Results</Cmd><Data>213</Data>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<Data>1222</Data>"), "{}", r.body);
    let msg3 = message(DEVICE, 3, &chunk(1, "BBBB", true)).replace("<Final/>", "");
    let r = post_syncml(&s, msg3, Some(cert.clone())).await;
    assert!(r.body.contains("<Data>213</Data>"), "{}", r.body);
    let r = post_syncml(&s, message(DEVICE, 4, &chunk(1, "CC", false)), Some(cert)).await;
    assert!(
        r.body
            .contains("<CmdRef>1</CmdRef><Cmd>Results</Cmd><Data>200</Data>"),
        "{}",
        r.body
    );
    let c = s
        .send_admin("GET", &format!("/api/v1/commands/{id}"), "")
        .await;
    let v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    let results: Vec<&serde_json::Value> = v["devices"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "Results")
        .collect();
    assert_eq!(results.len(), 1, "stored once, whole: {v}");
    assert!(
        results[0]["body_xml"]
            .as_str()
            .unwrap()
            .contains("<Data>AAAABBBBCC</Data>"),
        "{v}"
    );
}

#[tokio::test]
async fn max_msg_size_spreads_commands_over_messages() {
    let s = server().await;
    let cert = enrolled(&s).await;
    for n in 0..5 {
        let body = format!(
            r#"{{"verb":"Replace","target":"./Vendor/MSFT/Node{n}","format":"chr","data":"{}"}}"#,
            "x".repeat(300)
        );
        let q = s
            .send_admin("POST", &format!("/api/v1/devices/{DEVICE}/commands"), &body)
            .await;
        assert_eq!(q.status, StatusCode::CREATED);
    }
    let small = message(DEVICE, 1, PKG1).replace(
        "</Source></SyncHdr>",
        "</Source><Meta><MaxMsgSize xmlns=\"syncml:metinf\">1500</MaxMsgSize></Meta></SyncHdr>",
    );
    let r = post_syncml(&s, small, Some(cert)).await;
    assert!(r.body.len() <= 1500, "{} bytes", r.body.len());
    let sent = r.body.matches("<Replace>").count();
    assert!(
        (1..5).contains(&sent),
        "{sent} commands in the first message"
    );
}

/// The CmdID the server gave the first command of `verb` in a message.
fn cmd_id_of(body: &str, verb: &str) -> String {
    let start = body.find(&format!("<{verb}><CmdID>")).expect(verb) + verb.len() + 9;
    body[start..start + body[start..].find('<').unwrap()].to_string()
}

async fn profile_state(s: &TestServer, name: &str) -> serde_json::Value {
    let r = s
        .send_admin("GET", &format!("/api/v1/profiles/{name}"), "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["devices"][0].clone()
}

async fn assign_camera_profile(s: &TestServer) {
    let p = r#"{"name":"no-camera","items":[{"verb":"Replace","target":"./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera","format":"int","data":"0"}]}"#;
    assert_eq!(
        s.send_admin("POST", "/api/v1/profiles", p).await.status,
        StatusCode::CREATED
    );
    let a = s
        .send_admin(
            "POST",
            "/api/v1/profiles/no-camera/assign",
            &format!(r#"{{"device_ids":["{DEVICE}"]}}"#),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
}

#[tokio::test]
async fn profile_is_applied_read_back_and_verified() {
    let s = server().await;
    let cert = enrolled(&s).await;
    assign_camera_profile(&s).await;
    assert_eq!(profile_state(&s, "no-camera").await["state"], "pending");
    let r = post_syncml(&s, message(DEVICE, 1, PKG1), Some(cert.clone())).await;
    let replace = cmd_id_of(&r.body, "Replace");
    let status = format!("<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>{replace}</CmdRef><Cmd>Replace</Cmd><Data>200</Data></Status>");
    let r = post_syncml(&s, message(DEVICE, 2, &status), Some(cert.clone())).await;
    assert!(
        r.body
            .contains("./Device/Vendor/MSFT/Policy/Result/Camera/AllowCamera"),
        "{}",
        r.body
    );
    assert_eq!(profile_state(&s, "no-camera").await["state"], "verifying");
    let get = cmd_id_of(&r.body, "Get");
    let answer = format!(
        "<Status><CmdID>1</CmdID><MsgRef>2</MsgRef><CmdRef>{get}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>\
         <Results><CmdID>2</CmdID><MsgRef>2</MsgRef><CmdRef>{get}</CmdRef><Item><Source><LocURI>./Device/Vendor/MSFT/Policy/Result/Camera/AllowCamera</LocURI></Source><Data>0</Data></Item></Results>"
    );
    post_syncml(&s, message(DEVICE, 3, &answer), Some(cert)).await;
    assert_eq!(profile_state(&s, "no-camera").await["state"], "verified");
}

#[tokio::test]
async fn profile_fails_with_the_status_and_node() {
    let s = server().await;
    let cert = enrolled(&s).await;
    assign_camera_profile(&s).await;
    let r = post_syncml(&s, message(DEVICE, 1, PKG1), Some(cert.clone())).await;
    let replace = cmd_id_of(&r.body, "Replace");
    let status = format!("<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>{replace}</CmdRef><Cmd>Replace</Cmd><Data>404</Data></Status>");
    post_syncml(&s, message(DEVICE, 2, &status), Some(cert)).await;
    let st = profile_state(&s, "no-camera").await;
    assert_eq!(st["state"], "failed");
    let detail = st["detail"].as_str().unwrap();
    assert!(
        detail.contains("404") && detail.contains("Policy/Config/Camera/AllowCamera"),
        "{detail}"
    );
}
