//! Import of the HTTP dumps people have into a HAR: HAR files themselves (browser
//! developer tools, mitmproxy, Fiddler, Charles), raw request and response files
//! (`*.http`), and logs holding several exchanges one after the other, as Go's
//! `httputil.DumpRequest` / `DumpResponse` print them (a `log` timestamp before a start
//! line is ignored). HTTP/2 start lines (`POST /x HTTP/2`, `HTTP/2 200`) and HTTP/2
//! pseudo-header blocks (`:method`, `:path`, `:authority`, `:status`) are read too.
//!
//! Bodies are checked against their Content-Length: shorter is a truncated dump and
//! refused; longer with more than whitespace is what a logger does when it re-indents a
//! body, so the body is used as dumped and a warning says so.

use std::path::{Path, PathBuf};

use crate::har::{self, Content, Entry, Har, HarError, NameValue, PostData, Request, Response};

/// Windows' ETW HTTP traces cut bodies at 64 KiB.
pub const ETW_BODY_LIMIT: usize = 64 * 1024;

/// A parsed raw HTTP message (request or response).
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Request line or status line (synthesised from HTTP/2 pseudo-headers if needed).
    pub start_line: String,
    pub headers: Vec<NameValue>,
    pub body: String,
}

/// An imported capture and what was noticed on the way.
#[derive(Debug, Clone)]
pub struct Imported {
    pub har: Har,
    /// Tolerated oddities (a reformatted body, a response without a request).
    pub warnings: Vec<String>,
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];

