//! The device judges servers as strictly as Windows and no stricter: deviations Windows
//! tolerates pass with a recorded warning (docs/conformance.md), the ones it refuses still
//! fail. Management sessions run against a local mutual-TLS stand-in server.

mod common;

use common::{criteria, provisioning_xml, with_enrollment_service, DocParams, TestCa};
use fake_windows_client::csp::NodeStore;
use fake_windows_client::csr::{self, HashAlg};
use fake_windows_client::profile::DeviceProfile;
use fake_windows_client::session::ManagementSession;
use fake_windows_client::warning::{self, Level};
use fake_windows_client::xcep::EnrollmentPolicy;
use fake_windows_client::{discovery, provisioning, ClientError, Device, TlsOptions, Warning};
use rsa::pkcs8::EncodePrivateKey;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// A mutual-TLS stand-in management server.

/// Response headers and body for the n-th request (any connection) with this body.
type Handler = Arc<dyn Fn(usize, &str) -> (Vec<(String, String)>, String) + Send + Sync>;

#[derive(Default)]
struct Seen {
    /// The client certificate presented on each connection.
    client_certs: Vec<Vec<u8>>,
    /// Whether each connection's TLS handshake was full or resumed.
    handshakes: Vec<Option<rustls::HandshakeKind>>,
    /// Request targets (path and query).
    paths: Vec<String>,
}

/// Reads one HTTP/1.1 request; returns (request target, body), or None at end of stream.
async fn read_request<S: AsyncReadExt + Unpin>(s: &mut S) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let target = head.split(' ').nth(1).unwrap_or("").to_string();
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return Some((target, body));
            }
        }
        let k = s.read(&mut tmp).await.ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..k]);
    }
}

