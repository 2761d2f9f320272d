//! The device's CSP catalogue: every node of Microsoft's CSP DDF files (`data/csp-catalogue.tsv`,
//! written by [`crate::ddf`]), parsed once and shared by all emulated devices.
//!
//! [`resolve`] maps a concrete LocURI onto its catalogue node (static names first, then the
//! dynamic `<name>` child, OMA-DM names compared case-insensitively as Windows does).

use crate::ddf;
use std::collections::HashMap;
use std::sync::OnceLock;

const DATA: &str = include_str!("../data/csp-catalogue.tsv");

/// AccessType bits (OMA-DM DDF 1.2 AccessType).
pub mod access {
    pub const ADD: u8 = 1;
    pub const DELETE: u8 = 2;
    pub const EXEC: u8 = 4;
    pub const GET: u8 = 8;
    pub const REPLACE: u8 = 16;
}

/// Value constraints the DDF declares (`MSFT:AllowedValues`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Any,
    Enum(Vec<String>),
    Range(i64, i64),
    /// `ValueType="RegEx"`, with the `MSFT:List` delimiter when the value is a list.
    /// Recorded and shown, not enforced: no Microsoft page states that Windows refuses a
    /// value the pattern does not match, and several patterns are loose descriptions.
    Regex {
        pattern: String,
        delimiter: Option<char>,
    },
    /// `ValueType="ADMX"`: an ADMX-backed policy from this ADMX file, whose payload
    /// [`crate::admx`] checks.
    Admx(String),
}

/// One catalogue node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Catalogue path, dynamic segments written `<Title>`.
    pub path: String,
    /// Last segment as written in the catalogue.
    pub name: String,
    pub access: u8,
    /// DFFormat: `node`, `chr`, `int`, `bool`, `b64`, `xml`, `null`, ...
    pub format: String,
    pub occurrence: String,
    pub default: Option<String>,
    pub allowed: Allowed,
    /// CspVersion of a CSP root node.
    pub csp_version: Option<String>,
    pub dynamic: bool,
    /// Whether the DDF itself declares this node (interior nodes above a CSP root are implied).
    pub declared: bool,
    /// Lowest OS (build, update revision) with this node (`MSFT:OsBuildVersion` of the node
    /// or the nearest ancestor that declares one, the highest along the path).
    pub min_build: Option<(u32, u32)>,
    /// Editions with this node (`MSFT:EditionAllowList`, inherited like `min_build`).
    pub editions: Option<Vec<u32>>,
}

/// The OS a device runs, as the catalogue's applicability compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// (build, update revision), e.g. (22631, 2428) for `10.0.22631.2428`.
    pub build: (u32, u32),
    /// Edition number (`48` = Pro, `4` = Enterprise).
    pub edition: Option<u32>,
}

impl Platform {
    /// From a `10.0.<build>.<ubr>` version and a decimal edition number (the device
    /// profile's `os_version` and `os_edition`); `None` when the version is not of that form.
    pub fn parse(os_version: &str, os_edition: &str) -> Option<Platform> {
        let build = parse_build(&crate::ddf::build_of(os_version))?;
        Some(Platform {
            build,
            edition: os_edition.trim().parse().ok(),
        })
    }
}

/// `22631` → (22631, 0); `22621.2352` → (22621, 2352).
fn parse_build(s: &str) -> Option<(u32, u32)> {
    let (b, u) = s.split_once('.').unwrap_or((s, "0"));
    Some((b.parse().ok()?, u.parse().ok()?))
}

impl Node {
    pub fn allows(&self, bit: u8) -> bool {
        self.access & bit != 0
    }

    /// Whether the node exists on `platform`: its minimum build is not above the device's
    /// and its edition allow list (if any) names the device's edition.
    pub fn applies_to(&self, platform: &Platform) -> bool {
        self.build_applies(platform) && self.edition_applies(platform)
    }

