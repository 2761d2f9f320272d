//! HTTPS transport: a rustls configuration built here (aws-lc-rs provider, HTTP/1.1) and a
//! request helper that records every exchange.

pub use crate::error::refusal_in;
use crate::error::ClientError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How the device checks the server certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsOptions {
    /// PEM CA certificate(s) trusted for the server.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate.
    pub insecure: bool,
}

/// The client certificate presented on management sessions.
#[derive(Debug)]
pub struct ClientIdentity {
    pub cert_der: Vec<u8>,
    pub key: PrivateKeyDer<'static>,
}

/// One recorded HTTP request and its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub step: String,
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: String,
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
    /// Transport error, when no response arrived.
    pub error: Option<String>,
}

/// The parts of a response the protocol code needs.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
    /// The body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Tls(e.to_string())
}

/// Builds the rustls client configuration.
pub fn rustls_config(
    tls: &TlsOptions,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, ClientError> {
    TlsContext::new(tls)?.config(identity)
}

/// An HTTP/1.1 client over that configuration.
pub fn client(
    tls: &TlsOptions,
    identity: Option<&ClientIdentity>,
) -> Result<reqwest::Client, ClientError> {
    TlsContext::new(tls)?.client(identity)
}

/// TLS sessions a device keeps to resume them on its next connection, as Windows
/// (Schannel) resumes a session with the server it last talked to. The configuration
/// itself is kept per client identity and trust: rustls resumes only with the server
/// certificate verifier that accepted the session, and a resumed session keeps the
/// client certificate of its full handshake (RFC 8446 §4.6.1, RFC 5246 §7.4.1.2), so a
/// new certificate or trust starts with an empty store.
#[derive(Clone, Default)]
pub struct TlsSessions(Arc<std::sync::Mutex<Option<KeptConfig>>>);

/// The configuration of one identity and trust, with its session store.
struct KeptConfig {
    cert_der: Vec<u8>,
    tls: TlsOptions,
    config: rustls::ClientConfig,
}

/// Sessions remembered per identity (a device talks to one server, or a few).
const SESSIONS_PER_IDENTITY: usize = 8;

impl std::fmt::Debug for TlsSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSessions")
    }
}

impl TlsSessions {
    /// The configuration for `tls` and `identity`, sharing the sessions of the last
    /// connection made with both; a new one, with no session, when either changed.
    pub fn config(
        &self,
        tls: &TlsOptions,
        identity: Option<&ClientIdentity>,
    ) -> Result<rustls::ClientConfig, ClientError> {
        let cert: &[u8] = identity.map(|i| i.cert_der.as_slice()).unwrap_or(&[]);
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = &*held {
            if k.cert_der == cert && &k.tls == tls {
                return Ok(k.config.clone());
            }
        }
        let mut config = TlsContext::new(tls)?.config(identity)?;
        config.resumption = rustls::client::Resumption::store(Arc::new(
            rustls::client::ClientSessionMemoryCache::new(SESSIONS_PER_IDENTITY),
        ));
        *held = Some(KeptConfig {
            cert_der: cert.to_vec(),
            tls: tls.clone(),
            config: config.clone(),
        });
        Ok(config)
    }

    /// Forgets every session: the next connection does a full handshake.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// An HTTP/1.1 client like [`client`]'s that resumes the TLS sessions of `sessions`.
pub fn client_resuming(
    tls: &TlsOptions,
    identity: Option<&ClientIdentity>,
    sessions: &TlsSessions,
) -> Result<reqwest::Client, ClientError> {
    client_over(sessions.config(tls, identity)?)
}

fn client_over(config: rustls::ClientConfig) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .http1_only()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(tls_err)
}

/// The server trust of a [`TlsOptions`] parsed once, to build many client
/// configurations (one per device certificate) without parsing the CA again.
#[derive(Clone)]
pub struct TlsContext {
    provider: Arc<CryptoProvider>,
    /// None: accept any server certificate.
    roots: Option<Arc<rustls::RootCertStore>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("insecure", &self.roots.is_none())
            .finish()
    }
}

impl TlsContext {
    /// Parses the CA certificates of `tls` (or notes that any server is accepted).
    pub fn new(tls: &TlsOptions) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = if tls.insecure {
            None
        } else {
            let pem = tls.ca_pem.as_deref().ok_or_else(|| {
                ClientError::Tls("no CA certificate given and insecure not set".into())
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots.add(cert.map_err(tls_err)?).map_err(tls_err)?;
            }
            if roots.is_empty() {
                return Err(ClientError::Tls("CA PEM contains no certificate".into()));
            }
            Some(Arc::new(roots))
        };
        Ok(TlsContext { provider, roots })
    }

    /// A rustls configuration like [`rustls_config`]'s, presenting `identity` if given.
    pub fn config(
        &self,
        identity: Option<&ClientIdentity>,
    ) -> Result<rustls::ClientConfig, ClientError> {
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let builder = match &self.roots {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(
                    self.provider.clone(),
                ))),
            Some(roots) => builder.with_root_certificates(roots.clone()),
        };
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from(id.cert_der.clone())],
                    id.key.clone_key(),
                )
                .map_err(tls_err)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// An HTTP/1.1 client like [`client`]'s over [`TlsContext::config`].
    pub fn client(
        &self,
        identity: Option<&ClientIdentity>,
    ) -> Result<reqwest::Client, ClientError> {
        client_over(self.config(identity)?)
    }
}

/// Sends one request and records it in `log`.
pub async fn send(
    log: &mut Vec<Exchange>,
    client: &reqwest::Client,
    step: &'static str,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<Response, ClientError> {
    let mut ex = Exchange {
        step: step.to_string(),
        method: method.to_string(),
        url: url.to_string(),
        request_headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        request_body: body.clone().unwrap_or_default(),
        status: None,
        response_headers: Vec::new(),
        response_body: String::new(),
        error: None,
    };
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(source) => {
            ex.error = Some(format!("{source:#}"));
            log.push(ex);
            return Err(ClientError::Transport { step, source });
        }
    };
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let retry_after = header("retry-after");
    let chunked =
        header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    ex.status = Some(status);
    ex.response_headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match resp.text().await {
        Ok(b) => b,
        Err(source) => {
            ex.error = Some(format!("{source:#}"));
            log.push(ex);
            return Err(ClientError::Transport { step, source });
        }
    };
    ex.response_body = body.clone();
    log.push(ex);
    Ok(Response {
        status,
        content_type,
        retry_after,
        body,
        chunked,
    })
}

/// The media type of a Content-Type value: lowercased, without parameters (`charset`)
/// or surrounding whitespace (RFC 9110 §8.3.1: type and subtype are case-insensitive).
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}
