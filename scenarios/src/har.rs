//! HAR 1.2 capture of a run (every HTTP exchange the emulated devices made) and import
//! of raw HTTP dumps (`*.http`) into the same format.
//!
//! Entries carry the scenario and step in the custom fields `_scenario` and `_step` and
//! the TLS client certificate in `comment` (`client-certificate: <thumbprint>`).
//! Exchanges are not individually timed by the client: `startedDateTime` and `time`
//! spread each step's duration evenly over its exchanges.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::Ran;

/// A HAR document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Har {
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Log {
    pub version: String,
    pub creator: Creator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<Page>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Creator {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub started_date_time: String,
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub page_timings: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pageref: Option<String>,
    pub started_date_time: String,
    pub time: f64,
    pub request: Request,
    pub response: Response,
    #[serde(default)]
    pub cache: serde_json::Value,
    #[serde(default)]
    pub timings: Timings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(rename = "_scenario", default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    #[serde(rename = "_step", default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// SHA-1 thumbprint (or description) of the client certificate presented.
    #[serde(
        rename = "_clientCertificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate: Option<String>,
    /// Transport error when no response arrived (status 0).
    #[serde(rename = "_error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub method: String,
    pub url: String,
    pub http_version: String,
    #[serde(default)]
    pub cookies: Vec<serde_json::Value>,
    #[serde(default)]
    pub headers: Vec<NameValue>,
    #[serde(default)]
    pub query_string: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_data: Option<PostData>,
    #[serde(default = "minus_one")]
    pub headers_size: i64,
    #[serde(default = "minus_one")]
    pub body_size: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostData {
    #[serde(default)]
    pub mime_type: String,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub status: u16,
    #[serde(default)]
    pub status_text: String,
    #[serde(default)]
    pub http_version: String,
    #[serde(default)]
    pub cookies: Vec<serde_json::Value>,
    #[serde(default)]
    pub headers: Vec<NameValue>,
    pub content: Content,
    #[serde(rename = "redirectURL", default)]
    pub redirect_url: String,
    #[serde(default = "minus_one")]
    pub headers_size: i64,
    #[serde(default = "minus_one")]
    pub body_size: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    pub size: i64,
    #[serde(default)]
    pub mime_type: String,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timings {
    pub blocked: f64,
    pub dns: f64,
    pub connect: f64,
    pub send: f64,
    pub wait: f64,
    pub receive: f64,
    pub ssl: f64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            blocked: -1.0,
            dns: -1.0,
            connect: -1.0,
            send: 0.0,
            wait: 0.0,
            receive: 0.0,
            ssl: -1.0,
        }
    }
}

fn minus_one() -> i64 {
    -1
}

/// Errors reading or importing captures.
#[derive(Debug, thiserror::Error)]
pub enum HarError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a HAR file: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Raw { path: String, message: String },
    #[error("{path}: truncated body: {message}")]
    Truncated { path: String, message: String },
}

fn header(headers: &[NameValue], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.clone())
}

fn pairs(v: &[(String, String)]) -> Vec<NameValue> {
    v.iter()
        .map(|(n, v)| NameValue {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

/// The query string of a URL as name/value pairs (not percent-decoded).
pub fn query_of(url: &str) -> Vec<NameValue> {
    let Some((_, q)) = url.split_once('?') else {
        return Vec::new();
    };
    let q = q.split('#').next().unwrap_or("");
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            NameValue {
                name: n.to_string(),
                value: v.to_string(),
            }
        })
        .collect()
}

fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
        .to_string()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The `comment` of an entry: scenario, step, request and client certificate.
pub fn comment(scenario: &str, step: &str, request: &str, client_cert: Option<&str>) -> String {
    let mut c = format!("scenario: {scenario}; step: {step}; request: {request}");
    if let Some(t) = client_cert {
        c.push_str(&format!("; client-certificate: {t}"));
    }
    c
}

/// Bearer tokens are secrets: captures keep the scheme only.
fn redact_authorization(mut h: Vec<NameValue>) -> Vec<NameValue> {
    for nv in h.iter_mut() {
        if nv.name.eq_ignore_ascii_case("authorization") {
            let scheme = nv.value.split_whitespace().next().unwrap_or("").to_string();
            nv.value = format!("{scheme} [REDACTED]");
        }
    }
    h
}

struct EntryContext<'a> {
    scenario: &'a str,
    pageref: &'a str,
    step: &'a str,
    client_cert: Option<&'a str>,
}

