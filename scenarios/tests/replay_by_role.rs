//! A capture of a Windows device recorded against another server ("server A": other
//! paths, UsernameToken authentication) replayed by role: against winmdm-server every
//! exchange is answered as Windows needs; against the independent test double with a
//! defect, the exchange that meets the defect fails and names it.
//!
//! The capture's requests are the published vectors of `testdata/vectors/` with the
//! placeholders a real device fills in filled in (a Windows-shaped CSR and PKCS#7, the
//! DeviceID) and the sample's documented slips corrected (SOURCES.md): the Discover
//! namespace without the trailing slash, the unclosed `MAC` ContextItem.

mod double;
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use winmdm::har::{self, Content, Entry, Har, NameValue, PostData, Request, Response};

const SERVER_A: &str = "https://mdm.server-a.example";
const DEVICE_ID: &str = "7BA748C8-703E-4DF2-A74A-92984117346A";
const SOAP: &str = "application/soap+xml; charset=utf-8";

fn vector(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../testdata/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("vector")
}

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// Server A's authentication: a UsernameToken (OnPremise, MS-MDE2 §2.2.9.1).
fn username_token() -> String {
    r#"<wsse:Security s:mustUnderstand="1"><wsse:UsernameToken u:Id="uuid-5d0c2d3e-1"><wsse:Username>user@contoso.com</wsse:Username><wsse:Password wsse:Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">server-a-password</wsse:Password></wsse:UsernameToken></wsse:Security>"#.into()
}

fn replace_security(xml: &str) -> String {
    let start = xml.find("<wsse:Security").expect("security header");
    let end = xml.find("</wsse:Security>").expect("security end") + "</wsse:Security>".len();
    format!("{}{}{}", &xml[..start], username_token(), &xml[end..])
}

/// The placeholder text of a BinarySecurityToken replaced by `b64`.
fn fill_token(xml: &str, placeholder: &str, b64: &str) -> String {
    assert!(xml.contains(placeholder), "{placeholder}");
    xml.replace(placeholder, b64)
}

/// A CSR as Windows makes it: PrintableString CN `<GUID prefix>!<DeviceID>\0`, the
/// DeviceID extension request, sha1RSA (fake_windows_client::csr after a real capture).
fn windows_csr() -> (Vec<u8>, rsa::RsaPrivateKey) {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
    let csr = fake_windows_client::csr::build(
        &key,
        &fake_windows_client::csr::windows_subject_cn(DEVICE_ID),
        DEVICE_ID,
        fake_windows_client::csr::HashAlg::Sha1,
    )
    .expect("csr");
    (csr, key)
}

fn entry(method: &str, path: &str, body: &str, status: u16, response: &str) -> Entry {
    let url = format!("{SERVER_A}{path}");
    let mut headers = vec![
        NameValue {
            name: "Host".into(),
            value: "mdm.server-a.example".into(),
        },
        NameValue {
            name: ":authority".into(),
            value: "mdm.server-a.example".into(),
        },
    ];
    let syncml = body.contains("<SyncML");
    let user_agent = if syncml {
        "MSFT OMA DM Client/1.2.0.1"
    } else {
        "ENROLLClient"
    };
    headers.push(NameValue {
        name: "User-Agent".into(),
        value: user_agent.into(),
    });
    if !body.is_empty() {
        let ct = if syncml {
            "application/vnd.syncml.dm+xml"
        } else {
            SOAP
        };
        headers.push(NameValue {
            name: "Content-Type".into(),
            value: ct.into(),
        });
    }
    Entry {
        pageref: None,
        started_date_time: "2024-05-01T10:00:00Z".into(),
        time: 12.0,
        request: Request {
            method: method.into(),
            url: url.clone(),
            http_version: "HTTP/2".into(),
            cookies: Vec::new(),
            headers,
            query_string: har::query_of(&url),
            post_data: (!body.is_empty()).then(|| PostData {
                mime_type: String::new(),
                text: body.into(),
            }),
            headers_size: -1,
            body_size: body.len() as i64,
        },
        response: Response {
            status,
            status_text: String::new(),
            http_version: "HTTP/2".into(),
            cookies: Vec::new(),
            headers: Vec::new(),
            content: Content {
                size: response.len() as i64,
                mime_type: String::new(),
                text: response.into(),
                encoding: None,
            },
            redirect_url: String::new(),
            headers_size: -1,
            body_size: -1,
        },
        cache: serde_json::json!({}),
        timings: har::Timings::default(),
        comment: None,
        scenario: None,
        step: None,
        client_certificate: None,
        error: None,
    }
}