    /// Whether the device's build is not below the node's minimum build.
    pub fn build_applies(&self, platform: &Platform) -> bool {
        self.min_build.is_none_or(|b| b <= platform.build)
    }

    /// Whether the node's edition allow list (if any) names the device's edition.
    pub fn edition_applies(&self, platform: &Platform) -> bool {
        match (&self.editions, platform.edition) {
            (Some(list), Some(e)) => list.contains(&e),
            _ => true,
        }
    }

    pub fn is_interior(&self) -> bool {
        self.format == "node"
    }

    /// The access letters as in the catalogue (`ADEGR`).
    pub fn access_letters(&self) -> String {
        [
            (access::ADD, "Add"),
            (access::DELETE, "Delete"),
            (access::EXEC, "Exec"),
            (access::GET, "Get"),
            (access::REPLACE, "Replace"),
        ]
        .iter()
        .filter(|(b, _)| self.allows(*b))
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
    }

    /// Whether `data` satisfies the node's format and the constraints the device enforces
    /// (400 otherwise): an `int` must parse and lie in its enumeration or range, a `bool`
    /// be `true` or `false`, an ADMX-backed policy's payload be `<enabled/>`/`<disabled/>`
    /// XML ([`crate::admx`]). Evidence for 400 on a value outside the DDF's allowed
    /// values: Windows answered `400` to Policy CSP Replaces it could not apply
    /// (fleetdm/fleet pull request 15277, Update/ConfigureDeadline* values); OMA SyncML
    /// RepPro 1.2.2 §10 names 400 for a command that cannot be performed as sent.
    /// `chr` enumerations, ranges on `chr`, `Flag` bit sets and RegEx patterns stay
    /// unchecked (no evidence that Windows refuses them; many are lists or descriptions).
    pub fn accepts(&self, data: &str) -> bool {
        let data = data.trim();
        match self.format.as_str() {
            "int" => {
                let Ok(v) = data.parse::<i64>() else {
                    return false;
                };
                match &self.allowed {
                    Allowed::Enum(vals) => vals.iter().any(|a| a == data),
                    Allowed::Range(lo, hi) => (*lo..=*hi).contains(&v),
                    _ => true,
                }
            }
            "bool" => matches!(data, "true" | "false"),
            "chr" => match &self.allowed {
                Allowed::Admx(_) => crate::admx::check(data).is_ok(),
                _ => true,
            },
            _ => true,
        }
    }
}

/// The parsed catalogue.
#[derive(Debug, Default)]
pub struct Catalogue {
    pub nodes: Vec<Node>,
    /// (parent index, lower-case name) → child index.
    children: HashMap<(usize, String), usize>,
    /// Parent index → children indices in catalogue order.
    kids: HashMap<usize, Vec<usize>>,
    /// Parent index → its dynamic child.
    dynamic: HashMap<usize, usize>,
    /// Node counts per CSP as the converter wrote them in the header.
    pub header_counts: Vec<(String, usize)>,
    /// The DDF edition named in the header.
    pub edition: String,
}

/// A concrete path matched against the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub node: usize,
    /// Concrete paths of the dynamic instances along the path, outermost first.
    pub instances: Vec<String>,
}

fn parse_range(s: &str) -> Option<(i64, i64)> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    // `[a-b]` (a may be negative) or `[a]`.
    let split = inner
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '-')
        .map(|(i, _)| i);
    match split {
        Some(i) => Some((inner[..i].parse().ok()?, inner[i + 1..].parse().ok()?)),
        None => {
            let v = inner.parse().ok()?;
            Some((v, v))
        }
    }
}

