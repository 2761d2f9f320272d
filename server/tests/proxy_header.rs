//! A TLS-terminating proxy in front of the server forwards the client certificate in a
//! header (`--client-cert-header`); it is believed only from `--trusted-proxy`
//! addresses and only when the connection presented no certificate of its own, and is
//! then judged as one from a handshake.

mod common;

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use common::*;
use tower::ServiceExt;
use winmdm_server::app::{router, ClientAddr, PeerCertificate};

const DEVICE: &str = "00112233445566778899AABBCCDDEEFF";
const PATH: &str = "/api/mdm/microsoft/management";
const HEADER: &str = "x-ssl-client-cert";

fn package1() -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>1</MsgID><Target><LocURI>https://mdm.example.test{PATH}</LocURI></Target><Source><LocURI>{DEVICE}</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"#
    )
}

/// nginx `$ssl_client_escaped_cert`: the PEM, URL-encoded.
fn nginx_escaped(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
    .replace(' ', "%20")
    .replace('\n', "%0A")
}

/// POSTs package 1 from `peer` with the header (if any) and no TLS certificate.
async fn post(s: &TestServer, peer: &str, header: Option<String>) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method("POST")
        .uri(PATH)
        .header("content-type", "application/vnd.syncml.dm+xml");
    if let Some(h) = header {
        req = req.header(HEADER, h);
    }
    let mut req = req.body(Body::from(package1())).expect("request");
    req.extensions_mut().insert(PeerCertificate::new(None));
    req.extensions_mut()
        .insert(ClientAddr(peer.parse::<IpAddr>().expect("ip")));
    let resp = router(s.state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn behind_proxy() -> TestServer {
    server_with(|c| {
        c.client_cert_header = Some(HEADER.into());
        c.trusted_proxy = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
    })
    .await
}

#[tokio::test]
async fn a_certificate_forwarded_by_a_trusted_proxy_is_judged_as_from_a_handshake() {
    let s = behind_proxy().await;
    let (cert, _) = s.enroll_device(DEVICE).await;
    // nginx's format, and Envoy's XFCC.
    let (status, body) = post(&s, "10.1.2.3", Some(nginx_escaped(&cert))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("<Cmd>SyncHdr</Cmd>"), "{body}");
    let xfcc = format!(
        "By=spiffe://proxy;Hash=00;Cert=\"{}\"",
        nginx_escaped(&cert)
    );
    let (status, body) = post(&s, "127.0.0.1", Some(xfcc)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A forwarded certificate the identity CA did not issue is refused as it would be
    // from a handshake.
    let (foreign, _) = common::rsa_csr("foreign");
    let foreign = rcgen::CertificateParams::new(vec!["foreign".into()])
        .expect("params")
        .self_signed(&foreign)
        .expect("self-signed");
    let (status, _) = post(&s, "127.0.0.1", Some(nginx_escaped(foreign.der()))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A header that holds no certificate is a clear 400.
    let (status, body) = post(&s, "127.0.0.1", Some("%zz".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_header_from_an_untrusted_address_or_without_the_flag_is_ignored() {
    let s = behind_proxy().await;
    let (cert, _) = s.enroll_device(DEVICE).await;
    let (status, _) = post(&s, "192.0.2.7", Some(nginx_escaped(&cert))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "untrusted peer: header ignored"
    );
    let plain = server().await;
    let (cert, _) = plain.enroll_device(DEVICE).await;
    let (status, _) = post(&plain, "127.0.0.1", Some(nginx_escaped(&cert))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "no --client-cert-header: ignored"
    );
}
