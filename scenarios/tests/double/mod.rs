//! A minimal Windows MDM server written from Microsoft's documentation samples alone,
//! independently of `server/`: the "somebody else's server" the harness is judged
//! against. It speaks MS-MDE2 discovery, MS-XCEP, MS-WSTEP and OMA-DM over TLS/mTLS with
//! only the elements the documents require, has no admin API and (unless asked) no
//! Orbit endpoints, and can be started with one defect or one vulnerability at a time.
//!
//! HTTP/1.1 is spoken by hand (one request per connection, `Connection: close`) so that
//! defects below HTTP (a wrong Content-Length) can be served.

#![allow(dead_code)]

mod mde2;
mod omadm;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SignatureAlgorithm, PKCS_RSA_SHA256,
};
use rsa::pkcs8::EncodePrivateKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::prelude::FromDer;

/// One real defect of a server, each of which Windows refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// Responses to the SOAP requests carry no `a:RelatesTo`.
    MissingRelatesTo,
    /// The DiscoverResponse has the Action of another operation.
    WrongDiscoverAction,
    /// The GetPolicies response body is cut short while Content-Length announces it whole.
    TruncatedPolicyBody,
    /// The issued client certificate is self-signed instead of signed by the Root sent.
    UnsignedCertificate,
    /// The provisioning document has no `CertificateStore/Root`.
    MissingRoot,
    /// The management endpoint sends commands to a device that presented no certificate.
    CommandsBeforeAuthentication,
}

/// Holes a careless server has (the attacks of the security scenarios).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hole {
    /// A DeviceID enrolled by one host can be enrolled by another.
    DeviceIdTakeover,
    /// The federated login page posts the token to any `appru`.
    OpenRedirectAppru,
    /// A half-sent request keeps its connection open for ever.
    NoHeaderTimeout,
    /// A device's certificate is accepted with another device's DeviceID.
    CertificateNotBoundToDevice,
    /// One host's node key enrolls any number of devices.
    TokenReuse,
}

/// How the double is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub defect: Option<Defect>,
    pub holes: Vec<Hole>,
    /// Serve minimal Orbit enroll/config endpoints (fleet-wide secret `secret`).
    pub orbit: bool,
    /// Offer the Federated AuthPolicy with a login page.
    pub federated: bool,
}

/// The token a device may enroll with when there is no Orbit (`--token`).
pub const TOKEN: &str = "double-enrollment-token";
/// The Orbit enroll secret when [`Options::orbit`] is on.
pub const SECRET: &str = "double-secret";
/// The request read timeout of the double (unless [`Hole::NoHeaderTimeout`]): long
/// enough that a loaded machine's harness is not cut off mid-request, short enough for
/// the slow-request attack's 10 s wait in `third_party.rs`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Enrolled {
    pub token: String,
    pub serial: Vec<u8>,
    pub cert_der: Vec<u8>,
}

pub(crate) struct State {
    pub opts: Options,
    pub base: String,
    pub ca: Issuer<'static, KeyPair>,
    pub ca_der: Vec<u8>,
    /// DeviceID → who enrolled it and with which certificate.
    pub devices: Mutex<HashMap<String, Enrolled>>,
    /// Node keys handed out by Orbit enroll: key → hardware UUID.
    pub node_keys: Mutex<HashMap<String, String>>,
    /// Commands the double has sent per management session: (DeviceID, SessionID).
    pub sent: Mutex<HashMap<(String, String), u32>>,
}

/// A running double.
pub struct Double {
    pub url: String,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

struct RsaKey {
    spki_rsa: Vec<u8>,
}

impl PublicKeyData for RsaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.spki_rsa
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }
}

fn rsa_key_pair() -> (KeyPair, Vec<u8>) {
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key");
    let der = rsa.to_pkcs8_der().expect("PKCS#8").as_bytes().to_vec();
    let key = KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.clone()),
        &PKCS_RSA_SHA256,
    )
    .expect("rcgen key");
    (key, der)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

