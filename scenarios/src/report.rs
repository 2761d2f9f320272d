//! Terminal output of a run.

use std::io::Write;

use crate::runner::ScenarioOutcome;

/// Prints one scenario's steps with pass/fail and time.
pub fn print_scenario(out: &mut impl Write, o: &ScenarioOutcome) {
    let _ = writeln!(out, "scenario {}", o.name);
    for s in &o.steps {
        let mark = if s.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "  {mark} {:<32} {:>8.1} ms  {}",
            s.name,
            s.elapsed.as_secs_f64() * 1000.0,
            s.detail
        );
    }
    let verdict = if o.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "{verdict} {} ({:.2} s)\n",
        o.name,
        o.elapsed.as_secs_f64()
    );
}

/// Prints the closing summary line: `N passed, M failed`.
pub fn print_summary(out: &mut impl Write, outcomes: &[ScenarioOutcome]) {
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let failed = outcomes.len() - passed;
    let _ = writeln!(out, "scenarios: {passed} passed, {failed} failed");
}
