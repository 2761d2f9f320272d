//! Limits that keep one client or device from holding the server's resources: HTTPS
//! connection deadlines and cap (over real TLS), device message size, large-object
//! reassembly, storage failures answered as errors, and which 1226 alerts unenroll.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A generous bound for "eventually": the deadlines in these tests are 1 s.
const EVENTUALLY: Duration = Duration::from_secs(20);

/// A real server (TLS listener) in a temporary directory.
async fn listening(
    adjust: impl FnOnce(&mut winmdm_server::Config),
) -> (winmdm_server::RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = winmdm_server::Config::for_data_dir(dir.path().to_path_buf(), SECRET);
    adjust(&mut config);
    let server = winmdm_server::start(config).await.expect("server");
    (server, dir)
}

async fn tls_connect(
    server: &winmdm_server::RunningServer,
) -> std::io::Result<TlsStream<TcpStream>> {
    let pem = std::fs::read(&server.tls_cert_path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in winmdm_server::tls::pem_certs(&pem).expect("PEM") {
        roots.add(cert).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(server.addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// Whether the server closes the connection (EOF or error) within [`EVENTUALLY`],
/// reading and discarding anything it sends first.
async fn closed_by_server(tls: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(EVENTUALLY, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

const PROBE: &[u8] =
    b"GET /api/mdm/microsoft/discovery HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n";

/// Sends a GET that the server answers 200, and reads the whole response.
async fn probe(tls: &mut TlsStream<TcpStream>) -> String {
    tls.write_all(PROBE).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(EVENTUALLY, async {
        loop {
            let n = tls.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the response ended");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().expect("length"))
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return;
                }
            }
        }
    })
    .await
    .expect("response in time");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_request_whose_headers_never_end_is_closed() {
    let (server, _dir) = listening(|c| c.header_read_timeout_secs = 1).await;
    let mut tls = tls_connect(&server).await.expect("connect");
    tls.write_all(b"POST /api/mdm/microsoft/management HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    assert!(closed_by_server(&mut tls).await, "still open");
    // The server still serves others.
    let mut other = tls_connect(&server).await.expect("connect");
    assert!(probe(&mut other).await.starts_with("HTTP/1.1 200"));
    server.shutdown().await;
}

/// Reads what the server sends until it closes the connection (or [`EVENTUALLY`]).
async fn read_until_closed(tls: &mut TlsStream<TcpStream>) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(EVENTUALLY, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_is_408_and_closed() {
    // The headers arrive whole; the announced body never does. The header and idle
    // deadlines do not run while a request is in flight: the body deadline must.
    let (server, _dir) = listening(|c| {
        c.header_read_timeout_secs = 600;
        c.idle_timeout_secs = 600;
        c.body_read_timeout_secs = 1;
    })
    .await;
    let mut tls = tls_connect(&server).await.expect("connect");
    tls.write_all(
        b"POST /api/mdm/microsoft/discovery HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/soap+xml\r\nContent-Length: 1000\r\n\r\n<s:Env",
    )
    .await
    .expect("write");
    let answer = read_until_closed(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_management_request_without_a_certificate_is_refused_before_its_body() {
    // 8 MiB announced, nothing sent: the 401 comes without the server waiting for (or
    // buffering) the body.
    let (server, _dir) = listening(|c| {
        c.header_read_timeout_secs = 600;
        c.body_read_timeout_secs = 600;
    })
    .await;
    let mut tls = tls_connect(&server).await.expect("connect");
    tls.write_all(
        b"POST /api/mdm/microsoft/management HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/vnd.syncml.dm+xml\r\nContent-Length: 8000000\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(EVENTUALLY, tls.read(&mut buf))
        .await
        .expect("answered before the body")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    // The header deadline is long: what closes the connection is the idle deadline.
    let (server, _dir) = listening(|c| {
        c.header_read_timeout_secs = 600;
        c.idle_timeout_secs = 1;
    })
    .await;
    let mut tls = tls_connect(&server).await.expect("connect");
    assert!(probe(&mut tls).await.starts_with("HTTP/1.1 200"));
    assert!(closed_by_server(&mut tls).await, "still open");
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_the_server_serves_after() {
    let (server, _dir) = listening(|c| c.max_connections = 2).await;
    let mut first = tls_connect(&server).await.expect("first");
    let mut second = tls_connect(&server).await.expect("second");
    // The handshakes completed, so both hold a slot: a third is closed at once.
    let third = tokio::time::timeout(EVENTUALLY, async {
        match tls_connect(&server).await {
            Err(_) => true,
            Ok(mut t) => closed_by_server(&mut t).await,
        }
    })
    .await;
    assert_eq!(third.ok(), Some(true), "the third connection was served");
    // The first two still work.
    assert!(probe(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(probe(&mut second).await.starts_with("HTTP/1.1 200"));
    drop(first);
    drop(second);
    // Once they are closed, new connections are served again.
    let served = tokio::time::timeout(EVENTUALLY, async {
        loop {
            if let Ok(mut t) = tls_connect(&server).await {
                if t.write_all(PROBE).await.is_ok() {
                    let mut buf = [0u8; 16];
                    if matches!(t.read(&mut buf).await, Ok(n) if n > 0) {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "not served after the others closed");
    server.shutdown().await;
}

// ---- Device messages (driven through the router, as in management.rs) ----

const DEVICE: &str = "00112233445566778899AABBCCDDEEFF";
const SYNCML: &str = "application/vnd.syncml.dm+xml";
const PATH: &str = "/api/mdm/microsoft/management";
const PKG1: &str = "<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>";

/// Enrolls DEVICE and returns its certificate (DER).
async fn enrolled(s: &TestServer) -> Vec<u8> {
    s.enroll_device(DEVICE).await.0
}

async fn post_syncml(s: &TestServer, body: String, cert: &[u8]) -> Reply {
    s.send("POST", PATH, SYNCML, body, Some(cert.to_vec()))
        .await
}

fn message(session: u32, msg_id: u32, body: &str) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>https://mdm.example.test{PATH}</LocURI></Target><Source><LocURI>{DEVICE}</LocURI></Source></SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"#
    )
}

/// Queues a Get of `target` and delivers it in a session's first message; returns its
/// CmdID (the command id).
async fn get_delivered(s: &TestServer, cert: &[u8], target: &str) -> String {
    let q = s
        .send_admin(
            "POST",
            &format!("/api/v1/devices/{DEVICE}/commands"),
            &format!(r#"{{"verb":"Get","target":"{target}"}}"#),
        )
        .await;
    assert_eq!(q.status, StatusCode::CREATED, "{}", q.body);
    let id = serde_json::from_str::<serde_json::Value>(&q.body).unwrap()["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post_syncml(s, message(7, 1, PKG1), cert).await;
    assert!(r.body.contains(&id), "{}", r.body);
    id
}

/// The device's answers stored for a command: (kind, body) per stored row.
async fn stored(s: &TestServer, id: &str) -> Vec<(String, String)> {
    let c = s
        .send_admin("GET", &format!("/api/v1/commands/{id}"), "")
        .await;
    let v: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    v["devices"][0]["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["kind"].as_str().unwrap_or("").to_string(),
                        r["body_xml"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn status_and_results(id: &str, target: &str, data: &str) -> String {
    format!(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>\
         <Results><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Item><Source><LocURI>{target}</LocURI></Source><Data>{data}</Data></Item></Results>"
    )
}

#[tokio::test]
async fn a_device_message_over_twice_max_msg_size_is_accepted() {
    // Windows ignores the announced MaxMsgSize (65,536): a 1 MiB inventory arrives whole.
    let s = server().await;
    let cert = enrolled(&s).await;
    let id = get_delivered(&s, &cert, "./DevDetail/Ext/Microsoft/Inventory").await;
    let data = "x".repeat(1024 * 1024);
    let body = message(
        7,
        2,
        &status_and_results(&id, "./DevDetail/Ext/Microsoft/Inventory", &data),
    );
    assert!(body.len() > 2 * 65_536);
    let r = post_syncml(&s, body, &cert).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = stored(&s, &id).await;
    assert!(
        results
            .iter()
            .any(|(k, b)| k == "Results" && b.contains(&data)),
        "not stored"
    );
}

#[tokio::test]
async fn a_device_message_over_the_device_message_limit_is_413() {
    let s = server_with(|c| c.max_device_message_bytes = 2 * 1024 * 1024).await;
    let cert = enrolled(&s).await;
    let body = message(
        7,
        1,
        &format!("{PKG1}<!-- {} -->", "x".repeat(3 * 1024 * 1024)),
    );
    let r = post_syncml(&s, body, &cert).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_chunk_for_a_command_never_sent_is_refused_and_buffers_nothing() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let id = get_delivered(&s, &cert, "./Vendor/MSFT/Big").await;
    let chunk = |n: u32, cmd_ref: &str, loc: &str| {
        format!(
            "<Results><CmdID>{n}</CmdID><MsgRef>1</MsgRef><CmdRef>{cmd_ref}</CmdRef><Item><Source><LocURI>{loc}</LocURI></Source><Data>AAAA</Data><MoreData/></Item></Results>"
        )
    };
    // A CmdRef never sent, and a real command's CmdRef with a node it was not about.
    let body = format!(
        "{}{}",
        chunk(1, "never-sent", "./Vendor/MSFT/Big"),
        chunk(2, &id, "./Vendor/MSFT/Other")
    );
    let r = post_syncml(&s, message(7, 2, &body).replace("<Final/>", ""), &cert).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for n in ["1", "2"] {
        assert!(
            r.body.contains(&format!(
                "<CmdRef>{n}</CmdRef><Cmd>Results</Cmd><Data>404</Data>"
            )),
            "{n}: {}",
            r.body
        );
    }
    assert_eq!(held(&s).await, 0);
    // The chunk of the command really sent is buffered.
    let r = post_syncml(
        &s,
        message(7, 3, &chunk(1, &id, "./Vendor/MSFT/Big")).replace("<Final/>", ""),
        &cert,
    )
    .await;
    assert!(r.body.contains("<Data>213</Data>"), "{}", r.body);
    assert!(held(&s).await > 0);
}

#[tokio::test]
async fn a_chunk_with_an_over_long_loc_uri_or_cmd_ref_is_refused_and_buffers_nothing() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let id = get_delivered(&s, &cert, "./Vendor/MSFT/Big").await;
    let chunk = |n: u32, cmd_ref: &str, loc: &str| {
        format!(
            "<Results><CmdID>{n}</CmdID><MsgRef>1</MsgRef><CmdRef>{cmd_ref}</CmdRef><Item><Source><LocURI>{loc}</LocURI></Source><Data></Data><MoreData/></Item></Results>"
        )
    };
    // A node below the command's target (which it answers), named by 2 kB of path.
    let long_loc = format!("./Vendor/MSFT/Big/{}", "p".repeat(2_000));
    let long_ref = format!("{id}.{}", "9".repeat(2_000));
    let body = format!(
        "{}{}",
        chunk(1, &id, &long_loc),
        chunk(2, &long_ref, "./Vendor/MSFT/Big")
    );
    let r = post_syncml(&s, message(7, 2, &body).replace("<Final/>", ""), &cert).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .contains("<CmdRef>1</CmdRef><Cmd>Results</Cmd><Data>414</Data>"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("<CmdRef>2</CmdRef><Cmd>Results</Cmd><Data>404</Data>"),
        "{}",
        r.body
    );
    assert_eq!(held(&s).await, 0);
}

/// Bytes of large objects the device holds, as the store counts them.
async fn held(s: &TestServer) -> usize {
    let snapshot = s.state.store.chunk_snapshot(DEVICE, Vec::new()).await;
    snapshot.expect("chunk snapshot").held(DEVICE)
}

// ---- Storage failures ----

/// Makes every insert into command_results fail (a trigger), or stops doing so.
async fn break_results_table(s: &TestServer, broken: bool) {
    use winmdm_server::db::Backend;
    let pool = s.state.store.pool();
    let statements: &[&str] = match (s.state.store.backend(), broken) {
        (Backend::Sqlite, true) => &["CREATE TRIGGER injected_failure BEFORE INSERT ON command_results BEGIN SELECT RAISE(FAIL, 'injected'); END"],
        (Backend::Sqlite, false) => &["DROP TRIGGER injected_failure"],
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION injected_failure() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER injected_failure BEFORE INSERT ON command_results FOR EACH ROW EXECUTE FUNCTION injected_failure()",
        ],
        (Backend::Postgres, false) => &["DROP TRIGGER injected_failure ON command_results"],
    };
    for sql in statements {
        sqlx::query(sql).execute(pool).await.expect("injection");
    }
}

#[tokio::test]
async fn a_message_that_cannot_be_stored_is_5xx_and_stored_once_when_sent_again() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let id = get_delivered(&s, &cert, "./DevDetail/SwV").await;
    let answer = message(
        7,
        2,
        &status_and_results(&id, "./DevDetail/SwV", "10.0.22631.2428"),
    );
    break_results_table(&s, true).await;
    let r = post_syncml(&s, answer.clone(), &cert).await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.body);
    assert!(stored(&s, &id).await.is_empty(), "half stored");
    break_results_table(&s, false).await;
    // The device sends the same package again: processed now, stored once.
    let r = post_syncml(&s, answer.clone(), &cert).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = post_syncml(&s, answer, &cert).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a resend is answered from the record"
    );
    let rows = stored(&s, &id).await;
    let count = |kind: &str| rows.iter().filter(|(k, _)| k == kind).count();
    assert_eq!((count("Status"), count("Results")), (1, 1), "{rows:?}");
}

#[tokio::test]
async fn a_chunk_in_a_message_that_cannot_be_stored_is_buffered_once_when_sent_again() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let id = get_delivered(&s, &cert, "./Vendor/MSFT/Big").await;
    let chunk = |n: u32, data: &str, more: bool| {
        format!(
            "<Results><CmdID>{n}</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Item><Source><LocURI>./Vendor/MSFT/Big</LocURI></Source><Data>{data}</Data>{}</Item></Results>",
            if more { "<MoreData/>" } else { "" }
        )
    };
    let first = message(
        7,
        2,
        &format!(
            "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>{id}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>{}",
            chunk(2, "AAAA", true)
        ),
    )
    .replace("<Final/>", "");
    break_results_table(&s, true).await;
    let r = post_syncml(&s, first.clone(), &cert).await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.body);
    assert_eq!(held(&s).await, 0);
    break_results_table(&s, false).await;
    let r = post_syncml(&s, first, &cert).await;
    assert!(r.body.contains("<Data>213</Data>"), "{}", r.body);
    let r = post_syncml(&s, message(7, 3, &chunk(1, "BB", false)), &cert).await;
    assert!(
        r.body
            .contains("<CmdRef>1</CmdRef><Cmd>Results</Cmd><Data>200</Data>"),
        "{}",
        r.body
    );
    let rows = stored(&s, &id).await;
    let results: Vec<_> = rows.iter().filter(|(k, _)| k == "Results").collect();
    assert_eq!(results.len(), 1, "{rows:?}");
    assert!(results[0].1.contains("<Data>AAAABB</Data>"), "{rows:?}");
}

// ---- Alert 1226 ----

fn alert_1226(alert_type: &str, source: Option<&str>) -> String {
    let source = source
        .map(|s| format!("<Source><LocURI>{s}</LocURI></Source>"))
        .unwrap_or_default();
    format!(
        "<Alert><CmdID>2</CmdID><Data>1226</Data><Item>{source}<Meta><Type xmlns=\"syncml:metinf\">{alert_type}</Type><Format xmlns=\"syncml:metinf\">int</Format><Mark xmlns=\"syncml:metinf\">informational</Mark></Meta><Data>1</Data></Item></Alert>"
    )
}

#[tokio::test]
async fn generic_1226_alerts_of_other_types_do_not_unenroll() {
    let s = server().await;
    let cert = enrolled(&s).await;
    let others = [
        alert_1226("com.microsoft:mdm.win32csp.result", None),
        alert_1226(
            "Reversed-Domain-Name:com.microsoft.mdm.win32csp_install",
            Some("./Device/Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/%7B1%7D/DownloadInstall"),
        ),
        alert_1226("x-vendor:async.done", None),
        // No Type, but the Source of an asynchronous CSP operation.
        alert_1226(
            "",
            Some("./Vendor/MSFT/EnterpriseModernAppManagement/AppInstallation/x/HostedInstall"),
        ),
    ];
    for (i, alert) in others.iter().enumerate() {
        let session = 10 + i as u32;
        let r = post_syncml(&s, message(session, 1, &format!("{PKG1}{alert}")), &cert).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(
            r.body
                .contains("<CmdRef>2</CmdRef><Cmd>Alert</Cmd><Data>200</Data>"),
            "{}",
            r.body
        );
        let r = post_syncml(&s, message(session + 100, 1, PKG1), &cert).await;
        assert_eq!(r.status, StatusCode::OK, "alert {i} unenrolled the device");
    }
}

#[tokio::test]
async fn the_published_unenroll_alerts_still_unenroll() {
    // The learn.microsoft.com samples: the server-side fragment and the package 1 (whose
    // Type has a leading space and the "syncml:metinfo" namespace).
    let pkg1 = vector("omadm-pkg1-client-unenroll-1226.xml");
    let start = pkg1.find("<Alert>").unwrap();
    let end = pkg1.find("</Alert>").unwrap() + "</Alert>".len();
    for alert in [
        vector("omadm-alert-1226-unenroll.xml").replace("<CmdID>4</CmdID>", "<CmdID>2</CmdID>"),
        pkg1[start..end].to_string(),
    ] {
        let s = server().await;
        let cert = enrolled(&s).await;
        let r = post_syncml(&s, message(1, 1, &format!("{PKG1}{alert}")), &cert).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = post_syncml(&s, message(2, 1, PKG1), &cert).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "not unenrolled by {alert}");
    }
}
