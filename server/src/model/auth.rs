//! How devices authenticate management sessions (`--management-auth`).

/// Which authentication the management endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ManagementAuth {
    /// The client certificate issued at enrollment (mutual TLS) only.
    #[default]
    Mtls,
    /// OMA-DM MD5 digest (`syncml:auth-md5`) only; a certificate is not looked at.
    Digest,
    /// A presented certificate is judged as in `mtls`; a connection without one may
    /// authenticate with digest.
    MtlsOrDigest,
}

impl ManagementAuth {
    /// Whether enrollment provisions digest credentials and the endpoint accepts them.
    pub fn digest_enabled(self) -> bool {
        self != ManagementAuth::Mtls
    }
}

/// A device's stored digest credentials: never the secret, only
/// `B64(MD5(name ":" secret))`, and the one nonce the device may use next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDigest {
    pub credential_hash: String,
    /// Base64, as sent in `NextNonce`.
    pub nonce: String,
    /// Unix seconds after which the nonce is refused.
    pub nonce_expires_unix: i64,
}

impl ManagementAuth {
    /// Whether a connection authenticates by digest: in `mtls-or-digest` only one that
    /// presented no certificate (a presented one is judged, never bypassed).
    pub fn uses_digest(self, certificate_presented: bool) -> bool {
        match self {
            ManagementAuth::Mtls => false,
            ManagementAuth::Digest => true,
            ManagementAuth::MtlsOrDigest => !certificate_presented,
        }
    }
}
