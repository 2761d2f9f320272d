//! Self-contained HTML report: per scenario an inline-SVG sequence diagram (Windows,
//! Orbit, server, admin; one arrow or note per step, the failed step in red) and the
//! step log with every request/response in a `<details>` element. No scripts, no
//! external assets.

use std::fmt::Write;

use crate::report::{pretty_body, slug, xml_escape as esc, Ran};
use crate::runner::{StepOutcome, Verdict};

const PARTICIPANTS: [&str; 4] = ["Windows", "Orbit", "server", "admin"];
const COL_X: [u32; 4] = [110, 300, 500, 680];
const WIDTH: u32 = 790;
const TOP: u32 = 70;
const ROW: u32 = 38;

/// How a step appears in the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An arrow between two participants (indexes into Windows, Orbit, server, admin).
    Arrow { from: usize, to: usize },
    /// A note over one participant.
    Note { over: usize },
}

/// Maps a step name to its arrow or note of the enrollment sequence diagram.
pub fn shape(step: &str) -> Shape {
    match step {
        "orbit_enroll" | "orbit_config" => Shape::Arrow { from: 1, to: 2 },
        "register_device_with_management" => Shape::Arrow { from: 1, to: 0 },
        "discovery_probe"
        | "discover"
        | "get_policies"
        | "request_security_token"
        | "management_session" => Shape::Arrow { from: 0, to: 2 },
        "queue_command" | "create_profile" | "assign_profile" | "server_unenroll" => {
            Shape::Arrow { from: 3, to: 2 }
        }
        "generate_key_pair" | "verify_certificate" | "check_device_state" => {
            Shape::Note { over: 0 }
        }
        "check_command_result" | "check_profile" => Shape::Note { over: 3 },
        _ => Shape::Note { over: 2 },
    }
}

/// Path of a URL, without scheme and authority.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.find('/').map(|i| &rest[i..]).unwrap_or("/")
}

fn label(n: usize, s: &StepOutcome) -> String {
    let mut l = format!("{n}. {}", s.name);
    if s.verdict == Verdict::Skipped {
        l.push_str(" (skipped)");
    }
    if let Some(ex) = s.exchanges.first() {
        let path = url_path(&ex.url);
        let path = path.split('?').next().unwrap_or(path);
        l.push_str(&format!(" — {} {path}", ex.method));
        let statuses: Vec<String> = s
            .exchanges
            .iter()
            .map(|e| {
                e.status
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "—".into())
            })
            .collect();
        if statuses.len() > 3 {
            l.push_str(&format!(
                " ({} exchanges, last {})",
                statuses.len(),
                statuses.last().map(String::as_str).unwrap_or("")
            ));
        } else {
            l.push_str(&format!(" → {}", statuses.join(", ")));
        }
    }
    l
}

