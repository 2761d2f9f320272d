//! Converter from Microsoft's CSP DDF v2 files (OMA-DM DDF 1.2 with the `MSFT:` extensions,
//! "Configuration service provider DDF files" on Microsoft Learn) to the compact line
//! format of `data/csp-catalogue.tsv` that [`crate::catalogue`] reads.
//!
//! One line per node, tab-separated: path, access (letters of Add Delete Exec Get Replace),
//! DFFormat, Occurrence, default value, allowed values (`enum:a|b`, `range:[lo-hi]`, `regex:<pattern>`
//! or `regex<delimiter>:<pattern>` for a list, `admx:<file>` for an ADMX-backed policy, or empty),
//! CSP version (CSP root nodes only), minimum OS build (`MSFT:OsBuildVersion` without the
//! `10.0.` prefix: `17763`, or `22621.2352` with the update revision) and edition allow list
//! (`MSFT:EditionAllowList` in decimal, `4;48;...`); the last two are written only where they
//! differ from the parent node's, which they otherwise inherit. Paths are normalised the way the device addresses them:
//! `./Device/Vendor/MSFT/X` becomes `./Vendor/MSFT/X`; `./User/...` keeps its prefix; a dynamic
//! node is written `<Title>` (its DFTitle, or `<name>`). `\`, tab, CR and LF in values are escaped.

use std::collections::BTreeMap;

/// One node of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub access: String,
    pub format: String,
    pub occurrence: String,
    pub default: String,
    pub allowed: String,
    pub csp_version: String,
    /// Minimum OS build, `build` or `build.ubr`; empty when inherited from the parent.
    pub min_build: String,
    /// Editions the node applies to, decimal, `;`-separated; empty when inherited.
    pub editions: String,
}

/// `10.0.17763` → `17763`, `10.0.22621.2352` → `22621.2352`, `99.9.99999` (not yet
/// released) → `99999`: the build and update revision that [`crate::catalogue`] compares.
pub fn build_of(version: &str) -> String {
    let parts: Vec<&str> = version.trim().split('.').collect();
    match parts.as_slice() {
        [_, _, build] => build.to_string(),
        [_, _, build, ubr] => format!("{build}.{ubr}"),
        _ => String::new(),
    }
}

/// `0x4;0x1B;0x30;` → `4;27;48` (edition numbers as the device profile writes them).
pub fn editions_of(list: &str) -> String {
    list.split(';')
        .filter_map(|e| {
            let e = e.trim();
            let hex = e.strip_prefix("0x").or_else(|| e.strip_prefix("0X"))?;
            u32::from_str_radix(hex, 16).ok()
        })
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(";")
}

/// Errors converting a DDF file.
#[derive(Debug, thiserror::Error)]
pub enum DdfError {
    #[error("not XML: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("no MgmtTree root")]
    NoTree,
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.tag_name().name() == name)
}

fn text(n: Option<roxmltree::Node>) -> String {
    n.and_then(|n| n.text()).unwrap_or("").trim().to_string()
}

/// Escapes `\`, tab, CR and LF so a value fits on one line.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Inverse of [`escape`].
pub fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// `./Device/Vendor/MSFT/X` → `./Vendor/MSFT/X`; `.` → ``; a trailing `/` goes.
fn normalise_base(path: &str) -> String {
    let p = path.trim().trim_end_matches('/');
    let p = p
        .strip_prefix("./Device/")
        .map_or(p.to_string(), |r| format!("./{r}"));
    if p == "." {
        String::new()
    } else {
        p
    }
}

/// The CSP a catalogue path belongs to: the segment after `Vendor/MSFT`, or the first
/// segment for the standard objects (`DevInfo`, `DevDetail`, `SyncML`).
pub fn csp_of(path: &str) -> &str {
    let rest = path.strip_prefix("./").unwrap_or(path);
    let rest = rest.strip_prefix("User/").unwrap_or(rest);
    let rest = rest.strip_prefix("Vendor/MSFT/").unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest)
}

