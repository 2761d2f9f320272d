//! Snapshots of every SOAP response the server sends and of the first SyncML response,
//! redacted where values vary run to run. Files live in the workspace's `snapshots/`.

mod common;

use axum::http::StatusCode;
use common::*;

/// Redactions: UUIDs, timestamps, base64 blobs, thumbprints, serial-like hex.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s.add_filter(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "[UUID]",
    );
    s.add_filter(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z",
        "[TIMESTAMP]",
    );
    s.add_filter(r">[A-Za-z0-9+/]{60,}={0,2}<", ">[BASE64]<");
    s.add_filter(r#"value="[A-Za-z0-9+/]{60,}={0,2}""#, r#"value="[BASE64]""#);
    s.add_filter(r"\b[0-9A-F]{40}\b", "[THUMBPRINT]");
    s.add_filter(r"\b[0-9A-F]{32}\b", "[DEVICEID]");
    s
}

/// Pretty-prints XML (one element per line) so snapshot diffs are readable.
fn pretty(xml: &str) -> String {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(e) => {
                if writer.write_event(e).is_err() {
                    return xml.to_string();
                }
            }
            Err(_) => return xml.to_string(),
        }
    }
    String::from_utf8_lossy(&writer.into_inner()).into_owned()
}

fn snap(name: &str, body: &str) {
    settings().bind(|| insta::assert_snapshot!(name, pretty(body)));
}

fn syncml_pkg1(device_id: &str) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>0</SessionID><MsgID>1</MsgID><Target><LocURI>https://mdm.example.test/api/mdm/microsoft/management</LocURI></Target><Source><LocURI>{device_id}</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert><Alert><CmdID>3</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft/MDM/LoginStatus</Type><Format xmlns="syncml:metinf">chr</Format></Meta><Data>user</Data></Item></Alert><Replace><CmdID>4</CmdID><Item><Source><LocURI>./DevInfo/DevId</LocURI></Source><Data>{device_id}</Data></Item></Replace><Final/></SyncBody></SyncML>"#
    )
}

#[tokio::test]
async fn soap_and_first_syncml_responses() {
    let s = server().await;
    let r = s
        .soap(
            "/api/mdm/microsoft/discovery",
            vector("mde2-discover-request.xml"),
        )
        .await;
    snap("discover_response", &r.body);

    let key = s.node_key().await;
    let req = vector("xcep-getpolicies-request.xml")
        .replace("B64EncodedSampleBinarySecurityToken", &b64(key.as_bytes()));
    let r = s.soap("/api/mdm/microsoft/policy", req).await;
    snap("get_policies_response", &r.body);

    let device_id = "0123456789ABCDEF0123456789ABCDEF";
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let csr = hand_csr(&rsa, b"device", true);
    let r = s
        .soap(
            "/api/mdm/microsoft/enroll",
            rst_request(&key, &csr, device_id),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    snap("rstrc_response", &r.body);
    let doc = provisioning_doc(&r.body);
    snap("provisioning_doc", &doc);

    let r = s
        .soap(
            "/api/mdm/microsoft/policy",
            vector("xcep-getpolicies-request.xml")
                .replace("B64EncodedSampleBinarySecurityToken", &b64(b"bogus")),
        )
        .await;
    snap("fault_authentication", &r.body);

    // First SyncML response: the device presents the issued certificate.
    let e = s.state.store.enrollment(device_id).await.unwrap().unwrap();
    let cert = client_cert_from_doc(&doc);
    assert_eq!(winmdm_server::ca::thumbprint(&cert), e.cert_thumbprint);
    let r = s
        .send(
            "POST",
            "/api/mdm/microsoft/management?mode=Maintenance&Platform=WoA",
            "application/vnd.syncml.dm+xml",
            syncml_pkg1(device_id),
            Some(cert),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    snap("syncml_first_response", &r.body);
}
