//! Structural comparison of HTTP bodies: XML and JSON flattened to `path → value`
//! leaves, with volatile values (UUIDs, timestamps, long base64, thumbprints, serials,
//! node keys, ports, server origins) normalised so two runs compare equal.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// Compiles one of this module's constant patterns (covered by the unit tests).
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant pattern")
}

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    re(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
});
static TIMESTAMP: LazyLock<Regex> =
    LazyLock::new(|| re(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"));
static THUMBPRINT: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9A-Fa-f]{40}\b"));
static NODE_KEY: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9a-f]{48}\b"));
static DEVICE_ID: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9A-F]{32}\b"));
static SERIAL: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9A-Fa-f]{16,}\b"));
static PORT: LazyLock<Regex> = LazyLock::new(|| re(r"(://[^/:\s\x22<>]+):\d{1,5}\b"));
static BASE64_VALUE: LazyLock<Regex> = LazyLock::new(|| re(r"^[A-Za-z0-9+/]{41,}={0,2}$"));
static BASE64_ELEMENT: LazyLock<Regex> = LazyLock::new(|| re(r">[A-Za-z0-9+/\r\n]{41,}={0,2}<"));
static BASE64_ATTR: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(value|"[A-Za-z_]+")(=|: ?)"[A-Za-z0-9+/]{41,}={0,2}""#));

/// Server base URLs (`https://host:port`) to fold into `[SERVER]`.
#[derive(Debug, Clone, Default)]
pub struct Origins(pub Vec<String>);

impl Origins {
    fn apply(&self, s: &str) -> String {
        let mut out = s.to_string();
        for o in self.0.iter().filter(|o| !o.is_empty()) {
            out = out.replace(o.trim_end_matches('/'), "[SERVER]");
        }
        out
    }
}

/// Normalises one leaf value (element text, attribute or JSON scalar) for comparison.
pub fn normalise_value(v: &str, origins: &Origins) -> String {
    let v = v.trim();
    let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if BASE64_VALUE.is_match(&compact) && !compact.chars().all(|c| c.is_ascii_hexdigit()) {
        return "[BASE64]".into();
    }
    let s = origins.apply(v);
    let s = UUID.replace_all(&s, "[UUID]");
    let s = TIMESTAMP.replace_all(&s, "[TIMESTAMP]");
    let s = NODE_KEY.replace_all(&s, "[NODEKEY]");
    let s = THUMBPRINT.replace_all(&s, "[THUMBPRINT]");
    let s = SERIAL.replace_all(&s, "[HEX]");
    let s = PORT.replace_all(&s, "$1:[PORT]");
    s.into_owned()
}

/// Redacts a whole (pretty-printed) body for snapshots, like the server's own snapshot
/// tests: UUIDs, timestamps, base64, thumbprints, device ids, node keys, server origin.
pub fn redact(text: &str, origins: &Origins) -> String {
    let s = origins.apply(text);
    let s = UUID.replace_all(&s, "[UUID]");
    let s = TIMESTAMP.replace_all(&s, "[TIMESTAMP]");
    let s = NODE_KEY.replace_all(&s, "[NODEKEY]");
    let s = BASE64_ELEMENT.replace_all(&s, ">[BASE64]<");
    let s = BASE64_ATTR.replace_all(&s, "$1$2\"[BASE64]\"");
    let s = THUMBPRINT.replace_all(&s, "[THUMBPRINT]");
    let s = DEVICE_ID.replace_all(&s, "[DEVICEID]");
    let s = PORT.replace_all(&s, "$1:[PORT]");
    s.into_owned()
}

/// A body flattened to ordered `path → value` leaves.
pub type Leaves = BTreeMap<String, String>;