/// The device's first management package: Alert 1201, the 1224 LoginStatus alert
/// (vector), the DevInfo Replace.
fn package_one() -> String {
    let login =
        vector("omadm-alert-1224-loginstatus.xml").replace("<CmdID>1</CmdID>", "<CmdID>3</CmdID>");
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>2C</SessionID><MsgID>1</MsgID><Target><LocURI>{SERVER_A}/mdm/omadm</LocURI></Target><Source><LocURI>{DEVICE_ID}</LocURI></Source></SyncHdr><SyncBody><Alert><CmdID>2</CmdID><Data>1201</Data></Alert>{login}<Replace><CmdID>4</CmdID><Item><Source><LocURI>./DevInfo/DevId</LocURI></Source><Data>{DEVICE_ID}</Data></Item><Item><Source><LocURI>./DevInfo/Man</LocURI></Source><Data>Microsoft Corporation</Data></Item><Item><Source><LocURI>./DevInfo/DmV</LocURI></Source><Data>1.3</Data></Item></Replace><Final/></SyncBody></SyncML>"#
    )
}

/// The device's answer to server A's package 2 (vector: Get ./DevDetail/SwV).
fn package_three() -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>2C</SessionID><MsgID>2</MsgID><Target><LocURI>{SERVER_A}/mdm/omadm</LocURI></Target><Source><LocURI>{DEVICE_ID}</LocURI></Source></SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status><Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>2</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status><Results><CmdID>3</CmdID><MsgRef>1</MsgRef><CmdRef>2</CmdRef><Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Data>10.0.19045.4291</Data></Item></Results><Final/></SyncBody></SyncML>"#
    )
}

/// The whole capture, as a proxy would have recorded it against server A.
fn capture() -> Har {
    let (csr, _) = windows_csr();
    let discover = vector("mde2-discover-request.xml")
        .replace(
            "https://ENROLLTEST.CONTOSO.COM/EnrollmentServer/Discovery.svc",
            &format!("{SERVER_A}/mdm/discovery"),
        )
        .replace("2012/01/enrollment/\"", "2012/01/enrollment\"");
    let policies = replace_security(&vector("xcep-getpolicies-request.xml"));
    let rst = replace_security(&vector("wstep-rst-request.xml")).replace(
        "<ac:Value>CC:CC:CC:CC:CC:CC</ac:Value>",
        "<ac:Value>CC:CC:CC:CC:CC:CC</ac:Value></ac:ContextItem>",
    );
    let rst = fill_token(
        &rst,
        "DER format PKCS#10 certificate request in Base64 encoding Insterted Here",
        &b64(&csr),
    );
    // The renewal's PKCS#7: the renewed CSR signed with the certificate server A issued
    // (any certificate here; the replay re-signs with the target's).
    let (renew_csr, _) = windows_csr();
    let (cert_pem, key_pem) = fake_windows_client::foreign_identity(DEVICE_ID).expect("identity");
    use rsa::pkcs8::DecodePrivateKey;
    let signer = rsa::RsaPrivateKey::from_pkcs8_pem(&key_pem).expect("key");
    use rustls_pki_types::pem::PemObject;
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert");
    let p7 = fake_windows_client::cms::sign(&renew_csr, &cert, &signer).expect("p7");
    let renew = fill_token(
        &vector("wstep-renew-request.xml"),
        "BinarySecurityTokenInsertedHere",
        &b64(&p7),
    );
    let discover_response = vector("mde2-discover-response.xml");
    let mut har = har::empty();
    har.log.creator.name = "mitmproxy".into();
    har.log.entries = vec![
        entry("GET", "/mdm/discovery", "", 200, ""),
        entry("POST", "/mdm/discovery", &discover, 200, &discover_response),
        entry(
            "POST",
            "/mdm/policy",
            &policies,
            200,
            &vector("xcep-getpolicies-response.xml"),
        ),
        entry(
            "POST",
            "/mdm/enroll",
            &rst,
            200,
            &vector("wstep-rstrc-response.xml"),
        ),
        entry(
            "POST",
            "/mdm/omadm?mode=Maintenance&Platform=WoA",
            &package_one(),
            200,
            &vector("omadm-pkg2-server.xml"),
        ),
        entry(
            "POST",
            "/mdm/omadm?mode=Maintenance&Platform=WoA",
            &package_three(),
            200,
            "",
        ),
        entry("POST", "/mdm/enroll", &renew, 200, ""),
        entry("GET", "/favicon.ico", "", 404, ""),
    ];
    har
}