/// A Go `log` prefix (`2024/05/01 10:00:00 ` or with microseconds) at the line start.
fn strip_log_prefix(line: &str) -> &str {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let dated = b.len() > 20
        && digits(0..4)
        && b[4] == b'/'
        && digits(5..7)
        && b[7] == b'/'
        && digits(8..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !dated {
        return line;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    line[i..].trim_start()
}

fn is_http_version(v: &str) -> bool {
    v.strip_prefix("HTTP/")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// `METHOD target HTTP/x`, `HTTP/x NNN ...`, or the first line of an HTTP/2
/// pseudo-header block.
fn is_start_line(line: &str) -> bool {
    let mut parts = line.split_whitespace();
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    match (a, b, c) {
        (Some(m), Some(_), Some(v)) if METHODS.contains(&m) && is_http_version(v) => true,
        (Some(v), Some(s), _) if is_http_version(v) => {
            s.len() == 3 && s.chars().all(|c| c.is_ascii_digit())
        }
        _ => line.starts_with(":method:") || line.starts_with(":status:"),
    }
}

/// Parses a header line; HTTP/2 pseudo-headers keep their leading colon.
fn header_line(l: &str) -> Option<NameValue> {
    let (name, value) = match l.strip_prefix(':') {
        Some(rest) => {
            let (n, v) = rest.split_once(':')?;
            (format!(":{}", n.trim()), v)
        }
        None => {
            let (n, v) = l.split_once(':')?;
            (n.trim().to_string(), v)
        }
    };
    Some(NameValue {
        name,
        value: value.trim().to_string(),
    })
}

/// Parses a raw HTTP message, dropping warnings (see [`parse_raw_with`]).
pub fn parse_raw(path: &Path, bytes: &[u8]) -> Result<RawMessage, HarError> {
    parse_raw_with(path, bytes, &mut Vec::new())
}

/// Parses one raw HTTP message; refuses bodies shorter than their Content-Length or cut
/// at exactly 64 KiB, naming the file; a body longer than its Content-Length (more than
/// trailing whitespace) is kept whole with a warning.
pub fn parse_raw_with(
    path: &Path,
    bytes: &[u8],
    warnings: &mut Vec<String>,
) -> Result<RawMessage, HarError> {
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
    let mut lines = head
        .lines()
        .map(|l| strip_log_prefix(l.trim_end_matches('\r')))
        .filter(|l| !l.trim().is_empty())
        .peekable();
    let first = lines
        .peek()
        .ok_or_else(|| raw("empty file: no request or status line".into()))?
        .trim()
        .to_string();
    let pseudo_block = first.starts_with(':');
    if !pseudo_block {
        lines.next();
    }
    let mut headers = Vec::new();
    for l in lines {
        headers.push(
            header_line(l).ok_or_else(|| raw(format!("header line without a colon: {l:?}")))?,
        );
    }
    let start_line = if pseudo_block {
        let pseudo = |n: &str| har::header(&headers, n);
        match (pseudo(":method"), pseudo(":path"), pseudo(":status")) {
            (Some(m), Some(path), _) => format!("{m} {path} HTTP/2"),
            (_, _, Some(s)) => format!("HTTP/2 {s}"),
            _ => return Err(raw(format!("not a request or status line: {first:?}"))),
        }
    } else {
        first
    };
    let mut body = body.to_vec();
    if let Some(cl) = har::header(&headers, "content-length") {
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
        if body[want..].iter().all(|b| b.is_ascii_whitespace()) {
            // Extra trailing bytes are the dump's final newline(s).
            body.truncate(want);
        } else {
            while body.last().is_some_and(|b| b.is_ascii_whitespace()) {
                body.pop();
            }
            warnings.push(format!(
                "{p}: {start_line}: the body is {} bytes but Content-Length says {want}: a logger reformatted it (re-indented XML?); the body is used as dumped",
                body.len()
            ));
        }
    } else {
        while matches!(body.last(), Some(b'\n' | b'\r')) {
            body.pop();
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

/// Splits a dump into its messages: each begins at a start line (an HTTP/2
/// pseudo-header block after a blank line). Go `log` lines that are not start lines are
/// log noise between messages and dropped.
fn split_messages(text: &str) -> Vec<String> {
    let mut messages: Vec<String> = Vec::new();
    let mut previous_blank = true;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        let stripped = strip_log_prefix(bare);
        let logged = stripped.len() != bare.len();
        let start = is_start_line(stripped.trim())
            && (previous_blank || !stripped.trim_start().starts_with(':'));
        if start {
            messages.push(format!("{stripped}{}", &line[bare.len()..]));
        } else if !logged {
            if let Some(m) = messages.last_mut() {
                m.push_str(line);
            }
        }
        previous_blank = bare.trim().is_empty();
    }
    messages
}

/// The request's absolute URL: the target itself, or `https://` + Host (or the HTTP/2
/// `:authority`) + target.
fn url_of(target: &str, headers: &[NameValue]) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        return target.to_string();
    }
    let host = har::header(headers, "host")
        .or_else(|| har::header(headers, ":authority"))
        .unwrap_or_else(|| "localhost".into());
    let scheme = har::header(headers, ":scheme").unwrap_or_else(|| "https".into());
    format!("{scheme}://{host}{target}")
}

fn http_version(start: &str, request: bool) -> String {
    let v = if request {
        start.split_whitespace().nth(2)
    } else {
        start.split_whitespace().next()
    };
    v.unwrap_or("HTTP/1.1").to_string()
}

fn entry(path: &Path, req: &RawMessage, resp: Option<&RawMessage>) -> Result<Entry, HarError> {
    let mut parts = req.start_line.split_whitespace();
    let (method, target) = match (parts.next(), parts.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => {
            return Err(HarError::Raw {
                path: path.display().to_string(),
                message: format!("not a request line: {:?}", req.start_line),
            })
        }
    };
    let url = url_of(&target, &req.headers);
    let status = match resp {
        Some(r) => r
            .start_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HarError::Raw {
                path: path.display().to_string(),
                message: format!("not a status line: {:?}", r.start_line),
            })?,
        None => 0,
    };
    let (resp_headers, resp_body) = resp
        .map(|r| (r.headers.clone(), r.body.clone()))
        .unwrap_or_default();
    let step = step_for(&method, &url);
    Ok(Entry {
        pageref: None,
        started_date_time: har::rfc3339(time::OffsetDateTime::now_utc()),
        time: 0.0,
        request: Request {
            query_string: har::query_of(&url),
            method: method.clone(),
            url,
            http_version: http_version(&req.start_line, true),
            cookies: Vec::new(),
            post_data: (!req.body.is_empty()).then(|| PostData {
                mime_type: har::header(&req.headers, "content-type").unwrap_or_default(),
                text: req.body.clone(),
            }),
            headers: req.headers.clone(),
            headers_size: -1,
            body_size: req.body.len() as i64,
        },
        response: Response {
            status,
            status_text: har::status_text(status),
            http_version: resp
                .map(|r| http_version(&r.start_line, false))
                .unwrap_or_default(),
            cookies: Vec::new(),
            content: Content {
                size: resp_body.len() as i64,
                mime_type: har::header(&resp_headers, "content-type").unwrap_or_default(),
                text: resp_body,
                encoding: None,
            },
            headers: resp_headers,
            redirect_url: String::new(),
            headers_size: -1,
            body_size: -1,
        },
        cache: serde_json::json!({}),
        timings: har::Timings::default(),
        comment: Some(format!("imported from {}", path.display())),
        scenario: None,
        step: Some(step.to_string()),
        client_certificate: None,
        error: resp
            .is_none()
            .then(|| "no recorded response (request only)".to_string()),
    })
}

/// The step a request belongs to, guessed from its method and path (a label for
/// reports; replay by role reads the content, see `replay::role`).
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

fn read_bytes(p: &Path) -> Result<Vec<u8>, HarError> {
    std::fs::read(p).map_err(|source| HarError::Io {
        path: p.display().to_string(),
        source,
    })
}

/// Imports any supported dump: a HAR (JSON), or raw HTTP messages, one or several per
/// file. A file holding a single request takes its response from `response` when given.
pub fn import_file(path: &Path, response: Option<&Path>) -> Result<Imported, HarError> {
    let bytes = read_bytes(path)?;
    let text = String::from_utf8_lossy(&bytes);
    if text.trim_start().starts_with('{') {
        return Ok(Imported {
            har: har::parse(path, &text)?,
            warnings: Vec::new(),
        });
    }
    let mut warnings = Vec::new();
    let mut messages = Vec::new();
    let chunks = split_messages(&text);
    if chunks.len() <= 1 {
        // One message: its bytes as they are (the body need not be UTF-8 lines).
        messages.push(parse_raw_with(path, &bytes, &mut warnings)?);
    } else {
        for c in &chunks {
            messages.push(parse_raw_with(path, c.as_bytes(), &mut warnings)?);
        }
    }
    let mut pairs: Vec<(RawMessage, Option<RawMessage>)> = Vec::new();
    for m in messages {
        let is_response = is_http_version(m.start_line.split_whitespace().next().unwrap_or(""));
        if !is_response {
            pairs.push((m, None));
            continue;
        }
        match pairs.last_mut() {
            Some((_, slot @ None)) => *slot = Some(m),
            _ => warnings.push(format!(
                "{}: response {:?} follows no request; ignored",
                path.display(),
                m.start_line
            )),
        }
    }
    if let ([(_, slot @ None)], Some(r)) = (pairs.as_mut_slice(), response) {
        *slot = Some(parse_raw_with(r, &read_bytes(r)?, &mut warnings)?);
    }
    if pairs.is_empty() {
        return Err(HarError::Raw {
            path: path.display().to_string(),
            message: "no HTTP request in the file".into(),
        });
    }
    let mut har = har::empty();
    for (req, resp) in &pairs {
        har.log.entries.push(entry(path, req, resp.as_ref())?);
    }
    Ok(Imported { har, warnings })
}

/// Builds a one-entry HAR from a raw request dump and, optionally, its recorded response.
pub fn import_raw(request: &Path, response: Option<&Path>) -> Result<Har, HarError> {
    import_file(request, response).map(|i| i.har)
}

/// The response dump next to a request dump: `x-request.http` → `x-response.http`.
pub fn sibling_response(request: &Path) -> Option<PathBuf> {
    let name = request.file_name()?.to_str()?;
    let other = name.replace("request", "response");
    if other == name {
        return None;
    }
    let p = request.with_file_name(other);
    p.is_file().then_some(p)
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

    #[test]
    fn a_reformatted_body_is_used_with_a_warning() {
        let dumped = b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n<a>\n  <b/>\n</a>\n";
        let mut w = Vec::new();
        let m = parse_raw_with(Path::new("log.txt"), dumped, &mut w).unwrap();
        assert_eq!(m.body, "<a>\n  <b/>\n</a>");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("reformatted"), "{w:?}");
    }

    #[test]
    fn a_go_log_with_several_exchanges_and_http2_lines_splits() {
        let log = "2024/05/01 10:00:00 POST /EnrollmentServer/Discovery.svc HTTP/2\nHost: a.example\nContent-Length: 5\n\nhello\n\n2024/05/01 10:00:00.123 HTTP/2 200\nContent-Type: text/plain\n\nok\n\n2024/05/01 10:00:01 unrelated log line\n\nGET /x HTTP/1.1\nHost: a.example\n\n";
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("server.log");
        std::fs::write(&f, log).unwrap();
        let i = import_file(&f, None).unwrap();
        let e = &i.har.log.entries;
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0].request.url,
            "https://a.example/EnrollmentServer/Discovery.svc"
        );
        assert_eq!(e[0].request.http_version, "HTTP/2");
        assert_eq!(e[0].request.post_data.as_ref().unwrap().text, "hello");
        assert_eq!(e[0].response.status, 200);
        assert_eq!(e[0].response.content.text, "ok");
        assert_eq!(e[1].request.method, "GET");
        assert_eq!(e[1].response.status, 0);
        let h2 = b":method: POST\n:path: /p\n:authority: b.example\n:scheme: https\n\nbody";
        let m = parse_raw(Path::new("h2"), h2).unwrap();
        assert_eq!(m.start_line, "POST /p HTTP/2");
        assert_eq!(url_of("/p", &m.headers), "https://b.example/p");
    }
}