/// Flattens a body: XML (element names with namespaces, attributes sorted, text
/// trimmed, comments dropped), JSON (by keys), or the trimmed text as one leaf.
pub fn flatten(body: &str) -> Leaves {
    let t = body.trim();
    let mut out = Leaves::new();
    if t.starts_with('<') {
        if let Ok(doc) = roxmltree::Document::parse(t) {
            flatten_xml(doc.root_element(), "", &mut out);
            return out;
        }
    }
    if t.starts_with('{') || t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(t) {
            flatten_json(&v, "$", &mut out);
            return out;
        }
    }
    if !t.is_empty() {
        out.insert("body".into(), t.to_string());
    }
    out
}

fn flatten_xml(n: roxmltree::Node, parent: &str, out: &mut Leaves) {
    let name = n.tag_name().name();
    let same: Vec<_> = n
        .parent()
        .map(|p| {
            p.children()
                .filter(|c| c.is_element() && c.tag_name() == n.tag_name())
                .collect()
        })
        .unwrap_or_default();
    let path = if same.len() > 1 {
        let idx = same.iter().position(|c| *c == n).unwrap_or(0) + 1;
        format!("{parent}/{name}[{idx}]")
    } else {
        format!("{parent}/{name}")
    };
    if let Some(ns) = n.tag_name().namespace() {
        out.insert(format!("{path}#ns"), ns.to_string());
    } else {
        out.insert(format!("{path}#ns"), String::new());
    }
    let mut attrs: Vec<(String, String)> = n
        .attributes()
        .map(|a| {
            let key = match a.namespace() {
                Some(ns) => format!("{path}/@{{{ns}}}{}", a.name()),
                None => format!("{path}/@{}", a.name()),
            };
            (key, a.value().to_string())
        })
        .collect();
    attrs.sort();
    out.extend(attrs);
    let text: String = n
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect();
    let text = text.trim();
    if !text.is_empty() {
        out.insert(path.clone(), text.to_string());
    }
    for c in n.children().filter(|c| c.is_element()) {
        flatten_xml(c, &path, out);
    }
}

fn flatten_json(v: &serde_json::Value, path: &str, out: &mut Leaves) {
    match v {
        serde_json::Value::Object(m) => {
            if m.is_empty() {
                out.insert(path.to_string(), "{}".into());
            }
            for (k, v) in m {
                flatten_json(v, &format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            if a.is_empty() {
                out.insert(path.to_string(), "[]".into());
            }
            for (i, v) in a.iter().enumerate() {
                flatten_json(v, &format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::String(s) => {
            out.insert(path.to_string(), s.clone());
        }
        other => {
            out.insert(path.to_string(), other.to_string());
        }
    }
}

/// One differing leaf: its path and both raw values (absent = `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub recorded: Option<String>,
    pub replayed: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| match v {
            Some(s) => format!("{:?}", clip(s, 120)),
            None => "(absent)".into(),
        };
        write!(
            f,
            "{}: recorded {}, replayed {}",
            self.path,
            show(&self.recorded),
            show(&self.replayed)
        )
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Compares two bodies structurally; volatile values compare equal.
pub fn compare(recorded: &str, replayed: &str, origins: &Origins) -> Vec<Difference> {
    compare_leaves(&flatten(recorded), &flatten(replayed), origins)
}

/// Compares flattened bodies.
pub fn compare_leaves(a: &Leaves, b: &Leaves, origins: &Origins) -> Vec<Difference> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let diffs: Vec<Difference> = keys
        .into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k), b.get(k));
            let same = match (x, y) {
                (Some(x), Some(y)) => normalise_value(x, origins) == normalise_value(y, origins),
                _ => false,
            };
            (!same).then(|| Difference {
                path: k.clone(),
                recorded: x.cloned(),
                replayed: y.cloned(),
            })
        })
        .collect();
    // An element present on one side only is reported once, not leaf by leaf.
    let missing: Vec<String> = diffs
        .iter()
        .filter(|d| d.recorded.is_none() || d.replayed.is_none())
        .filter_map(|d| d.path.strip_suffix("#ns").map(str::to_string))
        .collect();
    diffs
        .into_iter()
        .filter(|d| {
            let one_sided = d.recorded.is_none() || d.replayed.is_none();
            !(one_sided
                && missing.iter().any(|m| {
                    d.path != format!("{m}#ns")
                        && (d.path.starts_with(&format!("{m}/"))
                            || d.path.starts_with(&format!("{m}#")))
                }))
        })
        .map(|mut d| {
            if let Some(p) = d.path.strip_suffix("#ns") {
                if d.recorded.is_none() || d.replayed.is_none() {
                    d.path = format!("{p} (element)");
                    d.recorded = d.recorded.map(|_| "present".into());
                    d.replayed = d.replayed.map(|_| "present".into());
                }
            }
            d
        })
        .collect()
}

