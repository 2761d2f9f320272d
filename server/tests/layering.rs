//! The server's layering, checked on its own source (docs/architecture.md draws it):
//! the protocol core, the codecs and the model import no I/O crate (nor the metrics
//! facade, whose recorder is process-wide state); only the store
//! speaks SQL; no file grows past 600 lines; the top-level modules import each other
//! without circles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must stay free of I/O: decisions, wire formats, plain data.
const PURE: &[&str] = &["protocol", "codec", "model"];
/// Crates that do I/O (sockets, the web framework, databases, the async runtime).
const IO_CRATES: &[&str] = &[
    "axum",
    "hyper",
    "hyper_util",
    "tower",
    "sqlx",
    "rusqlite",
    "tokio",
    "tokio_rustls",
];
/// Crates with process-wide side effects (the metrics recorder): recorded in the HTTP
/// layer, the services and the store, never in the pure layers.
const SIDE_EFFECT_CRATES: &[&str] = &["metrics", "metrics_exporter_prometheus"];
const SQL_CRATES: &[&str] = &["sqlx", "rusqlite"];
const MAX_LINES: usize = 600;

struct Source {
    /// Path below `src/`, with `/` separators.
    path: String,
    /// The code without comment lines.
    code: String,
    lines: usize,
}

impl Source {
    /// The top-level module the file belongs to (`store` for `store/sqlite/writer.rs`).
    fn module(&self) -> &str {
        let first = self.path.split('/').next().unwrap_or("");
        first.strip_suffix(".rs").unwrap_or(first)
    }

    /// Whether the code names `krate` (`krate::...`, `use krate`, `#[krate::...]`).
    fn names_crate(&self, krate: &str) -> bool {
        let bytes = self.code.as_bytes();
        self.code.match_indices(krate).any(|(i, _)| {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + krate.len()).copied();
            let starts =
                !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
            let ends = !after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
            starts && ends
        })
    }
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("src directory")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).expect("source file");
                let code = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let path = p
                    .strip_prefix(root)
                    .expect("below src")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(Source {
                    path,
                    code,
                    lines: text.lines().count(),
                });
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    assert!(out.len() > 20, "the server's sources were not found");
    out
}

#[test]
fn the_protocol_core_codecs_and_model_import_no_io_crate() {
    let mut found = Vec::new();
    for s in sources().iter().filter(|s| PURE.contains(&s.module())) {
        for krate in IO_CRATES.iter().chain(SIDE_EFFECT_CRATES) {
            if s.names_crate(krate) {
                found.push(format!("{} uses {krate}", s.path));
            }
        }
    }
    assert!(found.is_empty(), "I/O in the pure layers: {found:#?}");
}

#[test]
fn only_the_store_speaks_sql() {
    let mut found = Vec::new();
    for s in sources().iter().filter(|s| s.module() != "store") {
        for krate in SQL_CRATES {
            if s.names_crate(krate) {
                found.push(format!("{} uses {krate}", s.path));
            }
        }
    }
    assert!(found.is_empty(), "SQL outside store/: {found:#?}");
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|s| s.lines > MAX_LINES)
        .map(|s| format!("{}: {} lines", s.path, s.lines))
        .collect();
    assert!(long.is_empty(), "split these files: {long:#?}");
}

/// `pub use a::{b, c as d};` and `pub use a as b;` in lib.rs: names at the crate root
/// that stand for another top-level module.
fn root_aliases(lib: &str) -> BTreeMap<String, String> {
    let mut aliases = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim();
        if let Some((module, names)) = rest.split_once("::{") {
            for name in names.trim_end_matches('}').split(',') {
                let alias = name.rsplit(" as ").next().unwrap_or(name).trim();
                if !alias.is_empty() {
                    aliases.insert(alias.to_string(), module.trim().to_string());
                }
            }
        } else if let Some((module, alias)) = rest.split_once(" as ") {
            aliases.insert(alias.trim().to_string(), module.trim().to_string());
        }
    }
    aliases
}

/// Which top-level modules each one names through `crate::`.
fn module_graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let lib = sources.iter().find(|s| s.path == "lib.rs").expect("lib.rs");
    let aliases = root_aliases(&lib.code);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources
        .iter()
        .filter(|s| s.path != "lib.rs" && s.path != "main.rs")
    {
        for (i, _) in s.code.match_indices("crate::") {
            let name: String = s.code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let target = aliases.get(&name).cloned().unwrap_or(name);
            if !target.is_empty() && target != s.module() {
                graph
                    .entry(s.module().to_string())
                    .or_default()
                    .insert(target);
            }
        }
    }
    graph
}

/// A circle in `graph`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_each_other_without_circles() {
    let graph = module_graph(&sources());
    assert!(
        graph.contains_key("http"),
        "the graph was not read: {graph:?}"
    );
    if let Some(c) = circle(&graph) {
        panic!("import circle: {}", c.join(" -> "));
    }
}

#[test]
fn the_circle_check_finds_circles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("app".into()).or_default().insert("http".into());
    g.entry("http".into()).or_default().insert("state".into());
    assert_eq!(circle(&g), None);
    g.entry("state".into()).or_default().insert("app".into());
    assert_eq!(
        circle(&g),
        Some(vec![
            "app".into(),
            "http".into(),
            "state".into(),
            "app".into()
        ])
    );
    let aliases = root_aliases("pub use codec::{cms, wstep as enroll};\npub use store as db;");
    assert_eq!(aliases.get("enroll").map(String::as_str), Some("codec"));
    assert_eq!(aliases.get("cms").map(String::as_str), Some("codec"));
    assert_eq!(aliases.get("db").map(String::as_str), Some("store"));
}
