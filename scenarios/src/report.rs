//! Terminal output of a run.

use std::io::Write;

use crate::runner::{ScenarioOutcome, Verdict};

/// Prints one scenario's steps with pass/fail/skip and time.
pub fn print_scenario(out: &mut impl Write, o: &ScenarioOutcome) {
    let _ = writeln!(out, "scenario {}", o.name);
    for s in &o.steps {
        let mark = match s.verdict {
            Verdict::Passed => "ok  ",
            Verdict::Failed => "FAIL",
            Verdict::Skipped => "skip",
        };
        let _ = writeln!(
            out,
            "  {mark} {:<32} {:>8.1} ms  {}",
            s.name,
            s.elapsed.as_secs_f64() * 1000.0,
            s.detail
        );
        for w in &s.warnings {
            let _ = writeln!(out, "       warn {}: {}", w.check, w.detail);
        }
    }
    let (verdict, why) = match o.verdict() {
        Verdict::Passed => ("PASS", String::new()),
        Verdict::Failed => ("FAIL", String::new()),
        Verdict::Skipped => ("SKIP", format!(": {}", o.skipped.as_deref().unwrap_or(""))),
    };
    let _ = writeln!(
        out,
        "{verdict} {} ({:.2} s){why}\n",
        o.name,
        o.elapsed.as_secs_f64()
    );
}

/// How many scenarios passed, failed and were skipped.
pub fn counts(outcomes: &[&ScenarioOutcome]) -> (usize, usize, usize) {
    let n = |v: Verdict| outcomes.iter().filter(|o| o.verdict() == v).count();
    (n(Verdict::Passed), n(Verdict::Failed), n(Verdict::Skipped))
}

/// Prints the closing summary line: `scenarios: N passed, M failed, K skipped` (CI log
/// parsers read the `N passed, M failed` part).
pub fn print_summary(out: &mut impl Write, outcomes: &[ScenarioOutcome]) {
    let (passed, failed, skipped) = counts(&outcomes.iter().collect::<Vec<_>>());
    let warnings: usize = outcomes
        .iter()
        .flat_map(|o| &o.steps)
        .map(|s| s.warnings.len())
        .sum();
    if warnings > 0 {
        // Warnings never change a verdict or the exit status.
        let _ = writeln!(
            out,
            "warnings: {warnings} tolerated deviation(s) from the documents (docs/conformance.md)"
        );
    }
    let _ = writeln!(
        out,
        "scenarios: {passed} passed, {failed} failed, {skipped} skipped"
    );
}

pub mod canon;

/// One scenario as run: where it came from, when it started, what happened.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The scenario file (its stem is the JUnit classname).
    pub file: std::path::PathBuf,
    /// Wall-clock start of the scenario.
    pub started: time::OffsetDateTime,
    pub outcome: ScenarioOutcome,
}

impl Ran {
    /// The scenario file's stem, or the scenario name when there is no file.
    pub fn file_stem(&self) -> String {
        self.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.outcome.name.clone())
    }
}

/// Escapes text for XML/HTML content and attribute values; characters XML 1.0 forbids
/// become U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A name reduced to `[a-z0-9-]`, usable in ids and file names.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let t = out.trim_matches('-');
    if t.is_empty() {
        "scenario".into()
    } else {
        t.to_string()
    }
}

/// The terminal log of one scenario's steps, as plain text.
pub fn step_log(o: &ScenarioOutcome) -> String {
    let mut out = Vec::new();
    print_scenario(&mut out, o);
    String::from_utf8_lossy(&out).into_owned()
}

/// Pretty-prints XML (one element per line); other text is returned unchanged.
pub fn pretty_body(body: &str) -> String {
    let t = body.trim_start();
    if t.starts_with('<') {
        let mut reader = quick_xml::Reader::from_str(body);
        reader.config_mut().trim_text(true);
        let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(e) => {
                    if writer.write_event(e).is_err() {
                        return body.to_string();
                    }
                }
                Err(_) => return body.to_string(),
            }
        }
        return String::from_utf8_lossy(&writer.into_inner()).into_owned();
    }
    if t.starts_with('{') || t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
            if let Ok(p) = serde_json::to_string_pretty(&v) {
                return p;
            }
        }
    }
    body.to_string()
}