/// Leaves whose raw values differ but normalise alike: the run-specific values
/// (node keys, ids) a replay must substitute in later requests.
pub fn volatile_pairs(a: &Leaves, b: &Leaves, origins: &Origins) -> Vec<(String, String)> {
    a.iter()
        .filter_map(|(k, x)| {
            let y = b.get(k)?;
            let usable = x != y
                && x.len() >= 8
                && x.len() <= 256
                && !x.chars().any(char::is_whitespace)
                && normalise_value(x, origins) == normalise_value(y, origins);
            usable.then(|| (x.clone(), y.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_values_compare_equal() {
        let o = Origins(vec![
            "https://127.0.0.1:1111".into(),
            "https://127.0.0.1:2222".into(),
        ]);
        let a = r#"<a xmlns="urn:x"><!-- c --><id>urn:uuid:0b6a3f2e-1111-4a5b-9c8d-0123456789ab</id><t at="2024-01-02T03:04:05Z"/><u>https://127.0.0.1:1111/x</u><k>0123456789abcdef0123456789abcdef0123456789abcdef</k></a>"#;
        let b = r#"<a xmlns="urn:x"><id>urn:uuid:7c6a3f2e-2222-4a5b-9c8d-0123456789ab</id><t at="2025-11-12T13:14:15.5Z"/><u>https://127.0.0.1:2222/x</u><k>ffff456789abcdef0123456789abcdef0123456789abcdef</k></a>"#;
        assert_eq!(compare(a, b, &o), vec![]);
        let pairs = volatile_pairs(&flatten(a), &flatten(b), &o);
        assert!(pairs.iter().any(|(x, _)| x.starts_with("0123")));
    }

    #[test]
    fn a_changed_element_is_named() {
        let d = compare(
            r#"<r><Status>200</Status></r>"#,
            r#"<r><Status>500</Status></r>"#,
            &Origins::default(),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "/r/Status");
        assert!(d[0].to_string().contains("\"200\""));
    }

    #[test]
    fn namespaces_count_prefixes_do_not() {
        let o = Origins::default();
        assert!(compare(r#"<a:x xmlns:a="urn:1"/>"#, r#"<b:x xmlns:b="urn:1"/>"#, &o).is_empty());
        assert!(!compare(r#"<a:x xmlns:a="urn:1"/>"#, r#"<a:x xmlns:a="urn:2"/>"#, &o).is_empty());
    }

    #[test]
    fn json_by_keys() {
        let o = Origins::default();
        assert!(compare(r#"{"a":1,"b":"x"}"#, r#"{"b":"x","a":1}"#, &o).is_empty());
        let d = compare(r#"{"a":{"b":true}}"#, r#"{"a":{"b":false}}"#, &o);
        assert_eq!(d[0].path, "$.a.b");
    }

    #[test]
    fn redaction() {
        let r = redact(
            "<x>0123456789ABCDEF0123456789ABCDEF</x> https://h:443/a",
            &Origins::default(),
        );
        assert_eq!(r, "<x>[DEVICEID]</x> https://h:[PORT]/a");
    }
}