fn entry_from_exchange(
    ex: &fake_windows_client::Exchange,
    started: time::OffsetDateTime,
    ms: f64,
    cx: &EntryContext,
) -> Entry {
    let (scenario, pageref, client_cert) = (cx.scenario, cx.pageref, cx.client_cert);
    let req_headers = redact_authorization(pairs(&ex.request_headers));
    let resp_headers = pairs(&ex.response_headers);
    let post_data = (!ex.request_body.is_empty() || ex.method == "POST").then(|| PostData {
        mime_type: header(&req_headers, "content-type").unwrap_or_default(),
        text: ex.request_body.clone(),
    });
    Entry {
        pageref: Some(pageref.to_string()),
        started_date_time: rfc3339(started),
        time: ms,
        request: Request {
            method: ex.method.clone(),
            url: ex.url.clone(),
            http_version: "HTTP/1.1".into(),
            cookies: Vec::new(),
            headers: req_headers,
            query_string: query_of(&ex.url),
            post_data,
            headers_size: -1,
            body_size: ex.request_body.len() as i64,
        },
        response: Response {
            status: ex.status.unwrap_or(0),
            status_text: ex.status.map(status_text).unwrap_or_default(),
            http_version: if ex.status.is_some() {
                "HTTP/1.1".into()
            } else {
                String::new()
            },
            cookies: Vec::new(),
            content: Content {
                size: ex.response_body.len() as i64,
                mime_type: header(&resp_headers, "content-type").unwrap_or_default(),
                text: ex.response_body.clone(),
            },
            headers: resp_headers,
            redirect_url: String::new(),
            headers_size: -1,
            body_size: ex.response_body.len() as i64,
        },
        cache: serde_json::json!({}),
        timings: Timings {
            wait: ms,
            ..Timings::default()
        },
        comment: Some(comment(scenario, cx.step, &ex.step, client_cert)),
        scenario: Some(scenario.to_string()),
        step: Some(cx.step.to_string()),
        client_certificate: client_cert.map(str::to_string),
        error: ex.error.clone(),
    }
}

