//! Replays a capture against a server, in one of two ways:
//!
//! - **compare** ([`compare`]): a capture this harness recorded (`winmdm run --capture`:
//!   every entry names its scenario) is re-sent to a fresh server of the same kind and
//!   each response compared with the recorded one;
//! - **by role** ([`foreign`]): any other capture (a real device recorded against some
//!   server) becomes a test of the target: each request's role is read from its content
//!   ([`role`]), it is sent where the target says that role lives, with what must change
//!   adapted ([`adapt`]), and each response is judged by the emulated client's own checks
//!   (their fail and warn levels); the recorded response is shown beside it.

mod adapt;
mod compare;
mod foreign;
pub mod role;

use std::io::Write;

use fake_windows_client::Warning;

use crate::har::{Entry, Har};
use crate::report::canon::Difference;
use crate::target::Target;

/// Whether a captured request header is sent again at all: not an HTTP/2
/// pseudo-header, and not one the connection or the body's framing sets.
fn resendable_header(name: &str) -> bool {
    !name.starts_with(':')
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding" | "accept-encoding"
        )
}

/// Errors that stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Har(#[from] crate::har::HarError),
    #[error("{0}")]
    Client(#[from] fake_windows_client::ClientError),
    #[error("the capture has no entries")]
    Empty,
}

/// How a capture is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Compare when the capture is this harness's own, else by role.
    Auto,
    /// Compare each response with the recorded one.
    Compare,
    /// Send each request by role and judge responses with the client's checks.
    Role,
}

/// The outcome of one replayed exchange.
#[derive(Debug, Clone)]
pub struct ExchangeResult {
    pub index: usize,
    pub step: String,
    pub method: String,
    /// The URL the request was sent to (by role: the target's URL for the role).
    pub url: String,
    pub recorded_status: u16,
    pub replayed_status: Option<u16>,
    /// Compare mode: how the response differs from the recorded one.
    pub differences: Vec<Difference>,
    /// A problem preparing or sending the request.
    pub error: Option<String>,
    /// By role: the fail-level check the response did not pass.
    pub failure: Option<String>,
    /// By role: warn-level checks the response did not pass.
    pub warnings: Vec<Warning>,
    /// By role: what the recorded server answered, for information.
    pub recorded: Option<String>,
    /// By role: why the exchange was not sent.
    pub skipped: Option<String>,
}

impl ExchangeResult {
    pub(crate) fn new(index: usize, step: &str, e: &Entry) -> Self {
        ExchangeResult {
            index,
            step: step.to_string(),
            method: e.request.method.clone(),
            url: e.request.url.clone(),
            recorded_status: e.response.status,
            replayed_status: None,
            differences: Vec::new(),
            error: None,
            failure: None,
            warnings: Vec::new(),
            recorded: None,
            skipped: None,
        }
    }

    pub fn matches(&self) -> bool {
        self.differences.is_empty() && self.error.is_none() && self.failure.is_none()
    }
}

/// All replayed exchanges.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub results: Vec<ExchangeResult>,
    /// Replayed by role (verdicts from the client's checks), not compared.
    pub by_role: bool,
}

impl ReplayReport {
    /// Exchanges whose response differs or failed a check (or that could not be replayed).
    pub fn differing(&self) -> usize {
        self.results.iter().filter(|r| !r.matches()).count()
    }

    /// Prints one line per exchange and, under it, its differences or failed checks.
    pub fn print(&self, out: &mut impl Write) {
        if self.by_role {
            return self.print_by_role(out);
        }
        for r in &self.results {
            let mark = if r.matches() { "ok  " } else { "DIFF" };
            let got = r
                .replayed_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "  {mark} #{:<3} {:<28} {} {} recorded {} replayed {got}",
                r.index + 1,
                r.step,
                r.method,
                r.url,
                r.recorded_status
            );
            if let Some(e) = &r.error {
                let _ = writeln!(out, "         {e}");
            }
            for d in &r.differences {
                let _ = writeln!(out, "         {d}");
            }
        }
        let missing_commands = self.results.iter().any(|r| {
            r.step == "management_session" && r.differences.iter().any(|d| d.replayed.is_none())
        });
        if missing_commands {
            let _ = writeln!(
                out,
                "note: commands the recorded server sent were queued through its admin API, which a capture does not contain; a fresh server has none to send"
            );
        }
        let _ = writeln!(
            out,
            "replay: {} exchange(s), {} differ",
            self.results.len(),
            self.differing()
        );
    }

    fn print_by_role(&self, out: &mut impl Write) {
        let _ = writeln!(
            out,
            "replaying by role: each response is judged by the emulated client's checks; the recorded one is shown for information"
        );
        for r in &self.results {
            let mark = if r.skipped.is_some() {
                "skip"
            } else if !r.matches() {
                "FAIL"
            } else if !r.warnings.is_empty() {
                "warn"
            } else {
                "ok  "
            };
            let got = r
                .replayed_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "  {mark} #{:<3} {:<24} {} {} -> {got}",
                r.index + 1,
                r.step,
                r.method,
                r.url
            );
            for line in r.failure.iter().chain(r.error.iter()) {
                let _ = writeln!(out, "         fail {line}");
            }
            for w in &r.warnings {
                let _ = writeln!(out, "         warn {w}");
            }
            if let Some(why) = &r.skipped {
                let _ = writeln!(out, "         {why}");
            }
            if let Some(rec) = &r.recorded {
                let _ = writeln!(out, "         recorded: {rec}");
            }
        }
        let warned = self
            .results
            .iter()
            .filter(|r| r.matches() && !r.warnings.is_empty())
            .count();
        let skipped = self.results.iter().filter(|r| r.skipped.is_some()).count();
        let _ = writeln!(
            out,
            "replay by role: {} exchange(s), {} failed, {warned} with warnings, {skipped} skipped",
            self.results.len(),
            self.differing()
        );
    }
}

/// A capture this harness recorded: its creator, and a scenario on every entry.
pub fn is_own_capture(har: &Har) -> bool {
    har.log.creator.name == "winmdm"
        && !har.log.entries.is_empty()
        && har.log.entries.iter().all(|e| e.scenario.is_some())
}

/// Replays the capture against `target`: compared when it is this harness's own, by
/// role otherwise.
pub async fn replay(har: &Har, target: &Target) -> Result<ReplayReport, ReplayError> {
    replay_with(har, target, Mode::Auto).await
}

/// Replays the capture in the given mode.
pub async fn replay_with(
    har: &Har,
    target: &Target,
    mode: Mode,
) -> Result<ReplayReport, ReplayError> {
    if har.log.entries.is_empty() {
        return Err(ReplayError::Empty);
    }
    let compare = match mode {
        Mode::Auto => is_own_capture(har),
        Mode::Compare => true,
        Mode::Role => false,
    };
    if compare {
        compare::replay(har, target).await
    } else {
        foreign::replay(har, target).await
    }
}