fn diagram(out: &mut String, id: &str, r: &Ran) {
    let steps = &r.outcome.steps;
    let height = TOP + ROW * steps.len() as u32 + 30;
    let _ = writeln!(
        out,
        r#"<svg class="sequence" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="sequence diagram of {name}">"#,
        name = esc(&r.outcome.name)
    );
    let _ = writeln!(
        out,
        r##"<defs><marker id="ah-{id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker><marker id="ahf-{id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/></marker></defs>"##
    );
    for (i, p) in PARTICIPANTS.iter().enumerate() {
        let x = COL_X[i];
        let _ = writeln!(
            out,
            r##"<g class="participant"><rect x="{rx}" y="10" width="120" height="30" rx="4" fill="#eef2f7" stroke="#567"/><text x="{x}" y="30" text-anchor="middle">{p}</text><line x1="{x}" y1="40" x2="{x}" y2="{y2}" stroke="#99a" stroke-dasharray="4 4"/></g>"##,
            rx = x - 60,
            y2 = height - 10
        );
    }
    for (i, s) in steps.iter().enumerate() {
        let n = i + 1;
        let y = TOP + ROW * i as u32 + 14;
        let state = s.verdict.word();
        let failed = s.verdict == Verdict::Failed;
        let color = match s.verdict {
            Verdict::Passed => "#333",
            Verdict::Failed => "#c0392b",
            Verdict::Skipped => "#999",
        };
        let text = esc(&label(n, s));
        let _ = write!(
            out,
            r##"<a href="#log-{id}-{n}"><g id="step-{id}-{n}" class="step {state}" data-step="{name}"><title>{title}</title>"##,
            name = esc(s.name),
            title = esc(&format!("{}: {}", s.name, s.detail))
        );
        match shape(s.name) {
            Shape::Arrow { from, to } => {
                let (x1, x2) = (COL_X[from], COL_X[to]);
                let marker = if failed { "ahf" } else { "ah" };
                let dash = if s.verdict == Verdict::Skipped {
                    r#" stroke-dasharray="3 3""#
                } else {
                    ""
                };
                let mid = (x1 + x2) / 2;
                let _ = write!(
                    out,
                    r##"<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" stroke-width="{w}"{dash} marker-end="url(#{marker}-{id})"/><text x="{mid}" y="{ty}" text-anchor="middle" fill="{color}">{text}</text>"##,
                    w = if failed { 2.5 } else { 1.5 },
                    ty = y - 5
                );
            }
            Shape::Note { over } => {
                // Centred over the participant, kept inside the drawing.
                let x = COL_X[over].clamp(102, WIDTH - 102);
                let fill = match s.verdict {
                    Verdict::Passed => "#fff8c4",
                    Verdict::Failed => "#f8d7d3",
                    Verdict::Skipped => "#eeeeee",
                };
                let _ = write!(
                    out,
                    r##"<rect x="{rx}" y="{ry}" width="200" height="24" fill="{fill}" stroke="{color}"/><text x="{x}" y="{ty}" text-anchor="middle" fill="{color}">{text}</text>"##,
                    rx = x.saturating_sub(100),
                    ry = y - 16,
                    ty = y
                );
            }
        }
        let _ = writeln!(out, "</g></a>");
    }
    let _ = writeln!(out, "</svg>");
}