impl State {
    /// Signs a client certificate for the RSA key of a PKCS#10 request (MS-WSTEP).
    pub(crate) fn issue(&self, csr_der: &[u8], device_id: &str) -> Result<Vec<u8>, String> {
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
                .map_err(|e| format!("CSR: {e}"))?;
        let spki = &csr.certification_request_info.subject_pki;
        let key = RsaKey {
            spki_rsa: spki.subject_public_key.data.to_vec(),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(device_id);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(rand::random::<[u8; 16]>().map(|b| b & 0x7f).to_vec().into());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        let cert = if self.opts.defect == Some(Defect::UnsignedCertificate) {
            // Signed by a key of its own, not by the CA whose Root is provisioned.
            let (other, _) = rsa_key_pair();
            let other_params =
                CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
            let issuer = Issuer::from_params(&other_params, other);
            params.signed_by(&key, &issuer)
        } else {
            params.signed_by(&key, &self.ca)
        }
        .map_err(|e| format!("signing: {e}"))?;
        Ok(cert.der().to_vec())
    }
}

impl Double {
    /// Starts a double on 127.0.0.1 with a fresh CA (TLS server certificate and device
    /// certificates share it) written to `ca_file`.
    pub fn start(opts: Options) -> Double {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_key, _) = rsa_key_pair();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("double test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let ca_der = ca_cert.der().to_vec();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA");
        let ca = Issuer::new(ca_params, ca_key);

        let (tls_key, tls_key_der) = rsa_key_pair();
        let mut tls_params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("TLS params");
        tls_params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        tls_params.distinguished_name = dn("localhost");
        let tls_cert = tls_params.signed_by(&tls_key, &ca).expect("TLS cert");

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca_der.clone()))
            .expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .expect("verifier");
        // TLS 1.2: the client certificate is judged inside the handshake, so a refused
        // client sees the alert before it sends a request (with TLS 1.3 the timing
        // decides whether it sees the alert, a reset or an end of stream).
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("protocols")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![
                    CertificateDer::from(tls_cert.der().to_vec()),
                    CertificateDer::from(ca_der.clone()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls_key_der)),
            )
            .expect("TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("https://{addr}");
        let state = Arc::new(State {
            opts,
            base: url.clone(),
            ca,
            ca_der,
            devices: Mutex::default(),
            node_keys: Mutex::default(),
            sent: Mutex::default(),
        });
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    serve(tls, state).await;
                });
            }
        });
        Double {
            url,
            ca_file,
            _dir: dir,
            _runtime: runtime,
        }
    }
}

/// A parsed request.
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// DER of the client certificate of the connection.
    pub peer_cert: Option<Vec<u8>>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response; `declared_length` overrides the Content-Length sent.
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub declared_length: Option<usize>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            declared_length: None,
        }
    }
    pub fn text(status: u16, body: &str) -> Self {
        Response::new(status, "text/plain", body)
    }
}

async fn read_request(
    tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = tls.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = tls.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let peer_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    Some(Request {
        method,
        path,
        query,
        headers,
        body,
        peer_cert,
    })
}

async fn serve(mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, state: Arc<State>) {
    let request = if state.opts.holes.contains(&Hole::NoHeaderTimeout) {
        read_request(&mut tls).await
    } else {
        match tokio::time::timeout(HEADER_TIMEOUT, read_request(&mut tls)).await {
            Ok(r) => r,
            Err(_) => {
                let _ = tls
                    .write_all(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
                return;
            }
        }
    };
    let Some(request) = request else {
        return;
    };
    let response = route(&state, &request);
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Status",
    };
    let length = response.declared_length.unwrap_or(response.body.len());
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        response.status, response.content_type
    );
    let _ = tls.write_all(head.as_bytes()).await;
    let _ = tls.write_all(&response.body).await;
    let _ = tls.flush().await;
    let _ = tls.shutdown().await;
}

fn route(state: &State, req: &Request) -> Response {
    let path = req.path.to_ascii_lowercase();
    match (req.method.as_str(), path.as_str()) {
        ("GET", "/enrollmentserver/discovery.svc") => Response::text(200, ""),
        ("POST", "/enrollmentserver/discovery.svc") => mde2::discover(state, req),
        ("POST", "/enrollmentserver/policy.svc") => mde2::get_policies(state, req),
        ("POST", "/enrollmentserver/enrollment.svc") => mde2::request_security_token(state, req),
        ("GET", "/login") if state.opts.federated => mde2::login_page(state, req),
        ("POST", "/login") if state.opts.federated => mde2::login_post(state, req),
        ("POST", "/manage") => omadm::manage(state, req),
        ("POST", "/api/fleet/orbit/enroll") if state.opts.orbit => mde2::orbit_enroll(state, req),
        ("POST", "/api/fleet/orbit/config") if state.opts.orbit => mde2::orbit_config(state, req),
        _ => Response::text(404, "not found"),
    }
}
