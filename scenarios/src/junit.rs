//! JUnit XML report: one `testsuite` per run, one `testcase` per scenario (classname =
//! scenario file stem), a `failure` naming the failing step with the step log as text,
//! or `skipped` with the reason when the target lacks a capability the scenario needs.

use std::fmt::Write;

use crate::report::{counts, step_log, xml_escape, Ran};
use crate::runner::Verdict;

/// Renders the JUnit XML document of a run.
pub fn render(suite_name: &str, ran: &[Ran]) -> String {
    let tests = ran.len();
    let (_, failures, skipped) = counts(&ran.iter().map(|r| &r.outcome).collect::<Vec<_>>());
    let time: f64 = ran.iter().map(|r| r.outcome.elapsed.as_secs_f64()).sum();
    let timestamp = ran
        .first()
        .and_then(|r| {
            r.started
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let mut x = String::new();
    let _ = writeln!(x, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        x,
        r#"<testsuites name="{n}" tests="{tests}" failures="{failures}" errors="0" skipped="{skipped}" time="{time:.3}">"#,
        n = xml_escape(suite_name)
    );
    let _ = writeln!(
        x,
        r#"  <testsuite name="{n}" tests="{tests}" failures="{failures}" errors="0" skipped="{skipped}" time="{time:.3}" timestamp="{ts}">"#,
        n = xml_escape(suite_name),
        ts = xml_escape(&timestamp)
    );
    for r in ran {
        let o = &r.outcome;
        let _ = write!(
            x,
            r#"    <testcase classname="{c}" name="{n}" time="{t:.3}""#,
            c = xml_escape(&r.file_stem()),
            n = xml_escape(&o.name),
            t = o.elapsed.as_secs_f64()
        );
        let failed = o.steps.iter().position(|s| s.verdict == Verdict::Failed);
        match failed {
            None => {
                let _ = writeln!(x, ">");
                if let Some(why) = o
                    .skipped
                    .as_deref()
                    .filter(|_| o.verdict() == Verdict::Skipped)
                {
                    let _ = writeln!(x, r#"      <skipped message="{}"/>"#, xml_escape(why));
                }
                let _ = writeln!(
                    x,
                    "      <system-out>{}</system-out>",
                    xml_escape(&step_log(o))
                );
                let _ = writeln!(x, "    </testcase>");
            }
            Some(i) => {
                let s = &o.steps[i];
                let _ = writeln!(x, ">");
                let _ = writeln!(
                    x,
                    r#"      <failure message="step {n} {name}: {detail}" type="{name}">{log}</failure>"#,
                    n = i + 1,
                    name = xml_escape(s.name),
                    detail = xml_escape(&s.detail),
                    log = xml_escape(&step_log(o))
                );
                let _ = writeln!(x, "    </testcase>");
            }
        }
    }
    let _ = writeln!(x, "  </testsuite>");
    let _ = writeln!(x, "</testsuites>");
    x
}