fn parse_allowed(s: &str) -> Allowed {
    if let Some(v) = s.strip_prefix("enum:") {
        return Allowed::Enum(v.split('|').map(str::to_string).collect());
    }
    if let Some((lo, hi)) = s.strip_prefix("range:").and_then(parse_range) {
        return Allowed::Range(lo, hi);
    }
    if let Some(file) = s.strip_prefix("admx:") {
        return Allowed::Admx(file.to_string());
    }
    if let Some(rest) = s.strip_prefix("regex") {
        let mut chars = rest.chars();
        let (delimiter, pattern) = match chars.next() {
            Some(':') => (None, chars.as_str()),
            Some(d) => match chars.as_str().strip_prefix(':') {
                Some(p) => (Some(d), p),
                None => return Allowed::Any,
            },
            None => return Allowed::Any,
        };
        return Allowed::Regex {
            pattern: pattern.to_string(),
            delimiter,
        };
    }
    Allowed::Any
}

/// `4;48;121` → [4, 48, 121].
fn parse_editions(s: &str) -> Vec<u32> {
    s.split(';').filter_map(|e| e.trim().parse().ok()).collect()
}

fn access_bits(s: &str) -> u8 {
    s.chars()
        .map(|c| match c {
            'A' => access::ADD,
            'D' => access::DELETE,
            'E' => access::EXEC,
            'G' => access::GET,
            'R' => access::REPLACE,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

fn is_dynamic(seg: &str) -> bool {
    seg.starts_with('<') && seg.ends_with('>')
}

impl Catalogue {
    /// Parses catalogue text; malformed lines are skipped (a test checks there are none).
    pub fn parse(text: &str) -> Catalogue {
        let mut c = Catalogue::default();
        c.nodes.push(Node {
            path: ".".into(),
            name: ".".into(),
            access: access::GET,
            format: "node".into(),
            occurrence: "1".into(),
            default: None,
            allowed: Allowed::Any,
            csp_version: None,
            dynamic: false,
            declared: false,
            min_build: None,
            editions: None,
        });
        let mut edition_lists: HashMap<String, Vec<u32>> = HashMap::new();
        for l in text.lines() {
            if let Some(h) = l.strip_prefix("#editions\t") {
                if let Some((id, list)) = h.split_once('\t') {
                    edition_lists.insert(id.to_string(), parse_editions(list));
                }
                continue;
            }
            if let Some(h) = l.strip_prefix("#count\t") {
                if let Some((csp, n)) = h.split_once('\t') {
                    if let Ok(n) = n.parse() {
                        c.header_counts.push((csp.to_string(), n));
                    }
                }
                continue;
            }
            if let Some(e) = l.strip_prefix("# edition: ") {
                c.edition = e.to_string();
                continue;
            }
            if l.starts_with('#') || l.is_empty() {
                continue;
            }
            let cols: Vec<&str> = l.split('\t').collect();
            let col = |i: usize| cols.get(i).copied().unwrap_or("");
            let Some(idx) = c.ensure(col(0)) else {
                continue;
            };
            let default = ddf::unescape(col(4));
            let n = &mut c.nodes[idx];
            n.access = access_bits(col(1));
            n.format = col(2).to_string();
            n.occurrence = col(3).to_string();
            n.default = (!default.is_empty()).then_some(default);
            n.allowed = parse_allowed(&ddf::unescape(col(5)));
            n.csp_version = (!col(6).is_empty()).then(|| col(6).to_string());
            n.declared = true;
            // Own applicability narrows what the parent's allows.
            if let Some(b) = parse_build(col(7)).filter(|_| !col(7).is_empty()) {
                n.min_build = Some(n.min_build.map_or(b, |p| p.max(b)));
            }
            if !col(8).is_empty() {
                let own = edition_lists
                    .get(col(8))
                    .cloned()
                    .unwrap_or_else(|| parse_editions(col(8)));
                n.editions = Some(match n.editions.take() {
                    Some(p) => own.into_iter().filter(|e| p.contains(e)).collect(),
                    None => own,
                });
            }
        }
        c
    }

    /// Index of the node at catalogue path `path`, creating implied interior nodes.
    fn ensure(&mut self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix("./")?;
        let mut cur = 0;
        let mut so_far = ".".to_string();
        for seg in rest.split('/') {
            if seg.is_empty() {
                return None;
            }
            so_far = format!("{so_far}/{seg}");
            let key = (cur, seg.to_ascii_lowercase());
            let dynamic = is_dynamic(seg);
            let existing = if dynamic {
                self.dynamic.get(&cur).copied()
            } else {
                self.children.get(&key).copied()
            };
            cur = match existing {
                Some(i) => i,
                None => {
                    let i = self.nodes.len();
                    let (min_build, editions) = {
                        let p = &self.nodes[cur];
                        (p.min_build, p.editions.clone())
                    };
                    self.nodes.push(Node {
                        path: so_far.clone(),
                        name: seg.to_string(),
                        access: access::GET,
                        format: "node".into(),
                        occurrence: "1".into(),
                        default: None,
                        allowed: Allowed::Any,
                        csp_version: None,
                        dynamic,
                        declared: false,
                        min_build,
                        editions,
                    });
                    if dynamic {
                        self.dynamic.insert(cur, i);
                    } else {
                        self.children.insert(key, i);
                    }
                    self.kids.entry(cur).or_default().push(i);
                    i
                }
            };
        }
        Some(cur)
    }

    /// Matches a normalised concrete path (see [`crate::csp::normalise`]).
    pub fn resolve(&self, path: &str) -> Option<Resolved> {
        let rest = path.strip_prefix("./")?;
        let mut cur = 0;
        let mut instances = Vec::new();
        let mut so_far = ".".to_string();
        for seg in rest.split('/') {
            so_far.push('/');
            so_far.push_str(seg);
            cur = match self.children.get(&(cur, seg.to_ascii_lowercase())) {
                Some(i) => *i,
                None => {
                    let i = *self.dynamic.get(&cur)?;
                    instances.push(so_far.clone());
                    i
                }
            };
        }
        Some(Resolved {
            node: cur,
            instances,
        })
    }

    /// Children of a node in catalogue order (the dynamic one included).
    pub fn children(&self, idx: usize) -> &[usize] {
        self.kids.get(&idx).map_or(&[], Vec::as_slice)
    }

    /// Whether `path` lies in a CSP the catalogue describes (the DDF declares its root).
    pub fn covers(&self, path: &str) -> bool {
        let rest = path.strip_prefix("./").unwrap_or(path);
        let depth = if rest.starts_with("User/Vendor/MSFT/") {
            4
        } else if rest.starts_with("Vendor/MSFT/") {
            3
        } else {
            1
        };
        let root: Vec<&str> = rest.split('/').take(depth).collect();
        if root.len() < depth {
            return false;
        }
        let declared = |p: &str| self.resolve(p).is_some_and(|r| self.nodes[r.node].declared);
        // A CSP the DDF declares in one scope only is still known under the other one:
        // its nodes there are simply not found.
        match root.last() {
            Some(csp) if depth > 1 => {
                declared(&format!("./Vendor/MSFT/{csp}"))
                    || declared(&format!("./User/Vendor/MSFT/{csp}"))
            }
            _ => declared(&format!("./{}", root.join("/"))),
        }
    }

    /// Node count per CSP, as [`ddf::csp_of`] groups them (declared nodes only).
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut m: std::collections::BTreeMap<String, usize> = Default::default();
        for n in self.nodes.iter().filter(|n| n.declared) {
            *m.entry(ddf::csp_of(&n.path).to_string()).or_insert(0) += 1;
        }
        m.into_iter().collect()
    }
}

/// The bundled catalogue text.
pub fn text() -> &'static str {
    DATA
}

/// The bundled catalogue, parsed on first use.
pub fn get() -> &'static Catalogue {
    static C: OnceLock<Catalogue> = OnceLock::new();
    C.get_or_init(|| Catalogue::parse(DATA))
}
