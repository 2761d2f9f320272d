//! Helpers shared by the server's integration tests: a server state in a temporary
//! directory driven through the router without sockets.

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use tower::ServiceExt;
use winmdm_server::app::{build_state, router, AppState, PeerCertificate};

pub const SECRET: &str = "test-secret";
pub const PUBLIC_URL: &str = "https://mdm.example.test";

pub struct TestServer {
    pub state: Arc<AppState>,
    pub dir: tempfile::TempDir,
}

pub async fn server() -> TestServer {
    server_with(|_| {}).await
}

/// A server whose configuration `adjust` may change first.
pub async fn server_with(adjust: impl FnOnce(&mut winmdm_server::Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = winmdm_server::Config::for_data_dir(dir.path().to_path_buf(), SECRET);
    config.admin_token = Some("admin".into());
    // With WINMDM_TEST_POSTGRES_URL set, every test server gets its own Postgres database.
    if let Ok(admin_url) = std::env::var("WINMDM_TEST_POSTGRES_URL") {
        let url = winmdm_server::db::create_scratch_postgres_database(&admin_url)
            .await
            .expect("scratch Postgres database");
        config.database_url = Some(url);
    }
    adjust(&mut config);
    let state = build_state(config, PUBLIC_URL.into()).await.expect("state");
    TestServer { state, dir }
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub content_length: Option<String>,
    pub body: String,
}

impl TestServer {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: String,
        peer: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        req.extensions_mut().insert(PeerCertificate::new(peer));
        let resp = router(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header("content-type").unwrap_or_default();
        let content_length = header("content-length");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        Reply {
            status,
            content_type,
            content_length,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn soap(&self, path: &str, body: String) -> Reply {
        self.send(
            "POST",
            path,
            "application/soap+xml; charset=utf-8",
            body,
            None,
        )
        .await
    }

    /// Enrolls `device_id` for a new Orbit host through the enroll endpoint; returns the
    /// issued certificate (DER) and the host's node key.
    pub async fn enroll_device(&self, device_id: &str) -> (Vec<u8>, String) {
        let key = self.node_key().await;
        let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let r = self
            .soap(
                "/api/mdm/microsoft/enroll",
                rst_request(&key, &hand_csr(&rsa, b"d", false), device_id),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        (client_cert(&r.body), key)
    }

    /// Enrolls a host through Orbit and returns its node key.
    pub async fn node_key(&self) -> String {
        self.node_key_for(&uuid::Uuid::new_v4().to_string()).await
    }

    /// Enrolls the host with this hardware UUID through Orbit and returns its node key.
    pub async fn node_key_for(&self, hardware_uuid: &str) -> String {
        let body = serde_json::json!({"enroll_secret": SECRET, "hardware_uuid": hardware_uuid, "platform": "windows"});
        let r = self
            .send(
                "POST",
                "/api/fleet/orbit/enroll",
                "application/json",
                body.to_string(),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        v["orbit_node_key"].as_str().expect("node key").to_string()
    }
}

pub fn vector(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../testdata/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("vector")
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// An RSA-2048 key and a sha256WithRSA CSR for it (rcgen), as DER.
pub fn rsa_csr(cn: &str) -> (rcgen::KeyPair, Vec<u8>) {
    use rsa::pkcs8::EncodePrivateKey;
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa");
    let der = rsa.to_pkcs8_der().expect("pkcs8");
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .expect("keypair");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params.serialize_request(&key).expect("csr");
    (key, csr.der().to_vec())
}

/// The published RST sample, repaired (its second MAC ContextItem is unclosed), with a
/// real token and CSR substituted for the placeholders.
pub fn rst_request(token: &str, csr_der: &[u8], device_id: &str) -> String {
    vector("wstep-rst-request.xml")
        .replace(
            "<ac:Value>CC:CC:CC:CC:CC:CC</ac:Value>\n",
            "<ac:Value>CC:CC:CC:CC:CC:CC</ac:Value>\n            </ac:ContextItem>\n",
        )
        .replace(
            "B64EncodedSampleBinarySecurityToken",
            &b64(token.as_bytes()),
        )
        .replace(
            "DER format PKCS#10 certificate request in Base64 encoding Insterted Here",
            &b64(csr_der),
        )
        .replace("7BA748C8-703E-4DF2-A74A-92984117346A", device_id)
}

/// Extracts the text of the first element with this local name.
pub fn element_text(xml: &str, local: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let n = doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == local)?;
    Some(n.text().unwrap_or("").trim().to_string())
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else if n < 0x10000 {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    } else {
        out.extend_from_slice(&[0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// A CSR built byte by byte like Windows': `cn` raw in a PrintableString (may hold a
/// NUL), signed with sha1WithRSA under the OIW OID 1.3.14.3.2.29 or with sha256WithRSA.
pub fn hand_csr(key: &rsa::RsaPrivateKey, cn: &[u8], oiw_sha1: bool) -> Vec<u8> {
    use rsa::pkcs8::EncodePublicKey;
    use sha1::Digest;
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .expect("spki")
        .as_bytes()
        .to_vec();
    let name = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(
                0x30,
                &[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x13, cn)].concat(),
            ),
        ),
    );
    let info = tlv(
        0x30,
        &[tlv(0x02, &[0]), name, spki, vec![0xA0, 0x00]].concat(),
    );
    let (alg, sig) = if oiw_sha1 {
        let digest = sha1::Sha1::digest(&info);
        (
            tlv(
                0x30,
                &[tlv(0x06, &[0x2B, 0x0E, 0x03, 0x02, 0x1D]), vec![0x05, 0x00]].concat(),
            ),
            key.sign(rsa::Pkcs1v15Sign::new::<sha1::Sha1>(), &digest)
                .expect("sign"),
        )
    } else {
        let digest = sha2::Sha256::digest(&info);
        (
            tlv(
                0x30,
                &[
                    tlv(
                        0x06,
                        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B],
                    ),
                    vec![0x05, 0x00],
                ]
                .concat(),
            ),
            key.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                .expect("sign"),
        )
    };
    let sig_bits = [vec![0u8], sig].concat();
    tlv(0x30, &[info, alg, tlv(0x03, &sig_bits)].concat())
}

impl TestServer {
    /// Queues a Get of ./DevDetail/SwV for `device` through the admin API; returns the
    /// command ID.
    pub async fn queue_get(&self, device: &str) -> String {
        let r = self
            .send_admin(
                "POST",
                &format!("/api/v1/devices/{device}/commands"),
                r#"{"verb":"Get","target":"./DevDetail/SwV"}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        serde_json::from_str::<serde_json::Value>(&r.body).expect("json")["command_id"]
            .as_str()
            .expect("command_id")
            .to_string()
    }

    /// An admin API call with the test bearer token.
    pub async fn send_admin(&self, method: &str, path: &str, body: &str) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("authorization", "Bearer admin")
            .body(Body::from(body.to_string()))
            .expect("request");
        req.extensions_mut().insert(PeerCertificate::new(None));
        let resp = router(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        Reply {
            status,
            content_type: String::new(),
            content_length: None,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// A CMS SignedData (PKCS#7) over `content`, signed with sha256 by `key`, carrying
/// `cert`; with `signed_attrs` the signature covers contentType + messageDigest.
pub fn pkcs7_signed(
    content: &[u8],
    key: &rsa::RsaPrivateKey,
    cert: &[u8],
    signed_attrs: bool,
) -> Vec<u8> {
    use sha2::Digest;
    let sha256_alg = tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let rsa_alg = tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let data_oid = tlv(
        0x06,
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01],
    );
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).expect("cert");
    let sid = tlv(
        0x30,
        &[
            parsed.tbs_certificate.issuer.as_raw().to_vec(),
            tlv(0x02, parsed.raw_serial()),
        ]
        .concat(),
    );
    let digest = sha2::Sha256::digest(content).to_vec();
    let (attrs_field, to_sign) = if signed_attrs {
        let content_type = tlv(
            0x30,
            &[
                tlv(
                    0x06,
                    &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x03],
                ),
                tlv(0x31, &data_oid),
            ]
            .concat(),
        );
        let md = tlv(
            0x30,
            &[
                tlv(
                    0x06,
                    &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04],
                ),
                tlv(0x31, &tlv(0x04, &digest)),
            ]
            .concat(),
        );
        let inner = [content_type, md].concat();
        (
            tlv(0xA0, &inner),
            sha2::Sha256::digest(tlv(0x31, &inner)).to_vec(),
        )
    } else {
        (Vec::new(), digest)
    };
    let sig = key
        .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &to_sign)
        .expect("sign");
    let signer = tlv(
        0x30,
        &[
            tlv(0x02, &[1]),
            sid,
            sha256_alg.clone(),
            attrs_field,
            rsa_alg,
            tlv(0x04, &sig),
        ]
        .concat(),
    );
    let encap = tlv(0x30, &[data_oid, tlv(0xA0, &tlv(0x04, content))].concat());
    let signed_data = tlv(
        0x30,
        &[
            tlv(0x02, &[1]),
            tlv(0x31, &sha256_alg),
            encap,
            tlv(0xA0, cert),
            tlv(0x31, &signer),
        ]
        .concat(),
    );
    tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02],
            ),
            tlv(0xA0, &signed_data),
        ]
        .concat(),
    )
}

/// The provisioning document carried in an RSTRC response.
pub fn provisioning_doc(rstrc: &str) -> String {
    let token = element_text(rstrc, "BinarySecurityToken").expect("BinarySecurityToken");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .expect("base64 provisioning document");
    String::from_utf8(bytes).expect("UTF-8 provisioning document")
}

/// The client certificate (DER) from a provisioning document's My store.
pub fn client_cert_from_doc(doc: &str) -> Vec<u8> {
    let d = roxmltree::Document::parse(doc).expect("provisioning XML");
    let my = d
        .descendants()
        .find(|n| n.attribute("type") == Some("My"))
        .expect("My store");
    let parm = my
        .descendants()
        .find(|n| n.attribute("name") == Some("EncodedCertificate"))
        .expect("EncodedCertificate");
    base64::engine::general_purpose::STANDARD
        .decode(parm.attribute("value").unwrap_or_default())
        .expect("base64 certificate")
}

/// The client certificate (DER) issued in an RSTRC response.
pub fn client_cert(rstrc: &str) -> Vec<u8> {
    client_cert_from_doc(&provisioning_doc(rstrc))
}
