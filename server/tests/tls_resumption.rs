//! TLS session resumption on the HTTPS listener (over real TLS): a device that checks
//! in on a new connection resumes its last session, however many other devices
//! connected in between.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::SECRET;
use rustls::HandshakeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections of other clients between a device's two sessions: more than rustls'
/// default cache holds (256 entries, two per connection with TLS 1.3 tickets).
const OTHERS: usize = 160;

/// A client configuration trusting the server's certificate; its clones share one
/// session store, as one device's connections do.
fn client_config(server: &winmdm_server::RunningServer) -> rustls::ClientConfig {
    let pem = std::fs::read(&server.tls_cert_path).expect("certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in winmdm_server::tls::pem_certs(&pem).expect("PEM") {
        roots.add(cert).expect("root");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// Connects, sends one request and reads its answer (which carries the session tickets
/// the server sent after the handshake); returns how the handshake went.
async fn session(
    server: &winmdm_server::RunningServer,
    config: &Arc<rustls::ClientConfig>,
) -> Option<HandshakeKind> {
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.write_all(
        b"GET /api/mdm/microsoft/discovery HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .ok();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    tls.get_ref().1.handshake_kind()
}

#[tokio::test]
async fn a_session_resumes_after_many_other_clients_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = winmdm_server::Config::for_data_dir(dir.path().to_path_buf(), SECRET);
    // One address makes every request here: no per-client rate limit.
    config.enroll_rate_per_client = 0;
    let server = winmdm_server::start(config).await.expect("server");
    let device = Arc::new(client_config(&server));
    assert_eq!(session(&server, &device).await, Some(HandshakeKind::Full));
    for _ in 0..OTHERS {
        let other = Arc::new(client_config(&server));
        assert_eq!(session(&server, &other).await, Some(HandshakeKind::Full));
    }
    assert_eq!(
        session(&server, &device).await,
        Some(HandshakeKind::Resumed)
    );
    server.shutdown().await;
}
