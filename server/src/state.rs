//! State shared by every handler, and what a connection tells its requests: below the
//! HTTP handlers, which read it, and the router, which hands it to them.

use std::sync::{Arc, OnceLock};

use crate::ca::{CertRejection, ClientCert, IdentityCa};
use crate::config::Config;
use crate::model::Host;
use crate::store::Store;

/// The peer's IP address, for per-client rate limits.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The client certificate presented on a connection, if any, and the identity CA's
/// verdict on it.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate {
    /// The certificate (DER), not verified.
    der: Option<Arc<Vec<u8>>>,
    verification: PeerVerification,
}

/// The identity CA's verdict on a connection's client certificate, reached once per
/// connection (the signature check is the costly part) and shared by its requests.
#[derive(Debug, Clone, Default)]
pub struct PeerVerification {
    verdict: Arc<OnceLock<Result<ClientCert, CertRejection>>>,
}

impl PeerCertificate {
    /// The client certificate a connection presented (DER), not verified yet.
    pub fn new(der: Option<Vec<u8>>) -> Self {
        PeerCertificate {
            der: der.map(Arc::new),
            verification: PeerVerification::default(),
        }
    }

    /// The certificate as presented (DER), not verified.
    pub fn der(&self) -> Option<&[u8]> {
        self.der.as_deref().map(Vec::as_slice)
    }

    /// Verifies the certificate against `ca`: issuer, signature and EKU once per
    /// connection, the validity period on every call.
    pub fn verify(&self, ca: &IdentityCa) -> Option<Result<&ClientCert, CertRejection>> {
        let der = self.der.as_deref()?;
        let issued = self
            .verification
            .verdict
            .get_or_init(|| ca.verify_issuer(der));
        Some(issued.as_ref().map_err(|e| *e).and_then(|c| {
            c.check_validity(crate::clock::unix_now())?;
            Ok(c)
        }))
    }
}

/// State shared by every handler.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub ca: IdentityCa,
    pub public_url: String,
    pub rate_limiter: crate::rate_limit::RateLimiter,
}

impl AppState {
    /// Absolute URL of a path on this server, as devices reach it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// Whether the host's node key has outlived `--node-key-ttl-secs`.
    pub fn node_key_expired(&self, host: &Host) -> bool {
        let ttl = self.config.node_key_ttl_secs;
        ttl > 0 && crate::clock::unix_now().saturating_sub(host.node_key_issued_unix) > ttl as i64
    }

    /// Whether `username`/`password` is one of the `--enroll-user` accounts.
    pub fn user_password_ok(&self, username: &str, password: &str) -> bool {
        let presented = format!("{username}:{password}");
        self.config.enroll_users.iter().fold(false, |ok, u| {
            crate::secret::constant_time_eq(u.as_bytes(), presented.as_bytes()) | ok
        })
    }
}
