//! HTTPS listener material: the server certificate and a client-certificate verifier
//! that lets the management route decide on mTLS itself.
//!
//! Client certificates are requested but optional at the TLS layer, so that discovery,
//! policy and enrollment work without one and the management route can refuse a missing
//! or foreign certificate with a clear HTTP status instead of a TLS alert.

use std::path::Path;
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use crate::config::Config;
use crate::error::ServerError;

const TLS_CERT_FILE: &str = "tls-cert.pem";
const TLS_KEY_FILE: &str = "tls-key.pem";

/// Writes a file readable only by its owner (private keys).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents)?;
    Ok(())
}

/// Creates a certificate/key file pair once, even when several servers sharing a data
/// directory start together: the pair is written to temporary files and the key is
/// hard-linked into place, which fails for all but the first; the others wait for the
/// winner's certificate. Returns true when this call created the pair.
pub fn create_pair_once(
    cert_path: &Path,
    key_path: &Path,
    generate: impl FnOnce() -> Result<(String, String), ServerError>,
) -> Result<bool, ServerError> {
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    let (cert_pem, key_pem) = generate()?;
    let suffix = format!("{}.tmp", uuid::Uuid::new_v4().simple());
    let tmp_key = key_path.with_extension(format!("key.{suffix}"));
    let tmp_cert = cert_path.with_extension(format!("cert.{suffix}"));
    write_private(&tmp_key, key_pem.as_bytes())?;
    std::fs::write(&tmp_cert, cert_pem.as_bytes())?;
    let won = match std::fs::hard_link(&tmp_key, key_path) {
        Ok(()) => {
            std::fs::rename(&tmp_cert, cert_path)?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e.into()),
    };
    let _ = std::fs::remove_file(&tmp_key);
    let _ = std::fs::remove_file(&tmp_cert);
    for _ in 0..100 {
        if cert_path.exists() {
            return Ok(won);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(ServerError::Config(format!(
        "{} exists without {}",
        key_path.display(),
        cert_path.display()
    )))
}

/// Parses every certificate in a PEM document.
pub fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Config(format!("bad PEM certificate: {e}")))
}

/// Returns the path of the server certificate in use, generating a self-signed one for
/// localhost/127.0.0.1 in the data directory when none is configured.
pub fn server_cert_paths(
    config: &Config,
) -> Result<(std::path::PathBuf, std::path::PathBuf), ServerError> {
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        return Ok((cert.clone(), key.clone()));
    }
    let cert_path = config.data_dir.join(TLS_CERT_FILE);
    let key_path = config.data_dir.join(TLS_KEY_FILE);
    let created = create_pair_once(&cert_path, &key_path, || {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let host = config.listen.ip().to_string();
        if !names.contains(&host) && !config.listen.ip().is_unspecified() {
            names.push(host);
        }
        self_signed_pem(names, TlsKeyType::Ecdsa)
    })?;
    if created {
        tracing::info!(path = %cert_path.display(), "generated self-signed TLS certificate (give it to clients as --ca-file)");
    }
    Ok((cert_path, key_path))
}

/// The key type of a generated server certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKeyType {
    /// ECDSA P-256 with SHA-256 (the default: a cheap handshake signature).
    Ecdsa,
    /// RSA-2048 with SHA-256, as many deployed server certificates are.
    Rsa,
}

/// A self-signed server certificate for `names` and its PKCS#8 key, both PEM.
pub fn self_signed_pem(
    names: Vec<String>,
    key_type: TlsKeyType,
) -> Result<(String, String), ServerError> {
    let key = match key_type {
        TlsKeyType::Ecdsa => KeyPair::generate()?,
        TlsKeyType::Rsa => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?,
    };
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "winmdm-server");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(825);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Builds the rustls server configuration (HTTP/1.1, optional client certificates).
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
    ca_subject: Option<DistinguishedName>,
) -> Result<ServerConfig, ServerError> {
    let certs = pem_certs(&std::fs::read(cert_path)?)?;
    if certs.is_empty() {
        return Err(ServerError::Config(format!(
            "{} holds no certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&std::fs::read(key_path)?)
        .map_err(|e| ServerError::Config(format!("{}: {e}", key_path.display())))?;
    let provider = Arc::new(provider());
    let verifier = Arc::new(OptionalClientCert {
        provider: provider.clone(),
        hints: ca_subject.into_iter().collect(),
    });
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.ignore_client_order = true;
    enable_resumption(&mut cfg)?;
    Ok(cfg)
}

/// aws-lc-rs with the AES-128-GCM suites preferred to the AES-256-GCM ones (the server's
/// order is used, `ignore_client_order`). Windows offers TLS_AES_256_GCM_SHA384 first and
/// accepts either (Schannel's TLS 1.3 suites); with SHA-384 every HMAC of the TLS 1.3
/// key schedule runs SHA-512 blocks without hardware help, about a tenth of the server's CPU on
/// a resumed connection, where SHA-256 has the CPU's SHA instructions. Both are the
/// suites of RFC 8446 §9.1; AES-128 keeps a 128-bit security level.
fn provider() -> CryptoProvider {
    use rustls::CipherSuite as C;
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites.sort_by_key(|cs| {
        matches!(
            cs.suite(),
            C::TLS13_AES_256_GCM_SHA384
                | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        )
    });
    p
}

/// TLS 1.2 session IDs remembered for resumption (about 1-2 KB each with the client's
/// certificate); the oldest are forgotten first.
const SESSION_CACHE_ENTRIES: usize = 16_384;

/// Session resumption, so that a device checking in on its poll schedule (a new
/// connection per session) skips the certificate exchange and signatures: a cache for
/// TLS 1.2 session IDs (RFC 5246 §7.4.1.2) and, for TLS 1.3 (RFC 8446 §2.2, §4.6.1) and
/// TLS 1.2 tickets (RFC 5077), tickets sealed with the provider's rotating key
/// (AES-256-CBC with HMAC-SHA256 as RFC 5077 §4 recommends, a new key every 6 hours; a
/// ticket lives at most 12 hours). A TLS 1.3 resumption still runs an ECDHE exchange
/// (psk_dhe_ke), so it keeps forward secrecy. The client certificate of a resumed
/// session is the one verified at its full handshake; the management route still
/// checks its issuer, validity and binding on every connection and request. The ticket
/// keys live in this process only: a device that reaches another replica (or a
/// restarted server) does a full handshake.
///
/// One TLS 1.3 ticket per connection, not rustls' two: more serve a client that opens
/// parallel connections to the same server, one ticket each (RFC 9149 §1; for a client
/// that does not, one per resumption "is a good choice", §3). A device runs one OMA-DM
/// session at a time on one connection, and Schannel keeps one cache entry per session
/// and server name ("Caching Schannel Sessions", SSPI documentation). OpenSSL too sends
/// one ticket after a resumption. Each ticket costs the server a key derivation, a
/// sealing of the session with its client certificate and a record, on every new
/// connection.
fn enable_resumption(cfg: &mut ServerConfig) -> Result<(), ServerError> {
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    cfg.send_tls13_tickets = TLS13_TICKETS_PER_CONNECTION;
    Ok(())
}

/// TLS 1.3 tickets sent after each handshake (see [`enable_resumption`]).
const TLS13_TICKETS_PER_CONNECTION: usize = 1;

/// Accepts any client certificate whose handshake signature is valid; chain, validity
/// and binding to an enrollment are checked by the management route.
#[derive(Debug)]
struct OptionalClientCert {
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
