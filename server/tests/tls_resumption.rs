//! TLS session resumption on the HTTPS listener (over real TLS): a device that checks
//! in on a new connection resumes its last session, however many other devices
//! connected in between.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::SECRET;
use rustls::client::{Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
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
    let name = ServerName::try_from("localhost").expect("name");
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

/// A device's session store that counts the TLS 1.3 tickets the server sent it.
#[derive(Debug)]
struct CountingTickets {
    inner: rustls::client::ClientSessionMemoryCache,
    received: std::sync::atomic::AtomicUsize,
}

impl CountingTickets {
    fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl rustls::client::ClientSessionStore for CountingTickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(&self, name: ServerName<'static>, v: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(name, v)
    }
    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(&self, name: ServerName<'static>, v: Tls13ClientSessionValue) {
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.insert_tls13_ticket(name, v)
    }
    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// One TLS 1.3 ticket per connection, after a full handshake and after a resumption: a
/// device holds one session at a time, and every ticket costs the server a sealing.
#[tokio::test]
async fn the_server_sends_one_ticket_per_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = winmdm_server::Config::for_data_dir(dir.path().to_path_buf(), SECRET);
    let server = winmdm_server::start(config).await.expect("server");
    let store = Arc::new(CountingTickets {
        inner: rustls::client::ClientSessionMemoryCache::new(8),
        received: Default::default(),
    });
    let mut device = client_config(&server);
    device.resumption = rustls::client::Resumption::store(store.clone());
    let device = Arc::new(device);
    assert_eq!(session(&server, &device).await, Some(HandshakeKind::Full));
    assert_eq!(store.received(), 1, "tickets after a full handshake");
    assert_eq!(
        session(&server, &device).await,
        Some(HandshakeKind::Resumed)
    );
    assert_eq!(store.received(), 2, "tickets after a resumption");
    server.shutdown().await;
}