fn headers_text(h: &[(String, String)]) -> String {
    h.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn step_log(out: &mut String, id: &str, n: usize, s: &StepOutcome) {
    let state = s.verdict.word();
    let mark = match s.verdict {
        Verdict::Passed => "ok",
        Verdict::Failed => "FAIL",
        Verdict::Skipped => "skip",
    };
    let _ = writeln!(
        out,
        r#"<li class="step-log {state}" id="log-{id}-{n}"><div class="head"><span class="mark">{mark}</span> <b>{n}. {name}</b> <span class="ms">{ms:.1} ms</span></div><div class="detail">{detail}</div>"#,
        name = esc(s.name),
        ms = s.elapsed.as_secs_f64() * 1000.0,
        detail = esc(&s.detail)
    );
    if let Some(c) = &s.client_cert {
        let _ = writeln!(
            out,
            r#"<div class="cert">client certificate: <code class="thumbprint">{}</code></div>"#,
            esc(c)
        );
    }
    for w in &s.warnings {
        let _ = writeln!(
            out,
            r#"<div class="warn">warning <code>{}</code>: {}</div>"#,
            esc(w.check),
            esc(&w.detail)
        );
    }
    for (k, ex) in s.exchanges.iter().enumerate() {
        let status = ex
            .status
            .map(|c| c.to_string())
            .unwrap_or_else(|| "no response".into());
        let _ = writeln!(
            out,
            r#"<details class="exchange" id="ex-{id}-{n}-{k}"><summary><code>{m} {u}</code> → <b>{status}</b></summary>"#,
            m = esc(&ex.method),
            u = esc(&ex.url),
            k = k + 1
        );
        if let Some(c) = &s.client_cert {
            let _ = writeln!(
                out,
                r#"<div class="cert">TLS client certificate (SHA-1): <code class="thumbprint">{}</code></div>"#,
                esc(c)
            );
        }
        let _ = writeln!(
            out,
            "<h4>Request</h4><pre class=\"headers\">{} {}\n{}</pre><pre class=\"body\">{}</pre>",
            esc(&ex.method),
            esc(&ex.url),
            esc(&headers_text(&ex.request_headers)),
            esc(&pretty_body(&ex.request_body))
        );
        let _ = writeln!(
            out,
            "<h4>Response</h4><pre class=\"headers\">HTTP {}\n{}</pre><pre class=\"body\">{}</pre>",
            esc(&status),
            esc(&headers_text(&ex.response_headers)),
            esc(&pretty_body(&ex.response_body))
        );
        if let Some(e) = &ex.error {
            let _ = writeln!(out, r#"<div class="error">{}</div>"#, esc(e));
        }
        let _ = writeln!(out, "</details>");
    }
    let _ = writeln!(out, "</li>");
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; }
.scenario { border-top: 2px solid #ccd; padding-top: .5em; }
.scenario.failed h2 { color: #c0392b; }
.scenario.skipped h2 { color: #777; }
.verdict.passed { color: #1e7e34; } .verdict.failed { color: #c0392b; } .verdict.skipped { color: #777; }
svg.sequence text { font-size: 11px; font-family: ui-monospace, monospace; }
svg.sequence .participant text { font-size: 13px; font-weight: bold; font-family: system-ui, sans-serif; }
ol.steps { list-style: none; padding: 0; }
.step-log { margin: .4em 0; padding: .3em .6em; border-left: 4px solid #1e7e34; }
.step-log.failed { border-left-color: #c0392b; background: #fdf0ee; }
.step-log .mark { font-weight: bold; } .step-log.failed .mark { color: #c0392b; }
.step-log.skipped { border-left-color: #aaa; background: #f4f4f4; color: #555; }
.ms { color: #777; } .detail { white-space: pre-wrap; } .warn { color: #8a5a00; }
details.exchange { margin: .3em 0 .3em 1em; }
pre { background: #f6f8fa; padding: .5em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.error { color: #c0392b; }
"#;

/// Renders the report.
pub fn render(title: &str, target: &str, ran: &[Ran]) -> String {
    let (passed, failed, skipped) =
        crate::report::counts(&ran.iter().map(|r| &r.outcome).collect::<Vec<_>>());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>",
        t = esc(title)
    );
    let _ = writeln!(
        out,
        r#"<h1>{t}</h1><p class="summary">target <code>{target}</code>: <span class="verdict passed">{passed} passed</span>, <span class="verdict failed">{failed} failed</span>, <span class="verdict skipped">{skipped} skipped</span></p>"#,
        t = esc(title),
        target = esc(target)
    );
    let mut used = std::collections::HashSet::new();
    for r in ran {
        // Ids must be unique even when two scenarios share a name.
        let base = slug(&r.outcome.name);
        let mut id = base.clone();
        let mut k = 2;
        while !used.insert(id.clone()) {
            id = format!("{base}-{k}");
            k += 1;
        }
        let state = r.outcome.verdict().word();
        let verdict = match r.outcome.verdict() {
            Verdict::Passed => "PASS".to_string(),
            Verdict::Failed => "FAIL".to_string(),
            Verdict::Skipped => format!(
                "SKIP: {}",
                esc(r.outcome.skipped.as_deref().unwrap_or_default())
            ),
        };
        let _ = writeln!(
            out,
            r#"<section class="scenario {state}" id="scenario-{id}"><h2>{name} <span class="verdict {state}">{verdict}</span></h2><p class="meta">{file} · {secs:.2} s</p>"#,
            name = esc(&r.outcome.name),
            file = esc(&r.file.display().to_string()),
            secs = r.outcome.elapsed.as_secs_f64()
        );
        diagram(&mut out, &id, r);
        let _ = writeln!(out, r#"<ol class="steps">"#);
        for (i, s) in r.outcome.steps.iter().enumerate() {
            step_log(&mut out, &id, i + 1, s);
        }
        let _ = writeln!(out, "</ol></section>");
    }
    let _ = writeln!(out, "</body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_map_to_the_diagram() {
        assert_eq!(shape("orbit_config"), Shape::Arrow { from: 1, to: 2 });
        assert_eq!(
            shape("register_device_with_management"),
            Shape::Arrow { from: 1, to: 0 }
        );
        assert_eq!(shape("management_session"), Shape::Arrow { from: 0, to: 2 });
        assert_eq!(shape("queue_command"), Shape::Arrow { from: 3, to: 2 });
        assert_eq!(shape("verify_certificate"), Shape::Note { over: 0 });
        assert_eq!(url_path("https://h:1/a/b?x=1"), "/a/b?x=1");
    }
}