fn occurrence(n: roxmltree::Node) -> String {
    let Some(o) = n.children().find(|c| c.is_element()) else {
        return String::new();
    };
    let count = o.text().unwrap_or("").trim();
    match o.tag_name().name() {
        "One" => "1".into(),
        "ZeroOrOne" => "0-1".into(),
        "ZeroOrMore" => "0-n".into(),
        "OneOrMore" => "1-n".into(),
        "ZeroOrN" => format!("0-{count}"),
        "OneOrN" => format!("1-{count}"),
        other => other.into(),
    }
}

fn allowed(props: roxmltree::Node) -> String {
    let Some(a) = child(props, "AllowedValues") else {
        return String::new();
    };
    match a.attribute("ValueType") {
        Some("ENUM") => {
            let vals: Vec<String> = a
                .children()
                .filter(|c| c.tag_name().name() == "Enum")
                .map(|e| text(child(e, "Value")))
                .collect();
            if vals.iter().any(|v| v.contains('|')) {
                return String::new();
            }
            format!("enum:{}", vals.join("|"))
        }
        Some("Range") => format!("range:{}", text(child(a, "Value"))),
        // `regex:<pattern>`, or `regex<d>:<pattern>` for a list of values split at `<d>`
        // (`MSFT:List Delimiter`).
        Some("RegEx") => {
            let pattern = text(child(a, "Value"));
            if pattern.is_empty() {
                return String::new();
            }
            let delim = child(a, "List")
                .and_then(|l| l.attribute("Delimiter"))
                .and_then(|d| d.chars().next().filter(|c| *c != ':'))
                .map(String::from)
                .unwrap_or_default();
            format!("regex{delim}:{pattern}")
        }
        // ADMX-backed policy: `admx:<file>`.
        Some("ADMX") => {
            let file = child(a, "AdmxBacked")
                .and_then(|b| b.attribute("File"))
                .unwrap_or("");
            format!("admx:{file}")
        }
        _ => String::new(),
    }
}

/// Applicability inherited from the parent: (minimum build, editions).
type Inherited = (String, String);

fn walk(
    node: roxmltree::Node,
    parent: &str,
    depth: usize,
    inherited: &Inherited,
    out: &mut Vec<Entry>,
) {
    let name = text(child(node, "NodeName"));
    let props = child(node, "DFProperties");
    let seg = if name.is_empty() {
        let title = text(props.and_then(|p| child(p, "DFTitle")));
        let title: String = title
            .chars()
            .filter(|c| !matches!(c, '/' | '<' | '>' | '\t'))
            .collect();
        format!("<{}>", if title.is_empty() { "name" } else { &title })
    } else {
        name
    };
    let path = format!("{parent}/{seg}");
    let mut mine = inherited.clone();
    if let Some(p) = props {
        let app = child(p, "Applicability");
        let build = build_of(&text(app.and_then(|a| child(a, "OsBuildVersion"))));
        let editions = editions_of(&text(app.and_then(|a| child(a, "EditionAllowList"))));
        let min_build = if build.is_empty() || build == inherited.0 {
            String::new()
        } else {
            mine.0 = build.clone();
            build
        };
        let editions = if editions.is_empty() || editions == inherited.1 {
            String::new()
        } else {
            mine.1 = editions.clone();
            editions
        };
        let access: String = child(p, "AccessType")
            .map(|a| {
                let has = |v: &str| a.children().any(|c| c.tag_name().name() == v);
                [
                    ("Add", 'A'),
                    ("Delete", 'D'),
                    ("Exec", 'E'),
                    ("Get", 'G'),
                    ("Replace", 'R'),
                ]
                .iter()
                .filter(|(v, _)| has(v))
                .map(|(_, l)| *l)
                .collect()
            })
            .unwrap_or_default();
        let format = child(p, "DFFormat")
            .and_then(|f| f.children().find(|c| c.is_element()))
            .map(|f| f.tag_name().name().to_string())
            .unwrap_or_default();
        let csp_version = if depth == 0 {
            text(child(p, "Applicability").and_then(|a| child(a, "CspVersion")))
        } else {
            String::new()
        };
        out.push(Entry {
            path: path.clone(),
            access,
            format,
            occurrence: child(p, "Occurrence").map(occurrence).unwrap_or_default(),
            default: child(p, "DefaultValue")
                .and_then(|d| d.text())
                .unwrap_or("")
                .to_string(),
            allowed: allowed(p),
            csp_version,
            min_build,
            editions,
        });
    }
    for c in node.children().filter(|c| c.tag_name().name() == "Node") {
        walk(c, &path, depth + 1, &mine, out);
    }
}