/// Builds the HAR of a run: one page per scenario, one entry per exchange.
pub fn from_run(ran: &[Ran]) -> Har {
    let mut pages = Vec::new();
    let mut entries = Vec::new();
    for r in ran {
        let page = crate::report::slug(&r.outcome.name);
        pages.push(Page {
            started_date_time: rfc3339(r.started),
            id: page.clone(),
            title: r.outcome.name.clone(),
            page_timings: serde_json::json!({}),
        });
        let mut at = r.started;
        for s in &r.outcome.steps {
            let n = s.exchanges.len().max(1) as u32;
            let each = s.elapsed / n;
            for (i, ex) in s.exchanges.iter().enumerate() {
                let started = at + each * i as u32;
                let cx = EntryContext {
                    scenario: &r.outcome.name,
                    pageref: &page,
                    step: s.name,
                    client_cert: s.client_cert.as_deref(),
                };
                entries.push(entry_from_exchange(
                    ex,
                    started,
                    each.as_secs_f64() * 1000.0,
                    &cx,
                ));
            }
            at += s.elapsed;
        }
    }
    Har {
        log: Log {
            version: "1.2".into(),
            creator: Creator {
                name: "winmdm".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            pages,
            entries,
        },
    }
}

/// Writes a HAR file (pretty JSON).
pub fn write(path: &Path, har: &Har) -> Result<(), HarError> {
    let text = serde_json::to_string_pretty(har).map_err(|source| HarError::Json {
        path: path.display().to_string(),
        source,
    })?;
    std::fs::write(path, text).map_err(|source| HarError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a HAR file.
pub fn read(path: &Path) -> Result<Har, HarError> {
    let text = std::fs::read_to_string(path).map_err(|source| HarError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| HarError::Json {
        path: path.display().to_string(),
        source,
    })
}

/// Windows' ETW HTTP traces cut bodies at 64 KiB.
pub const ETW_BODY_LIMIT: usize = 64 * 1024;

/// A parsed raw HTTP message (request or response).
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Request line or status line.
    pub start_line: String,
    pub headers: Vec<NameValue>,
    pub body: String,
}

/// Parses a raw HTTP message; refuses bodies shorter than their Content-Length or cut
/// at exactly 64 KiB, naming the file.
pub fn parse_raw(path: &Path, bytes: &[u8]) -> Result<RawMessage, HarError> {
    let p = path.display().to_string();
    let raw = |message: String| HarError::Raw {
        path: p.clone(),
        message,
    };
    // Header block ends at the first empty line (CRLF or LF).
    let (head, body): (&[u8], &[u8]) = match find(bytes, b"\r\n\r\n") {
        Some(i) => (&bytes[..i], &bytes[i + 4..]),
        None => match find(bytes, b"\n\n") {
            Some(i) => (&bytes[..i], &bytes[i + 2..]),
            None => (bytes, &[]),
        },
    };
    let head = std::str::from_utf8(head).map_err(|_| raw("header block is not UTF-8".into()))?;
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
    let start_line = lines
        .next()
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| raw("empty file: no request or status line".into()))?
        .trim()
        .to_string();
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| raw(format!("header line without a colon: {l:?}")))?;
        headers.push(NameValue {
            name: n.trim().to_string(),
            value: v.trim().to_string(),
        });
    }
    let mut body = body.to_vec();
    if let Some(cl) = header(&headers, "content-length") {
        let want: usize = cl
            .trim()
            .parse()
            .map_err(|_| raw(format!("Content-Length {cl:?} is not a number")))?;
        if body.len() < want {
            return Err(HarError::Truncated {
                path: p,
                message: format!(
                    "Content-Length is {want} bytes but the file holds only {} body bytes",
                    body.len()
                ),
            });
        }
        // Extra trailing bytes are the dump's final newline(s).
        if body[want..].iter().all(|b| b.is_ascii_whitespace()) {
            body.truncate(want);
        }
    }
    if body.len() == ETW_BODY_LIMIT {
        return Err(HarError::Truncated {
            path: p,
            message: format!(
                "the body is exactly {ETW_BODY_LIMIT} bytes, the limit at which Windows' ETW traces cut bodies; capture it another way"
            ),
        });
    }
    let body = String::from_utf8(body).map_err(|_| raw("body is not UTF-8".into()))?;
    Ok(RawMessage {
        start_line,
        headers,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The step a request belongs to, guessed from its method and path.
pub fn step_for(method: &str, url: &str) -> &'static str {
    let path = url.to_ascii_lowercase();
    if path.contains("/orbit/enroll") {
        "orbit_enroll"
    } else if path.contains("/orbit/config") {
        "orbit_config"
    } else if path.contains("discovery") {
        if method.eq_ignore_ascii_case("GET") {
            "discovery_probe"
        } else {
            "discover"
        }
    } else if path.contains("policy") || path.contains("enrollmentpolicy") {
        "get_policies"
    } else if path.contains("management") || path.contains("omadm") {
        "management_session"
    } else if path.contains("enroll") {
        "request_security_token"
    } else {
        "raw"
    }
}

/// Builds a one-entry HAR from a raw request dump and, optionally, its recorded response.
pub fn import_raw(request: &Path, response: Option<&Path>) -> Result<Har, HarError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| HarError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    let req = parse_raw(request, &read(request)?)?;
    let mut parts = req.start_line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => {
            return Err(HarError::Raw {
                path: request.display().to_string(),
                message: format!("not a request line: {:?}", req.start_line),
            })
        }
    };
    let url = if target.starts_with("http://") || target.starts_with("https://") {
        target
    } else {
        let host = header(&req.headers, "host").unwrap_or_else(|| "localhost".into());
        format!("https://{host}{target}")
    };
    let resp = match response {
        Some(p) => Some(parse_raw(p, &read(p)?)?),
        None => None,
    };
    let (status, resp_headers, resp_body) = match &resp {
        Some(r) => {
            let status = r
                .start_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| HarError::Raw {
                    path: response
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    message: format!("not a status line: {:?}", r.start_line),
                })?;
            (status, r.headers.clone(), r.body.clone())
        }
        None => (0, Vec::new(), String::new()),
    };
    let step = step_for(&method, &url);
    let entry = Entry {
        pageref: None,
        started_date_time: rfc3339(time::OffsetDateTime::now_utc()),
        time: 0.0,
        request: Request {
            query_string: query_of(&url),
            method: method.clone(),
            url,
            http_version: "HTTP/1.1".into(),
            cookies: Vec::new(),
            post_data: (!req.body.is_empty()).then(|| PostData {
                mime_type: header(&req.headers, "content-type").unwrap_or_default(),
                text: req.body.clone(),
            }),
            headers: req.headers,
            headers_size: -1,
            body_size: req.body.len() as i64,
        },
        response: Response {
            status,
            status_text: status_text(status),
            http_version: if resp.is_some() {
                "HTTP/1.1".into()
            } else {
                String::new()
            },
            cookies: Vec::new(),
            content: Content {
                size: resp_body.len() as i64,
                mime_type: header(&resp_headers, "content-type").unwrap_or_default(),
                text: resp_body,
            },
            headers: resp_headers,
            redirect_url: String::new(),
            headers_size: -1,
            body_size: -1,
        },
        cache: serde_json::json!({}),
        timings: Timings::default(),
        comment: Some(format!("imported from {}", request.display())),
        scenario: None,
        step: Some(step.to_string()),
        client_certificate: None,
        error: resp
            .is_none()
            .then(|| "no recorded response (request only)".to_string()),
    };
    Ok(Har {
        log: Log {
            version: "1.2".into(),
            creator: Creator {
                name: "winmdm".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            pages: Vec::new(),
            entries: vec![entry],
        },
    })
}

