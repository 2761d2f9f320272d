//! Snapshot testing of a server's responses in insta's file format: one
//! `<scenario>__<nn>_<step>.snap` per step that made HTTP requests, holding each
//! response's status line and pretty-printed, redacted body. A missing snapshot is
//! written; an existing one is compared, and on a difference the step fails with a diff
//! and the new contents go to `<name>.snap.new`, so `cargo insta review` can accept them.

use std::path::{Path, PathBuf};

use crate::report::canon::{redact, Origins};
use crate::report::{pretty_body, slug};
use crate::runner::{ScenarioOutcome, StepOutcome};

/// Errors writing or reading snapshot files.
#[derive(Debug, thiserror::Error)]
#[error("snapshot {path}: {source}")]
pub struct SnapshotError {
    pub path: String,
    pub source: std::io::Error,
}

/// What happened to one step's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapState {
    /// No snapshot existed; it was written.
    Created(PathBuf),
    /// The snapshot matched.
    Matched(PathBuf),
    /// `--update` rewrote the snapshot.
    Updated(PathBuf),
    /// The response differed; the diff, and the `.snap.new` written.
    Differs { new_file: PathBuf, diff: String },
}

/// The snapshot file name of step `n` (1-based) of a scenario.
pub fn file_name(scenario: &str, n: usize, step: &str) -> String {
    format!("{}__{n:02}_{step}.snap", slug(scenario))
}

/// The redacted snapshot contents of one step: every response, in order.
pub fn contents(step: &StepOutcome, origins: &Origins) -> String {
    let mut out = String::new();
    for ex in &step.exchanges {
        let path = ex
            .url
            .split_once("://")
            .and_then(|(_, r)| r.find('/').map(|i| &r[i..]))
            .unwrap_or(&ex.url);
        let status = match (ex.status, &ex.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => format!("no response ({e})"),
            (None, None) => "no response".into(),
        };
        out.push_str(&format!("{} {path} -> {status}\n", ex.method));
        let body = pretty_body(&ex.response_body);
        let body = body.trim_end();
        if !body.is_empty() {
            out.push_str(body);
            out.push('\n');
        }
        out.push('\n');
    }
    redact(out.trim_end(), origins)
}

fn header(scenario: &str, n: usize, step: &str) -> String {
    let description = format!("server responses of step {n} ({step}) of scenario {scenario}");
    let quoted = serde_json::to_string(&description).unwrap_or_else(|_| "\"\"".into());
    format!("---\nsource: winmdm\ndescription: {quoted}\nexpression: server responses\n---\n")
}

/// The contents of a snapshot file without its header.
pub fn body_of(file_text: &str) -> &str {
    let mut rest = file_text;
    if let Some(r) = rest.strip_prefix("---\n") {
        if let Some(i) = r.find("\n---\n") {
            rest = &r[i + 5..];
        }
    }
    rest
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError {
        path: path.display().to_string(),
        source,
    }
}

fn write_snap(path: &Path, header: &str, body: &str) -> Result<(), SnapshotError> {
    std::fs::write(path, format!("{header}{body}\n")).map_err(io(path))
}

/// A unified line diff, old → new.
pub fn diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header("snapshot", "this run")
        .to_string()
}

/// Snapshots (or checks) every step of a scenario with HTTP exchanges; a differing step
/// is marked failed with the diff appended to its detail.
pub fn apply(
    dir: &Path,
    update: bool,
    origins: &Origins,
    outcome: &mut ScenarioOutcome,
) -> Result<Vec<SnapState>, SnapshotError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut states = Vec::new();
    let scenario = outcome.name.clone();
    for (i, step) in outcome.steps.iter_mut().enumerate() {
        if step.exchanges.is_empty() {
            continue;
        }
        let n = i + 1;
        let path = dir.join(file_name(&scenario, n, step.name));
        let new_path = PathBuf::from(format!("{}.new", path.display()));
        let head = header(&scenario, n, step.name);
        let body = contents(step, origins);
        let existing = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&path)(e)),
        };
        let state = match existing {
            None => {
                write_snap(&path, &head, &body)?;
                SnapState::Created(path)
            }
            Some(_) if update => {
                write_snap(&path, &head, &body)?;
                SnapState::Updated(path)
            }
            Some(old) => {
                let old = body_of(&old).trim_end();
                if old == body.trim_end() {
                    SnapState::Matched(path)
                } else {
                    write_snap(&new_path, &head, &body)?;
                    let d = diff(&format!("{old}\n"), &format!("{}\n", body.trim_end()));
                    step.verdict = crate::runner::Verdict::Failed;
                    step.detail = format!(
                        "{}\nsnapshot {} differs (new contents in {}):\n{d}",
                        step.detail,
                        path.display(),
                        new_path.display()
                    );
                    SnapState::Differs {
                        new_file: new_path.clone(),
                        diff: d,
                    }
                }
            }
        };
        if !matches!(state, SnapState::Differs { .. }) && new_path.exists() {
            std::fs::remove_file(&new_path).map_err(io(&new_path))?;
        }
        states.push(state);
    }
    Ok(states)
}