/// The nodes one DDF file declares, in document order.
pub fn convert(xml: &str) -> Result<Vec<Entry>, DdfError> {
    let xml = xml.trim_start_matches('\u{feff}');
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts)?;
    let root = doc.root_element();
    if root.tag_name().name() != "MgmtTree" {
        return Err(DdfError::NoTree);
    }
    let mut out = Vec::new();
    for n in root.children().filter(|c| c.tag_name().name() == "Node") {
        let base = normalise_base(&text(child(n, "Path")));
        let base = if base.is_empty() {
            ".".to_string()
        } else {
            base
        };
        walk(n, &base, 0, &Inherited::default(), &mut out);
    }
    Ok(out)
}

/// One catalogue line (without newline), the edition list written out.
pub fn line(e: &Entry) -> String {
    line_in(e, &BTreeMap::new())
}

/// One catalogue line with the edition list replaced by its name in `ids` (the
/// `#editions` table of the header), if it has one.
pub fn line_in(e: &Entry, ids: &BTreeMap<String, String>) -> String {
    let editions = ids.get(&e.editions).unwrap_or(&e.editions);
    [
        e.path.as_str(),
        &e.access,
        &e.format,
        &e.occurrence,
        &escape(&e.default),
        &escape(&e.allowed),
        &e.csp_version,
        &e.min_build,
        editions,
    ]
    .join("\t")
    .trim_end_matches('\t')
    .to_string()
}

/// Merges the entries of several files (the first declaration of a path wins) and returns
/// them sorted by path with the node count per CSP.
pub fn merge(files: impl IntoIterator<Item = Vec<Entry>>) -> (Vec<Entry>, BTreeMap<String, usize>) {
    let mut all: BTreeMap<String, Entry> = BTreeMap::new();
    for f in files {
        for e in f {
            all.entry(e.path.clone()).or_insert(e);
        }
    }
    let mut counts = BTreeMap::new();
    for p in all.keys() {
        *counts.entry(csp_of(p).to_string()).or_insert(0) += 1;
    }
    (all.into_values().collect(), counts)
}

/// The whole catalogue file: header (edition, source, per-CSP counts) and lines.
pub fn render(edition: &str, entries: &[Entry], counts: &BTreeMap<String, usize>) -> String {
    let mut out = String::new();
    out.push_str(
        "# CSP catalogue of the emulated device, derived from Microsoft's CSP DDF v2 files\n",
    );
    out.push_str(&format!("# edition: {edition}\n"));
    out.push_str("# regenerate: cargo run -p fake-windows-client --example ddf-convert -- <ddf-dir> <this-file> <edition>\n");
    out.push_str(
        "# columns: path access format occurrence default allowed csp-version min-build editions (see src/ddf.rs)\n",
    );
    for (csp, n) in counts {
        out.push_str(&format!("#count\t{csp}\t{n}\n"));
    }
    // Edition lists are long and few: each is written once and named `E<n>` on the lines.
    let lists: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e.editions.as_str())
        .filter(|l| !l.is_empty())
        .collect();
    let mut ids = BTreeMap::new();
    for (i, l) in lists.into_iter().enumerate() {
        let id = format!("E{}", i + 1);
        out.push_str(&format!("#editions\t{id}\t{l}\n"));
        ids.insert(l.to_string(), id);
    }
    for e in entries {
        out.push_str(&line_in(e, &ids));
        out.push('\n');
    }
    out
}