/// The response dump next to a request dump: `x-request.http` → `x-response.http`.
pub fn sibling_response(request: &Path) -> Option<std::path::PathBuf> {
    let name = request.file_name()?.to_str()?;
    let other = name.replace("request", "response");
    if other == name {
        return None;
    }
    let p = request.with_file_name(other);
    p.is_file().then_some(p)
}

/// Concatenates several HARs' entries into one.
pub fn merge(hars: Vec<Har>) -> Har {
    let mut out = Har {
        log: Log {
            version: "1.2".into(),
            creator: Creator {
                name: "winmdm".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            pages: Vec::new(),
            entries: Vec::new(),
        },
    };
    for h in hars {
        out.log.pages.extend(h.log.pages);
        out.log.entries.extend(h.log.entries);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_vector_parses() {
        let p = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/vectors/mde2-discover-get-request.http"
        ));
        let h = import_raw(p, sibling_response(p).as_deref()).unwrap();
        let e = &h.log.entries[0];
        assert_eq!(e.request.method, "GET");
        assert_eq!(
            e.request.url,
            "https://EnterpriseEnrollment.contoso.com/EnrollmentServer/Discovery.svc"
        );
        assert_eq!(e.response.status, 200);
        assert_eq!(e.step.as_deref(), Some("discovery_probe"));
    }

    #[test]
    fn truncated_bodies_are_named() {
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc";
        let e = parse_raw(Path::new("x.http"), short).unwrap_err();
        assert!(matches!(e, HarError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("Content-Length is 100"), "{e}");
        let mut cut = b"POST /x HTTP/1.1\n\n".to_vec();
        cut.extend(vec![b'a'; ETW_BODY_LIMIT]);
        let e = parse_raw(Path::new("y.http"), &cut).unwrap_err();
        assert!(e.to_string().contains("65536"), "{e}");
    }
}
