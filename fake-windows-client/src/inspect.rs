//! Human-readable views of the device's CSP tree for `fake-windows-client csp get|list`:
//! each node's DDF properties from the catalogue and the value a server's Get would receive.

use crate::catalogue::{self, Node};
use crate::csp::{self, BuiltIns, NodeStore};
use crate::csp::{Effects, Tree};

/// What a server's Get of `path` answers: `format: value`, or the OMA-DM status.
fn current(store: &NodeStore, builtins: &BuiltIns, path: &str) -> String {
    let mut store = store.clone();
    let mut effects = Effects::default();
    let tree = Tree {
        store: &mut store,
        builtins,
        effects: &mut effects,
    };
    match tree.get(path) {
        Ok(r) => format!("{}: {}", r.format, r.data),
        Err(code) => format!("status {code}"),
    }
}

fn properties(n: &Node) -> String {
    let mut s = format!(
        "access {}; format {}; occurrence {}",
        if n.access_letters().is_empty() {
            "none".to_string()
        } else {
            n.access_letters()
        },
        n.format,
        n.occurrence
    );
    if let Some(d) = &n.default {
        s.push_str(&format!("; default {d:?}"));
    }
    match &n.allowed {
        catalogue::Allowed::Enum(v) => s.push_str(&format!("; allowed {}", v.join("|"))),
        catalogue::Allowed::Range(lo, hi) => s.push_str(&format!("; allowed [{lo}-{hi}]")),
        catalogue::Allowed::Regex { pattern, delimiter } => {
            s.push_str(&format!("; pattern {pattern}"));
            if let Some(d) = delimiter {
                s.push_str(&format!(" (list, delimiter {d:?})"));
            }
        }
        catalogue::Allowed::Admx(file) => s.push_str(&format!("; ADMX-backed ({file})")),
        catalogue::Allowed::Any => {}
    }
    s
}

/// `csp get`: the node's catalogue entry and current value.
pub fn get(store: &NodeStore, builtins: &BuiltIns, uri: &str) -> Result<String, String> {
    let path = csp::normalise(uri).ok_or_else(|| format!("{uri}: not a valid LocURI"))?;
    let cat = catalogue::get();
    let node = match cat.resolve(&path) {
        Some(r) if cat.nodes[r.node].declared => {
            let n = &cat.nodes[r.node];
            format!("{}\n  {}\n", n.path, properties(n))
        }
        _ => "not in the CSP catalogue\n".to_string(),
    };
    Ok(format!(
        "{uri}\n  {node}  value {}",
        current(store, builtins, &path)
    ))
}

/// `csp list`: the catalogue nodes under `prefix` (dynamic nodes as `<name>`), one a line,
/// with the current value of each concrete leaf.
pub fn list(store: &NodeStore, builtins: &BuiltIns, prefix: &str) -> Result<Vec<String>, String> {
    let path = csp::normalise(prefix).ok_or_else(|| format!("{prefix}: not a valid LocURI"))?;
    let lower = path.to_ascii_lowercase();
    let under = format!("{lower}/");
    let cat = catalogue::get();
    let out: Vec<String> = cat
        .nodes
        .iter()
        .filter(|n| n.declared)
        .filter(|n| {
            let p = n.path.to_ascii_lowercase();
            p == lower || p.starts_with(&under)
        })
        .map(|n| {
            let value = if n.path.contains('<') || n.is_interior() {
                String::new()
            } else {
                format!("; value {}", current(store, builtins, &n.path))
            };
            format!("{}  [{}]{value}", n.path, properties(n))
        })
        .collect();
    if out.is_empty() {
        return Err(format!("no catalogue node under {prefix}"));
    }
    Ok(out)
}
