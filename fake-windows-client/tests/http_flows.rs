//! Flows over a local plain-HTTP stand-in server: Retry-After handling on enrollment
//! endpoints and a complete certificate renewal (request, PKCS#7, response, state).

mod common;

use base64::Engine;
use common::{enrolled_device, renewal_xml, with_enrollment_service, TestCa};
use fake_windows_client::{cms, verify, ClientError, Device, RegValue, TlsOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use x509_parser::prelude::FromDer;

type Handler = Arc<dyn Fn(usize, &str) -> (u16, Vec<(String, String)>, String) + Send + Sync>;

/// Serves HTTP/1.1 requests one per connection; returns the base URL and the request log.
async fn serve(handler: Handler) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut tmp = [0u8; 8192];
            let body = loop {
                let Ok(k) = sock.read(&mut tmp).await else {
                    break None;
                };
                if k == 0 {
                    break None;
                }
                buf.extend_from_slice(&tmp[..k]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(
                            String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string(),
                        );
                    }
                }
            };
            let body = body.unwrap_or_default();
            if let Ok(mut l) = log2.lock() {
                l.push(body.clone());
            }
            let (status, headers, resp) = handler(n, &body);
            n += 1;
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                resp.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&resp);
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (format!("http://{addr}"), log)
}

fn device() -> Device {
    Device::new(
        fake_windows_client::DeviceProfile::random(),
        TlsOptions {
            ca_pem: None,
            insecure: true,
        },
    )
    .expect("device")
}

#[tokio::test]
async fn retry_after_is_honoured_three_times_then_throttled() {
    let (url, log) = serve(Arc::new(|n, _| {
        if n < 2 {
            (
                429,
                vec![("Retry-After".into(), "30".into())],
                String::new(),
            )
        } else {
            (200, vec![], String::new())
        }
    }))
    .await;
    let mut d = device();
    d.set_retry_after_cap(Duration::from_millis(10));
    let started = std::time::Instant::now();
    d.discovery_probe(&format!("{url}/disco"))
        .await
        .expect("third try succeeds");
    assert!(started.elapsed() < Duration::from_secs(5), "cap honoured");
    assert_eq!(log.lock().map(|l| l.len()).unwrap_or(0), 3);

    let (url, log) = serve(Arc::new(|_, _| {
        (429, vec![("Retry-After".into(), "1".into())], String::new())
    }))
    .await;
    let mut d = device();
    d.set_retry_after_cap(Duration::ZERO);
    let err = d
        .discovery_probe(&format!("{url}/disco"))
        .await
        .expect_err("throttled");
    assert!(matches!(err, ClientError::Throttled { .. }), "{err:?}");
    assert_eq!(
        log.lock().map(|l| l.len()).unwrap_or(0),
        4,
        "1 try + 3 retries"
    );
}

fn text_of(xml: &str, local: &str) -> Option<String> {
    let d = roxmltree::Document::parse(xml).ok()?;
    d.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == local)
        .map(|n| n.text().unwrap_or("").trim().to_string())
}

fn rstrc(relates_to: &str, doc: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_bytes());
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:u="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep</a:Action><a:RelatesTo>{relates_to}</a:RelatesTo><o:Security s:mustUnderstand="1" xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><u:Timestamp u:Id="_0"><u:Created>2024-01-01T00:00:00Z</u:Created><u:Expires>2024-01-01T00:05:00Z</u:Expires></u:Timestamp></o:Security></s:Header><s:Body><RequestSecurityTokenResponseCollection xmlns="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><RequestSecurityTokenResponse><TokenType>http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken</TokenType><RequestedSecurityToken><BinarySecurityToken xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" ValueType="http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc" EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary">{b64}</BinarySecurityToken></RequestedSecurityToken><RequestID>0</RequestID></RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection></s:Body></s:Envelope>"#
    )
}

const FAULT: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>s:Authorization</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">no</s:Text></s:Reason><s:Detail><DeviceEnrollmentServiceError xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment"><ErrorType>NotEligibleToRenew</ErrorType></DeviceEnrollmentServiceError></s:Detail></s:Fault></s:Body></s:Envelope>"#;

#[tokio::test]
async fn renewal_round_trip_replaces_the_certificate() {
    let ca = Arc::new(TestCa::new());
    let d = enrolled_device(&ca);
    let device_id = d.device_id().to_string();
    let old_cert = d.enrollment().expect("enrolled").client_cert_der.clone();
    let ca2 = ca.clone();
    let old2 = old_cert.clone();
    let dev2 = device_id.clone();
    let (url, log) = serve(Arc::new(move |_, body| {
        let mid = text_of(body, "MessageID").unwrap_or_default();
        let p7 = text_of(body, "BinarySecurityToken")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_default();
        let Ok(sd) = cms::parse(&p7) else {
            return (500, vec![], "bad pkcs7".into());
        };
        assert_eq!(
            sd.certificates,
            vec![old2.clone()],
            "signed by the current certificate"
        );
        let Ok((_, req)) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&sd.econtent)
        else {
            return (500, vec![], "bad csr".into());
        };
        let spki = req.certification_request_info.subject_pki.raw.to_vec();
        let cert = ca2.client_cert(&dev2, &spki);
        let doc = renewal_xml(&ca2.der, &cert, "User", "TestMDM");
        (
            200,
            vec![(
                "Content-Type".into(),
                "application/soap+xml; charset=utf-8".into(),
            )],
            rstrc(&mid, &doc),
        )
    }))
    .await;
    let mut d = with_enrollment_service(d, &format!("{url}/enroll"));
    d.renew().await.expect("renewed");
    let request = log
        .lock()
        .ok()
        .and_then(|l| l.first().cloned())
        .expect("request");
    assert_eq!(
        text_of(&request, "RequestType").as_deref(),
        Some("http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew")
    );
    assert_eq!(
        text_of(&request, "Username").as_deref(),
        Some("user@example.org")
    );
    assert!(text_of(&request, "Created").is_some());
    assert!(request.contains("#PKCS7"));
    let e = d.enrollment().expect("enrolled");
    assert_ne!(e.client_cert_der, old_cert);
    assert_eq!(e.client_thumbprint, verify::thumbprint(&e.client_cert_der));
    assert_eq!(d.device_id(), device_id);
    let prev = d.previous_identity_pem().expect("previous");
    assert!(prev.0.contains("BEGIN CERTIFICATE"));
}

#[tokio::test]
async fn renewal_fault_is_a_soap_fault_and_recorded() {
    let ca = TestCa::new();
    let d = enrolled_device(&ca);
    let (url, _log) = serve(Arc::new(|_, _| {
        (
            500,
            vec![(
                "Content-Type".into(),
                "application/soap+xml; charset=utf-8".into(),
            )],
            FAULT.to_string(),
        )
    }))
    .await;
    let mut d = with_enrollment_service(d, &format!("{url}/enroll"));
    let before = d.enrollment().cloned();
    let err = d.renew().await.expect_err("fault");
    let fault = err.soap_fault().expect("SOAP fault");
    assert_eq!(fault.error_type.as_deref(), Some("NotEligibleToRenew"));
    assert_eq!(d.enrollment().cloned(), before);
    let ek = format!(
        "HKLM\\SOFTWARE\\Microsoft\\Enrollments\\{}",
        before.map(|e| e.enrollment_guid).unwrap_or_default()
    );
    assert_eq!(
        d.registry().get(&ek, "RenewErrorCode"),
        Some(&RegValue::Dword(0x8018_0016))
    );
    assert_eq!(
        d.registry().get(&ek, "RenewStatus"),
        Some(&RegValue::Dword(2))
    );
}
