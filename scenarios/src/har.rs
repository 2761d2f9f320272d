//! HAR 1.2 capture of a run (every HTTP exchange the emulated devices made), and reading
//! HAR files written by others (browser developer tools, mitmproxy, Fiddler, Charles):
//! fields they leave out take HAR's defaults, base64 `content.encoding` is decoded.
//! Raw dumps are imported by [`crate::dump`].
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
    #[serde(default)]
    pub started_date_time: String,
    #[serde(default)]
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
    #[serde(default)]
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
    #[serde(default)]
    pub content: Content,
    #[serde(rename = "redirectURL", default)]
    pub redirect_url: String,
    #[serde(default = "minus_one")]
    pub headers_size: i64,
    #[serde(default = "minus_one")]
    pub body_size: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub mime_type: String,
    #[serde(default)]
    pub text: String,
    /// `base64` when `text` is encoded (HAR 1.2 §content; browsers and mitmproxy do so
    /// for bodies they consider binary). [`read`] decodes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
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
    #[error("{path}: entry {index}: content.encoding {encoding:?} is not base64 of UTF-8 text")]
    Encoding {
        path: String,
        index: usize,
        encoding: String,
    },
}

pub(crate) fn header(headers: &[NameValue], name: &str) -> Option<String> {
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

pub(crate) fn status_text(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
        .to_string()
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
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
                encoding: None,
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
    parse(path, &text)
}

/// Parses HAR text (`path` names it in errors); base64 response contents are decoded.
pub fn parse(path: &Path, text: &str) -> Result<Har, HarError> {
    use base64::Engine;
    let mut har: Har = serde_json::from_str(text).map_err(|source| HarError::Json {
        path: path.display().to_string(),
        source,
    })?;
    for (index, e) in har.log.entries.iter_mut().enumerate() {
        let c = &mut e.response.content;
        let Some(encoding) = c.encoding.take() else {
            continue;
        };
        if !encoding.eq_ignore_ascii_case("base64") {
            return Err(HarError::Encoding {
                path: path.display().to_string(),
                index,
                encoding,
            });
        }
        let compact: String = c.text.chars().filter(|ch| !ch.is_whitespace()).collect();
        c.text = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| HarError::Encoding {
                path: path.display().to_string(),
                index,
                encoding,
            })?;
    }
    Ok(har)
}

/// An empty HAR written by this harness.
pub fn empty() -> Har {
    Har {
        log: Log {
            version: "1.2".into(),
            creator: Creator {
                name: "winmdm".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            pages: Vec::new(),
            entries: Vec::new(),
        },
    }
}

/// Concatenates several HARs' entries into one.
pub fn merge(hars: Vec<Har>) -> Har {
    let mut out = empty();
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
    fn a_browser_har_with_base64_content_and_missing_fields_reads() {
        let text = r#"{"log":{"version":"1.2","creator":{"name":"Firefox","version":"128"},"entries":[
            {"startedDateTime":"2024-05-01T10:00:00Z","request":{"method":"POST","url":"https://a.example/d",
              "headers":[{"name":":authority","value":"a.example"}],"postData":{"mimeType":"application/soap+xml","text":"<x/>"}},
             "response":{"status":200,"content":{"mimeType":"application/soap+xml","encoding":"base64","text":"PHkvPg=="}}}]}}"#;
        let h = parse(Path::new("browser.har"), text).unwrap();
        let e = &h.log.entries[0];
        assert_eq!(e.response.content.text, "<y/>");
        assert_eq!(e.response.content.encoding, None);
        assert_eq!(e.request.post_data.as_ref().unwrap().text, "<x/>");
        let bad = text.replace("PHkvPg==", "not base64!");
        let err = parse(Path::new("browser.har"), &bad).unwrap_err();
        assert!(err.to_string().contains("entry 0"), "{err}");
    }
}
