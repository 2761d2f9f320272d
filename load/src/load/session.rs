//! A device's TLS session kept between its check-ins, as Windows resumes the session
//! of the server it last talked to, at the cost of one ticket per device.
//!
//! rustls resumes a session only with the same server-certificate verifier and the same
//! client-certificate resolver objects (`Arc` identity) that made it. So every check-in
//! builds its configuration from one shared template (one verifier for every device)
//! and the device's own [`DeviceSession`], which is both its certificate resolver and
//! its session store. The certificate and key are lent to it for the length of a
//! check-in only and parsed only when the server asks for them: a resumed TLS 1.3
//! handshake has no CertificateRequest (RFC 8446 §2.2, §4.6.2), so counting the requests
//! counts the full handshakes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fake_windows_client::http::ClientIdentity;
use rustls::client::{
    ClientSessionStore, ResolvesClientCert, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{NamedGroup, SignatureScheme};

/// One device's resumable session and, during a check-in, its identity.
#[derive(Debug, Default)]
pub(super) struct DeviceSession {
    inner: Mutex<Inner>,
    /// Certificate requests (full handshakes) since the last [`DeviceSession::lend`].
    full_handshakes: AtomicU32,
}

#[derive(Debug, Default)]
struct Inner {
    /// The newest TLS 1.3 ticket: the server sends one or two per connection and a
    /// ticket is used once (RFC 8446 §C.4), so one is all a device needs to come back.
    ticket: Option<Tls13ClientSessionValue>,
    kx_hint: Option<NamedGroup>,
    /// The certificate and key, lent for one check-in.
    identity: Option<ClientIdentity>,
}

impl DeviceSession {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lends `identity` for a check-in and returns the configuration of its connection:
    /// `template` (shared by every device) with this device's resolver and store.
    pub(super) fn lend(
        self: &Arc<Self>,
        template: &rustls::ClientConfig,
        identity: ClientIdentity,
    ) -> rustls::ClientConfig {
        self.lock().identity = Some(identity);
        self.full_handshakes.store(0, Ordering::Relaxed);
        let mut config = template.clone();
        config.client_auth_cert_resolver = self.clone();
        config.resumption = Resumption::store(self.clone());
        config
    }

    /// Takes the identity back after the check-in; returns the full handshakes it made
    /// (0: every connection of the check-in resumed).
    pub(super) fn give_back(&self) -> u32 {
        self.lock().identity = None;
        self.full_handshakes.swap(0, Ordering::Relaxed)
    }

    /// Bytes held besides the ticket's own buffers, which rustls does not expose.
    pub(super) fn footprint() -> usize {
        // The Arc's two counters, then the value.
        2 * std::mem::size_of::<usize>() + std::mem::size_of::<DeviceSession>()
    }
}

impl ResolvesClientCert for DeviceSession {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.full_handshakes.fetch_add(1, Ordering::Relaxed);
        let inner = self.lock();
        let id = inner.identity.as_ref()?;
        // A key that does not parse sends no certificate: the server refuses the
        // connection and the check-in counts as an error.
        let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&id.key).ok()?;
        let cert = CertificateDer::from(id.cert_der.clone());
        Some(Arc::new(CertifiedKey::new(vec![cert], key)))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// TLS 1.3 tickets only (a TLS 1.2 server gets full handshakes), whatever the server
/// name: a device of a load run talks to one server.
impl ClientSessionStore for DeviceSession {
    fn set_kx_hint(&self, _server: ServerName<'static>, group: NamedGroup) {
        self.lock().kx_hint = Some(group);
    }
    fn kx_hint(&self, _server: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().kx_hint
    }
    fn set_tls12_session(&self, _server: ServerName<'static>, _value: Tls12ClientSessionValue) {}
    fn tls12_session(&self, _server: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }
    fn remove_tls12_session(&self, _server: &ServerName<'static>) {}
    fn insert_tls13_ticket(&self, _server: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.lock().ticket = Some(value);
    }
    fn take_tls13_ticket(&self, _server: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.lock().ticket.take()
    }
}