/// Serves HTTPS requiring a client certificate issued by `ca`. With `keep_alive` the
/// connection stays open for further requests; otherwise each answer closes it.
async fn mtls_server(
    ca: &TestCa,
    keep_alive: bool,
    handler: Handler,
) -> (String, Arc<Mutex<Seen>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.der.clone()))
        .expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    // The server's own certificate: the CA's key certified by itself (the device runs
    // with TlsOptions::insecure, so only the handshake signature matters).
    let server_cert = ca.client_cert("127.0.0.1", &csr::spki_der(&ca.key).expect("spki"));
    let key_der = ca.key.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    let counter = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (acceptor, seen, handler, counter) = (
                acceptor.clone(),
                seen2.clone(),
                handler.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec())
                    .unwrap_or_default();
                let kind = tls.get_ref().1.handshake_kind();
                if let Ok(mut s) = seen.lock() {
                    s.client_certs.push(cert);
                    s.handshakes.push(kind);
                }
                while let Some((target, body)) = read_request(&mut tls).await {
                    if let Ok(mut s) = seen.lock() {
                        s.paths.push(target);
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let (headers, resp) = handler(n, &body);
                    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", resp.len());
                    if !keep_alive {
                        out.push_str("Connection: close\r\n");
                    }
                    for (k, v) in headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&resp);
                    if tls.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = tls.flush().await;
                    if !keep_alive {
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (format!("https://{addr}"), seen)
}

// ---------------------------------------------------------------------------------------
// SyncML answers.

/// SessionID, MsgID and (CmdID, verb) of the commands in a device message.
fn inspect(req: &str) -> (String, String, Vec<(String, String)>) {
    let Ok(d) = roxmltree::Document::parse(req) else {
        return Default::default();
    };
    let text = |name: &str| {
        d.descendants()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .unwrap_or("")
            .to_string()
    };
    let body = d.descendants().find(|n| n.has_tag_name("SyncBody"));
    let cmds = body
        .map(|b| {
            b.children()
                .filter(|c| c.is_element() && !c.has_tag_name("Final"))
                .map(|c| {
                    let id = c
                        .children()
                        .find(|x| x.has_tag_name("CmdID"))
                        .and_then(|x| x.text())
                        .unwrap_or("")
                        .to_string();
                    (id, c.tag_name().name().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    (text("SessionID"), text("MsgID"), cmds)
}

/// A server message answering `req`: the SyncHdr Status, Statuses for the device's
/// commands when `statuses`, then `commands` and Final.
fn answer(req: &str, statuses: bool, commands: &str) -> String {
    let (sid, mid, cmds) = inspect(req);
    let mut body = format!(
        "<Status><CmdID>1</CmdID><MsgRef>{mid}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"
    );
    if statuses {
        for (i, (id, verb)) in cmds
            .iter()
            .filter(|(_, v)| v != "Status" && v != "Results")
            .enumerate()
        {
            body.push_str(&format!(
                "<Status><CmdID>{}</CmdID><MsgRef>{mid}</MsgRef><CmdRef>{id}</CmdRef><Cmd>{verb}</Cmd><Data>200</Data></Status>",
                i + 2
            ));
        }
    }
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{sid}</SessionID><MsgID>{mid}</MsgID><Target><LocURI>device</LocURI></Target><Source><LocURI>server</LocURI></Source></SyncHdr><SyncBody>{body}{commands}<Final/></SyncBody></SyncML>"#
    )
}

fn syncml_ct() -> Vec<(String, String)> {
    vec![(
        "Content-Type".into(),
        "application/vnd.syncml.dm+xml".into(),
    )]
}

// ---------------------------------------------------------------------------------------
// Devices enrolled from a document (no enrollment network traffic).

fn new_device() -> Device {
    let mut d = Device::new(
        DeviceProfile::random(),
        TlsOptions {
            ca_pem: None,
            insecure: true,
        },
    )
    .expect("device");
    d.generate_key_pair(&EnrollmentPolicy {
        policy_schema: 3,
        minimal_key_length: 2048,
        hash_oid: None,
        hash: HashAlg::Sha256,
        validity_period_seconds: None,
        renewal_period_seconds: None,
    })
    .expect("key");
    d
}

fn params<'a>(ca: &'a TestCa, client_der: &'a [u8], d: &Device, addr: &'a str) -> DocParams<'a> {
    DocParams {
        root_der: &ca.der,
        client_der,
        client_thumbprint: None,
        scope: "User",
        provider_id: "TestMDM",
        dmclient_provider: "TestMDM",
        addr,
        criteria: criteria(d.device_id(), "User"),
    }
}

fn apply(d: &mut Device, xml: &str) -> Result<(), ClientError> {
    let doc = provisioning::parse(xml)?;
    d.apply_provisioning(
        "https://mdm.example.org/EnrollmentServer/Discovery.svc",
        "user@example.org",
        &doc,
    )
}

/// The document without the lines containing `needle`.
fn without_line(xml: &str, needle: &str) -> String {
    xml.lines()
        .filter(|l| !l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The checks of `w`, each of which must be a listed warn-level check.
fn checks(w: &[Warning]) -> Vec<&'static str> {
    for x in w {
        assert_eq!(warning::level_of(x.check), Some(Level::Warn), "{x}");
    }
    w.iter().map(|w| w.check).collect()
}

/// A device enrolled with a management address on `url`, using the standard document.
fn enrolled(ca: &TestCa, url: &str) -> Device {
    enrolled_with_cert(ca, url).0
}

/// As [`enrolled`], with the client certificate (DER) the device was issued.
fn enrolled_with_cert(ca: &TestCa, url: &str) -> (Device, Vec<u8>) {
    let mut d = new_device();
    let client = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let addr = format!("{url}/ManagementServer/MDM.svc");
    let xml = provisioning_xml(&params(ca, &client, &d, &addr));
    apply(&mut d, &xml).expect("applies");
    assert!(
        d.take_warnings().is_empty(),
        "the standard document is clean"
    );
    (d, client)
}

// ---------------------------------------------------------------------------------------
// Relaxed checks: the shape passes, a warning is recorded.

#[tokio::test]
async fn enrollment_without_cert_search_criteria_uses_the_certificate_in_my() {
    let ca = TestCa::new();
    let (url, seen) = mtls_server(
        &ca,
        false,
        Arc::new(|_, body| (syncml_ct(), answer(body, true, ""))),
    )
    .await;
    let mut d = new_device();
    let client = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let addr = format!("{url}/ManagementServer/MDM.svc");
    let xml = without_line(
        &provisioning_xml(&params(&ca, &client, &d, &addr)),
        "SSLCLIENTCERTSEARCHCRITERIA",
    );
    assert!(!xml.contains("SSLCLIENTCERTSEARCHCRITERIA"));
    apply(&mut d, &xml).expect("enrolls without SSLCLIENTCERTSEARCHCRITERIA");
    assert_eq!(
        checks(&d.take_warnings()),
        vec!["provisioning.cert_search_criteria_missing"]
    );
    let e = d.enrollment().expect("enrolled");
    assert_eq!(e.cert_search_criteria, "");
    // The OMA-DM session authenticates with the certificate the document put in My.
    let report = d.sync().await.expect("managed over OMA-DM");
    assert_eq!(report.round_trips, 1);
    let presented = seen
        .lock()
        .map(|s| s.client_certs.clone())
        .unwrap_or_default();
    assert_eq!(presented, vec![client.clone()]);
    assert_eq!(d.cert_store().my_user[0].der, client);
    assert!(d.take_warnings().is_empty());
}

#[test]
fn without_cert_search_criteria_a_renewed_certificate_replaces_the_old_one() {
    let ca = TestCa::new();
    let mut d = new_device();
    let client = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let xml = without_line(
        &provisioning_xml(&params(&ca, &client, &d, "https://mdm.example.org/m")),
        "SSLCLIENTCERTSEARCHCRITERIA",
    );
    apply(&mut d, &xml).expect("enrolls");
    let new_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
    let renewed = ca.client_cert(d.device_id(), &csr::spki_der(&new_key).expect("spki"));
    let doc = provisioning::parse(&common::renewal_xml(&ca.der, &renewed, "User", "TestMDM"))
        .expect("renewal document");
    d.apply_renewal(&doc, new_key).expect("renewed");
    assert_eq!(
        d.enrollment().map(|e| e.client_cert_der.clone()),
        Some(renewed.clone())
    );
    // The identity the device now authenticates with is the renewed certificate.
    d.remove_enrollment();
    let (cert_pem, _) = d.previous_identity_pem().expect("identity");
    assert_eq!(
        cert_pem,
        fake_windows_client::foreign::pem("CERTIFICATE", &renewed)
    );
}

#[tokio::test]
async fn header_only_reply_to_the_unenrollment_alert_ends_the_session() {
    let ca = TestCa::new();
    // Only the Status for the SyncHdr, then Final: the server has nothing to say.
    let (url, seen) = mtls_server(
        &ca,
        false,
        Arc::new(|_, body| (syncml_ct(), answer(body, false, ""))),
    )
    .await;
    let mut d = enrolled(&ca, &url);
    let report = d.unenroll().await.expect("header-only reply accepted");
    assert!(report.unenrolled);
    assert_eq!(report.round_trips, 1);
    assert!(!d.is_enrolled());
    let w = d.take_warnings();
    assert!(
        !w.is_empty() && w.iter().all(|w| w.check == "syncml.command_status_missing"),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.detail.contains("Alert CmdID 4")),
        "the 1226 Alert's missing Status is named: {w:?}"
    );
    assert_eq!(seen.lock().map(|s| s.paths.len()).unwrap_or(0), 1);
}

#[tokio::test]
async fn syncml_content_type_is_compared_as_a_media_type() {
    let ca = TestCa::new();
    let ct = Arc::new(Mutex::new((String::new(), String::new())));
    let ct2 = ct.clone();
    let (url, _seen) = mtls_server(
        &ca,
        false,
        Arc::new(move |_, body| {
            let h = ct2.lock().map(|c| c.clone()).unwrap_or_default();
            (vec![h], answer(body, true, ""))
        }),
    )
    .await;
    let mut d = enrolled(&ca, &url);
    for (name, value, warned) in [
        ("Content-Type", "application/vnd.syncml.dm+xml", false),
        (
            "content-type",
            "application/vnd.syncml.dm+xml; charset=utf-8",
            false,
        ),
        (
            "CONTENT-TYPE",
            "Application/VND.SyncML.DM+XML;Charset=\"UTF-8\"",
            false,
        ),
        ("Content-Type", "text/xml; charset=utf-8", true),
    ] {
        if let Ok(mut c) = ct.lock() {
            *c = (name.to_string(), value.to_string());
        }
        d.sync().await.expect(value);
        let w = d.take_warnings();
        assert_eq!(
            checks(&w),
            if warned {
                vec!["syncml.content_type"]
            } else {
                vec![]
            },
            "{name}: {value}"
        );
    }
}

#[tokio::test]
async fn keep_alive_connections_and_extra_query_parameters_are_fine() {
    let ca = TestCa::new();
    let get = "<Get><CmdID>g1</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>";
    let (url, seen) = mtls_server(
        &ca,
        true,
        Arc::new(move |n, body| {
            let cmds = if n == 0 { get } else { "" };
            (syncml_ct(), answer(body, true, cmds))
        }),
    )
    .await;
    let mut d = new_device();
    let client = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let addr = format!("{url}/ManagementServer/MDM.svc?tenant=contoso");
    let xml = provisioning_xml(&params(&ca, &client, &d, &addr));
    apply(&mut d, &xml).expect("applies");
    let report = d.sync().await.expect("two round trips over one connection");
    assert_eq!(report.round_trips, 2);
    assert_eq!(report.server_commands.len(), 1);
    let s = seen
        .lock()
        .map(|s| (s.paths.clone(), s.client_certs.len()))
        .unwrap_or_default();
    assert!(
        s.0.iter()
            .all(|p| p.contains("tenant=contoso&mode=Maintenance&Platform=WoA")),
        "{:?}",
        s.0
    );
    assert_eq!(s.1, 1, "one kept-alive connection");
    assert!(d.take_warnings().is_empty());
}

#[tokio::test]
async fn the_next_session_resumes_the_tls_session_of_the_last() {
    let ca = TestCa::new();
    let (url, seen) = mtls_server(
        &ca,
        false,
        Arc::new(|_, body| (syncml_ct(), answer(body, true, ""))),
    )
    .await;
    let (mut d, client) = enrolled_with_cert(&ca, &url);
    d.sync().await.expect("first session");
    d.sync().await.expect("second session");
    let (kinds, certs) = seen
        .lock()
        .map(|s| (s.handshakes.clone(), s.client_certs.clone()))
        .unwrap_or_default();
    use rustls::HandshakeKind::{Full, Resumed};
    assert_eq!(kinds, vec![Some(Full), Some(Resumed)]);
    // The resumed session carries the certificate of the full handshake.
    assert_eq!(certs, vec![client.clone(), client]);
}

const MID: &str = "urn:uuid:0a1b2c3d-0000-4000-8000-000000000001";
const DISCOVER_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse";

/// A DiscoverResponse with other prefixes (env, wsa, a default namespace), reordered and
/// whitespace-wrapped children and unknown extra elements.
fn discover_response(header_extra: &str, result: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">
  <env:Header>
    <X-Trace xmlns="urn:example:trace">abc</X-Trace>
    <wsa:Action env:mustUnderstand="1">
      {DISCOVER_RESPONSE}
    </wsa:Action>
    {header_extra}
    <ActivityId xmlns="http://schemas.microsoft.com/2004/09/ServiceModel/Diagnostics">x</ActivityId>
  </env:Header>
  <env:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
    <DiscoverResponse xmlns="http://schemas.microsoft.com/windows/management/2012/01/enrollment">
      <DiscoverResult>{result}<Unknown>ignored</Unknown></DiscoverResult>
      <Extra/>
    </DiscoverResponse>
  </env:Body>
</env:Envelope>"#
    )
}

const FULL_RESULT: &str = "
        <EnrollmentServiceUrl> https://mdm.example.org/EnrollmentServer/Enrollment.svc </EnrollmentServiceUrl>
        <EnrollmentVersion>4.0</EnrollmentVersion>
        <EnrollmentPolicyServiceUrl>https://mdm.example.org/EnrollmentServer/Policy.svc</EnrollmentPolicyServiceUrl>
        <AuthPolicy>OnPremise</AuthPolicy>";

#[test]
fn soap_prefixes_order_whitespace_and_extra_elements_are_accepted() {
    let relates = format!("<wsa:RelatesTo>{MID}</wsa:RelatesTo>");
    let mut w = Vec::new();
    let r = discovery::parse_response_with(&discover_response(&relates, FULL_RESULT), MID, &mut w)
        .expect("parses");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(r.auth_policy, "OnPremise");
    assert_eq!(r.enrollment_version, "4.0");
    assert_eq!(
        r.enrollment_service_url,
        "https://mdm.example.org/EnrollmentServer/Enrollment.svc"
    );
    assert_eq!(
        r.enrollment_policy_service_url,
        "https://mdm.example.org/EnrollmentServer/Policy.svc"
    );
}

#[test]
fn missing_relates_to_fails_and_a_foreign_one_is_a_warning() {
    let mut w = Vec::new();
    let err = discovery::parse_response_with(&discover_response("", FULL_RESULT), MID, &mut w)
        .expect_err("no RelatesTo");
    assert!(err.to_string().contains("RelatesTo"), "{err}");
    let other = "<wsa:RelatesTo>urn:uuid:ffffffff-0000-4000-8000-000000000000</wsa:RelatesTo>";
    let mut w = Vec::new();
    discovery::parse_response_with(&discover_response(other, FULL_RESULT), MID, &mut w)
        .expect("another RelatesTo");
    assert_eq!(checks(&w), vec!["soap.relates_to_mismatch"]);
}

#[test]
fn discover_result_optional_elements_may_be_absent() {
    // EnrollmentVersion and EnrollmentPolicyServiceUrl are minOccurs="0" ([MS-MDE2]
    // §3.1.4.1.3.2).
    let minimal = "<AuthPolicy>OnPremise</AuthPolicy><EnrollmentServiceUrl>https://mdm.example.org/e</EnrollmentServiceUrl>";
    let relates = format!("<wsa:RelatesTo>{MID}</wsa:RelatesTo>");
    let mut w = Vec::new();
    let r = discovery::parse_response_with(&discover_response(&relates, minimal), MID, &mut w)
        .expect("minimal DiscoverResult");
    assert_eq!(r.enrollment_version, "");
    assert_eq!(r.enrollment_policy_service_url, "https://mdm.example.org/e");
    assert_eq!(checks(&w), vec!["discovery.enrollment_policy_service_url"]);
}

#[test]
fn provisioning_deviations_windows_tolerates_are_warnings() {
    let ca = TestCa::new();
    let addr = "https://mdm.example.org/ManagementServer/MDM.svc";
    type Edit = fn(String) -> String;
    let cases: Vec<(Edit, &str)> = vec![
        (
            |x| x.replace(r#"version="1.1""#, r#"version="1.0""#),
            "provisioning.version",
        ),
        (
            |x| {
                // Drop the Root/System characteristic (first CertificateStore block).
                let start = x
                    .find(
                        "<characteristic type=\"CertificateStore\"><characteristic type=\"Root\">",
                    )
                    .unwrap_or(0);
                let end = x[start..]
                    .find("</characteristic></characteristic></characteristic>\n")
                    .map(|e| start + e + 51)
                    .unwrap_or(start);
                format!("{}{}", &x[..start], &x[end..])
            },
            "provisioning.root_cert_missing",
        ),
        (
            |x| {
                let start = x.find("<characteristic type=\"DMClient\">").unwrap_or(0);
                let end = x.find("</wap-provisioningdoc>").unwrap_or(start);
                format!("{}{}", &x[..start], &x[end..])
            },
            "provisioning.dmclient_provider_missing",
        ),
    ];
    for (edit, want) in cases {
        let mut d = new_device();
        let client = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
        let xml = edit(provisioning_xml(&params(&ca, &client, &d, addr)));
        apply(&mut d, &xml).unwrap_or_else(|e| panic!("{want}: {e}"));
        assert_eq!(checks(&d.take_warnings()), vec![want]);
        assert!(d.is_enrolled());
    }
    // An intermediate CA in My/User that issued the client certificate (Mobile device
    // enrollment: "CertificateStore/My/User for intermediate CA certificate provisioning").
    let int_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
    let int_der = fake_windows_client::foreign::issue(
        "Test WSTEP CA",
        &ca.key,
        "Test Intermediate CA",
        &csr::spki_der(&int_key).expect("spki"),
        true,
    )
    .expect("intermediate");
    let with_intermediates = |n: usize| {
        let mut d = new_device();
        let client = fake_windows_client::foreign::issue(
            "Test Intermediate CA",
            &int_key,
            d.device_id(),
            &d.public_key_der().expect("spki"),
            false,
        )
        .expect("client");
        let xml = provisioning_xml(&params(&ca, &client, &d, addr));
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &int_der);
        let entry = format!(
            r#"<characteristic type="{}"><parm name="EncodedCertificate" value="{b64}"/></characteristic>"#,
            fake_windows_client::verify::thumbprint(&int_der)
        );
        let xml = xml.replacen(
            "<characteristic type=\"User\">\n",
            &format!("<characteristic type=\"User\">\n{}", entry.repeat(n)),
            1,
        );
        let r = apply(&mut d, &xml);
        (d, r, client)
    };
    let (mut d, r, client) = with_intermediates(1);
    r.expect("client certificate issued by the intermediate in My");
    assert!(d.take_warnings().is_empty());
    assert_eq!(
        d.enrollment().map(|e| e.client_cert_der.clone()),
        Some(client)
    );
    let (mut d, r, _) = with_intermediates(2);
    r.expect("two intermediates");
    assert_eq!(
        checks(&d.take_warnings()),
        vec!["provisioning.intermediate_count"]
    );
    // Criteria naming the subject in another case still find the certificate (RFC 5280
    // §7.1), without a warning.
    let mut d = new_device();
    let client = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let mut p = params(&ca, &client, &d, addr);
    p.criteria = criteria(&d.device_id().to_ascii_lowercase(), "user");
    let xml = provisioning_xml(&p);
    apply(&mut d, &xml).expect("case-insensitive criteria");
    assert!(d.take_warnings().is_empty());
    // A client certificate from another CA than the provisioned root: the server judges it.
    let other = TestCa::new();
    let mut d = new_device();
    let client = other.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let xml = provisioning_xml(&params(&ca, &client, &d, addr));
    apply(&mut d, &xml).expect("applies");
    assert_eq!(
        checks(&d.take_warnings()),
        vec!["provisioning.client_issuer"]
    );
}

const DEVICE_ID: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";

fn session_reply(mutate: impl Fn(String) -> String) -> Result<Vec<Warning>, ClientError> {
    let builtins = DeviceProfile::random().builtins(DEVICE_ID);
    let mut s = ManagementSession::new("7", "https://mdm.example.org/m", DEVICE_ID);
    let pkg1 = s.first_message(&builtins, "user");
    let reply = mutate(answer(&pkg1, true, ""));
    s.handle(&reply, &mut NodeStore::default(), &builtins)?;
    Ok(s.take_warnings())
}

type Mutation = Box<dyn Fn(String) -> String>;

#[test]
fn syncml_deviations_windows_tolerates_are_warnings() {
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|x| x.replace(r#" xmlns="SYNCML:SYNCML1.2""#, "")),
            "syncml.namespace",
        ),
        (
            Box::new(|x| x.replace("SYNCML:SYNCML1.2", "syncml:SyncML1.2")),
            "syncml.namespace",
        ),
        (
            Box::new(|x| x.replace("<SessionID>7<", "<SessionID>8<")),
            "syncml.session_id",
        ),
        (
            Box::new(|x| {
                x.replacen(
                    "<MsgRef>1</MsgRef><CmdRef>0</CmdRef>",
                    "<MsgRef>9</MsgRef><CmdRef>0</CmdRef>",
                    1,
                )
            }),
            "syncml.synchdr_status_refs",
        ),
        (
            // The SyncHdr Status after the others.
            Box::new(|x| {
                let hdr = "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>";
                x.replace(hdr, "")
                    .replace("<Final/>", &format!("{hdr}<Final/>"))
            }),
            "syncml.synchdr_status_order",
        ),
        (
            // A namespace prefix on every element.
            Box::new(|x| {
                x.replace(
                    r#"<SyncML xmlns="SYNCML:SYNCML1.2">"#,
                    r#"<d:SyncML xmlns:d="SYNCML:SYNCML1.2">"#,
                )
                .replace("</SyncML>", "</d:SyncML>")
            }),
            "",
        ),
    ];
    for (mutate, want) in cases {
        let w = session_reply(&mutate).unwrap_or_else(|e| panic!("{want}: {e}"));
        let want: Vec<&str> = if want.is_empty() { vec![] } else { vec![want] };
        assert_eq!(checks(&w), want);
    }
}

// ---------------------------------------------------------------------------------------
// Fail-level checks still fail.

#[test]
fn fail_level_checks_still_fail() {
    let relates = format!("<wsa:RelatesTo>{MID}</wsa:RelatesTo>");
    let good = discover_response(&relates, FULL_RESULT);
    // A wrong Action: the reply is another message.
    let wrong_action = good.replace(
        DISCOVER_RESPONSE,
        "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover",
    );
    let err = discovery::parse_response(&wrong_action, MID).expect_err("wrong Action");
    assert!(err.to_string().contains("a:Action"), "{err}");
    // A SOAP 1.1 envelope.
    let soap11 = good.replace(
        "http://www.w3.org/2003/05/soap-envelope",
        "http://schemas.xmlsoap.org/soap/envelope/",
    );
    let err = discovery::parse_response(&soap11, MID).expect_err("SOAP 1.1");
    assert!(err.to_string().contains("SOAP 1.1"), "{err}");
    // No EnrollmentServiceUrl.
    let no_url = discover_response(&relates, "<AuthPolicy>OnPremise</AuthPolicy>");
    assert!(matches!(
        discovery::parse_response(&no_url, MID),
        Err(ClientError::Missing { .. })
    ));

    // A provisioning document without the issued client certificate.
    let ca = TestCa::new();
    let mut d = new_device();
    let client = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let xml = provisioning_xml(&params(&ca, &client, &d, "https://mdm.example.org/m"));
    let start = xml.find("<characteristic type=\"My\">").expect("My");
    let end = xml
        .find("<characteristic type=\"PrivateKeyContainer\"/>")
        .expect("PKC");
    let no_client = format!(
        "{}<characteristic type=\"My\"><characteristic type=\"User\">{}",
        &xml[..start],
        &xml[end..]
    );
    let err = apply(&mut d, &no_client).expect_err("no client certificate");
    assert!(err.to_string().contains("EncodedCertificate"), "{err}");
    // No PrivateKeyContainer ("required and must be present", Mobile device enrollment).
    let no_pkc = xml.replace("<characteristic type=\"PrivateKeyContainer\"/>", "");
    let err = apply(&mut d, &no_pkc).expect_err("no PrivateKeyContainer");
    assert!(err.to_string().contains("PrivateKeyContainer"), "{err}");
    // A DMClient provider that is not the w7 PROVIDER-ID ("must match", same page).
    let other = xml.replace(
        "<characteristic type=\"Provider\"><characteristic type=\"TestMDM\">",
        "<characteristic type=\"Provider\"><characteristic type=\"Other\">",
    );
    let err = apply(&mut d, &other).expect_err("DMClient provider mismatch");
    assert!(err.to_string().contains("PROVIDER-ID"), "{err}");
    // Criteria that name another certificate.
    let mut p = params(&ca, &client, &d, "https://mdm.example.org/m");
    p.criteria = criteria("SOMEONE-ELSE", "User");
    let err = apply(&mut d, &provisioning_xml(&p)).expect_err("criteria miss");
    assert!(
        err.to_string().contains("SSLCLIENTCERTSEARCHCRITERIA"),
        "{err}"
    );
    assert!(!d.is_enrolled());

    // SyncML: no Status for our SyncHdr, a refusing SyncHdr Status, another protocol.
    let no_hdr = session_reply(|x| {
        x.replace(
            "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>",
            "",
        )
    });
    assert!(
        matches!(no_hdr, Err(ClientError::Missing { .. })),
        "{no_hdr:?}"
    );
    let refused = session_reply(|x| x.replacen("<Data>200</Data>", "<Data>401</Data>", 1));
    assert!(refused.is_err_and(|e| e.to_string().contains("401")));
    let dm11 = session_reply(|x| x.replace("<VerProto>DM/1.2", "<VerProto>DM/1.1"));
    assert!(dm11.is_err_and(|e| e.to_string().contains("VerProto")));
}

#[test]
fn every_check_is_documented_with_its_level() {
    let doc = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/conformance.md"
    ));
    for (check, level) in warning::CHECKS {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{check}` |")))
            .unwrap_or_else(|| panic!("{check} has no row in docs/conformance.md"));
        assert!(
            row.contains(&format!("| {} |", level.as_str())),
            "{check}: level {} expected in {row}",
            level.as_str()
        );
    }
    // Checks named in the code's warnings are listed too.
    for check in [
        "provisioning.cert_search_criteria_missing",
        "syncml.command_status_missing",
        "soap.content_type",
    ] {
        assert_eq!(warning::level_of(check), Some(Level::Warn), "{check}");
    }
}

/// Answers every connection with `raw` (a whole HTTP/1.1 response).
async fn raw_server(raw: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = read_request(&mut sock).await;
            let _ = sock.write_all(raw.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_chunked_rstrc_is_refused() {
    let ca = TestCa::new();
    let body = "<not-an-rstrc/>";
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml; charset=utf-8\r\nConnection: close\r\n";
    let chunked = format!(
        "{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let whole = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
    for (raw, is_chunked) in [(chunked, true), (whole, false)] {
        let url = raw_server(raw).await;
        let mut d = with_enrollment_service(
            enrolled(&ca, "https://mdm.example.org"),
            &format!("{url}/enroll"),
        );
        let err = d.renew().await.expect_err("not an RSTRC either way");
        assert_eq!(err.to_string().contains("chunked"), is_chunked, "{err}");
    }
}