struct ServerProcess {
    child: Child,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
    url: String,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(extra: &[&str]) -> ServerProcess {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = serve::spawn(
        Command::new(env!("CARGO_BIN_EXE_winmdm"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args([
                "--enroll-secret",
                "ext-secret",
                "--enroll-rate-per-client",
                "0",
            ])
            .args(extra)
            .stderr(Stdio::null()),
    );
    ServerProcess {
        child: started.child,
        _stdout: started.stdout,
        url: format!("https://{}", started.addr),
        ca: dir.path().join("tls-cert.pem"),
        _dir: dir,
    }
}

fn replay(file: &Path, server: &str, ca: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_winmdm"))
        .arg("replay")
        .arg(file)
        .args(["--server", server, "--ca-file"])
        .arg(ca)
        .args(args)
        .output()
        .expect("harness runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn write_capture(dir: &Path) -> PathBuf {
    let file = dir.join("server-a.har");
    har::write(&file, &capture()).expect("write HAR");
    file
}

/// The line of exchange `n` (1-based) and the lines under it.
fn exchange(out: &str, n: usize) -> String {
    let tag = format!("#{n:<3}");
    let mut lines = out.lines().skip_while(|l| !l.contains(&tag));
    let mut block: Vec<&str> = lines.next().into_iter().collect();
    block.extend(lines.take_while(|l| l.starts_with("         ")));
    block.join("\n")
}

#[test]
fn a_capture_from_another_server_replays_against_winmdm_server_by_role() {
    let server = start_server(&["--enroll-user", "alice:wonderland"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_capture(dir.path());
    let (code, out) = replay(
        &file,
        &server.url,
        &server.ca,
        &["--username", "alice", "--password", "wonderland"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("replay by role: 8 exchange(s), 0 failed"),
        "{out}"
    );
    // Sent where winmdm-server serves each role, not to server A's paths.
    for n in 1..=7 {
        assert!(exchange(&out, n).contains(&server.url), "{out}");
    }
    assert!(
        exchange(&out, 3).contains("/api/mdm/microsoft/policy"),
        "{out}"
    );
    assert!(
        exchange(&out, 5)
            .contains("/api/mdm/microsoft/management?mode=Maintenance&Platform=WoA -> 200"),
        "{out}"
    );
    assert!(exchange(&out, 7).contains("renew_certificate"), "{out}");
    assert!(exchange(&out, 8).starts_with("  skip"), "{out}");
    // The recorded response is shown for information.
    assert!(
        exchange(&out, 2).contains("recorded: HTTP 200, SOAP DiscoverResponse"),
        "{out}"
    );

    // Without credentials the target accepts, an Orbit node key is obtained on the fly
    // (on a fresh server: the DeviceID now belongs to alice's enrollment), and the
    // discovery URL Orbit announces is used.
    drop(server);
    let fresh = start_server(&[]);
    let (code, out) = replay(
        &file,
        &fresh.url,
        &fresh.ca,
        &["--enroll-secret", "ext-secret"],
    );
    assert!(
        exchange(&out, 1).contains("/api/mdm/microsoft/discovery"),
        "{out}"
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
}

#[test]
fn a_defect_of_the_target_is_named_at_the_exchange_that_meets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_capture(dir.path());
    let token = ["--token", double::TOKEN, "--without", "renewal"];

    let sound = double::Double::start(double::Options::default());
    let (code, out) = replay(&file, &sound.url, &sound.ca_file, &token);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
    // What the double leaves out that Windows tolerates is a warning, not a failure.
    assert!(
        exchange(&out, 4).contains("warn provisioning.cert_search_criteria_missing"),
        "{out}"
    );

    for (defect, n, step, names) in [
        (
            double::Defect::WrongDiscoverAction,
            2,
            "discover",
            "a:Action",
        ),
        (double::Defect::MissingRelatesTo, 2, "discover", "RelatesTo"),
        (
            double::Defect::TruncatedPolicyBody,
            3,
            "get_policies",
            "get_policies",
        ),
    ] {
        let d = double::Double::start(double::Options {
            defect: Some(defect),
            ..double::Options::default()
        });
        let (code, out) = replay(&file, &d.url, &d.ca_file, &token);
        assert_eq!(code, 1, "{defect:?}\n{out}");
        let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("  FAIL")).collect();
        assert_eq!(failed.len(), 1, "{defect:?}\n{out}");
        let block = exchange(&out, n);
        assert!(
            block.starts_with("  FAIL") && block.contains(step) && block.contains(names),
            "{defect:?}\n{out}"
        );
    }
}

/// The capture as a server's Go log of `httputil.DumpRequest` / `DumpResponse`, with
/// the Discover body re-indented by the logger (longer than its Content-Length).
fn go_log(har: &Har) -> String {
    let mut out = String::new();
    for (i, e) in har.log.entries.iter().enumerate() {
        let path = e.request.url.trim_start_matches(SERVER_A);
        let body = e
            .request
            .post_data
            .as_ref()
            .map(|p| p.text.clone())
            .unwrap_or_default();
        let declared = if i == 1 {
            let compact: String = body.lines().map(str::trim).collect();
            compact.len()
        } else {
            body.len()
        };
        out.push_str(&format!(
            "2024/05/01 10:00:0{} {} {path} HTTP/1.1\r\n",
            i % 10,
            e.request.method
        ));
        // This logger keeps no Content-Type: the replay sends the one Windows sends.
        let kept =
            e.request.headers.iter().filter(|h| {
                !h.name.starts_with(':') && !h.name.eq_ignore_ascii_case("content-type")
            });
        for h in kept {
            out.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        out.push_str(&format!("Content-Length: {declared}\r\n\r\n{body}\n"));
        out.push_str("2024/05/01 10:00:01 dumped the response:\n");
        let resp = &e.response.content.text;
        out.push_str(&format!(
            "2024/05/01 10:00:01 HTTP/1.1 {} OK\r\nContent-Length: {}\r\n\r\n{resp}\n",
            e.response.status,
            resp.len()
        ));
    }
    out
}

/// Against winmdm-server, which refuses a body without its media type (415).
#[test]
fn a_go_log_of_the_exchanges_replays_like_the_har() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("server-a.log");
    std::fs::write(&file, go_log(&capture())).expect("write log");
    let server = start_server(&["--enroll-user", "alice:wonderland"]);
    let (code, out) = replay(
        &file,
        &server.url,
        &server.ca,
        &["--username", "alice", "--password", "wonderland"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("replay by role: 8 exchange(s), 0 failed"),
        "{out}"
    );
    let warning = out
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_default();
    assert!(
        warning.contains("POST /mdm/discovery HTTP/1.1") && warning.contains("reformatted"),
        "{out}"
    );
    assert!(
        exchange(&out, 2).contains("recorded: HTTP 200, SOAP DiscoverResponse"),
        "{out}"
    );
}
