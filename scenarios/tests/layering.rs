//! The layering of the emulated client, the harness and the load crate holds: no import
//! circles between a crate's top-level modules, no source file over 600 lines, and the
//! emulated client never names the server crate (an independent peer hides no shared
//! bug). The server has its own check (`server/tests/layering.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file allowed, in lines.
const MAX_LINES: usize = 600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`lib` and `main` are the roots).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// Code without comments and without the unit-test module at the end.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names `crate::X` refers to, with `use crate::{a, b::c}` groups expanded to their
/// first segments.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let path = regex::Regex::new(r"crate::(\w+)").expect("regex");
    for c in path.captures_iter(code) {
        refs.insert(c[1].to_string());
    }
    let group = regex::Regex::new(r"use crate::\{([^}]*)\}").expect("regex");
    let first = regex::Regex::new(r"(?:^|,)\s*(\w+)").expect("regex");
    for g in group.captures_iter(code) {
        for f in first.captures_iter(&g[1]) {
            refs.insert(f[1].to_string());
        }
    }
    refs
}

/// The module graph of one crate: edges between top-level modules, with items the
/// crate root re-exports (`pub use m::{A, B}`) attributed to their module.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(src, f)).collect();
    let mut reexported = BTreeMap::new();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let reexport = regex::Regex::new(r"pub use (\w+)::\{?([^;]*?)\}?;").expect("regex");
    let word = regex::Regex::new(r"\w+").expect("regex");
    for c in reexport.captures_iter(&lib) {
        for w in word.find_iter(&c[2]) {
            reexported.insert(w.as_str().to_string(), c[1].to_string());
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let me = top_module(src, f);
        if me == "lib" || me == "main" {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("read source");
        let deps = graph.entry(me.clone()).or_default();
        for r in crate_refs(&code(&text)) {
            let target = if modules.contains(&r) {
                Some(r)
            } else {
                reexported.get(&r).cloned()
            };
            if let Some(t) = target.filter(|t| *t != me) {
                deps.insert(t);
            }
        }
    }
    graph
}

/// A circle in the graph, if there is one (depth-first search).
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut circle = path[at..].to_vec();
            circle.push(n.to_string());
            return Some(circle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

const CRATES: [&str; 3] = ["fake-windows-client", "scenarios", "load"];

#[test]
fn no_import_circles_between_modules() {
    for krate in CRATES {
        let graph = module_graph(&workspace().join(krate).join("src"));
        assert!(graph.len() > 3, "{krate}: modules not found");
        if let Some(circle) = find_circle(&graph) {
            panic!("{krate}: import circle {}", circle.join(" -> "));
        }
    }
}

#[test]
fn circle_detection_finds_a_circle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_circle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    g.get_mut("c").expect("c").clear();
    assert_eq!(find_circle(&g), None);
    let refs = crate_refs("use crate::{error::ClientError, http};\nlet x = crate::soap::esc(y);");
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["error", "http", "soap"]
    );
}

#[test]
fn no_source_file_over_the_limit() {
    for krate in CRATES {
        let mut files = Vec::new();
        sources(&workspace().join(krate).join("src"), &mut files);
        for f in files {
            let lines = std::fs::read_to_string(&f).expect("read").lines().count();
            assert!(
                lines <= MAX_LINES,
                "{} has {lines} lines (limit {MAX_LINES}): split it by purpose",
                f.display()
            );
        }
    }
}

#[test]
fn the_emulated_client_never_names_the_server() {
    let root = workspace().join("fake-windows-client");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
    assert!(
        !manifest.contains("winmdm-server"),
        "client depends on the server"
    );
    let mut files = Vec::new();
    for dir in ["src", "tests", "examples"] {
        if root.join(dir).is_dir() {
            sources(&root.join(dir), &mut files);
        }
    }
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        assert!(
            !text.contains("winmdm_server"),
            "{} names the server crate",
            f.display()
        );
    }
}
