//! Policy CSP: `Policy/Config/<Area>/<Policy>` is set with Add/Replace and removed with
//! Delete; `Policy/Result/<Area>/<Policy>` is Get-only and reports the value in effect
//! (Policy CSP DDF). Nodes are validated against `data/policy-ddf.toml` and, for every other
//! policy, against the CSP catalogue's Policy CSP nodes.

use super::{code, generic, Csp, GetResult, NodeStore, NodeValue, Tree};
use crate::catalogue;
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::OnceLock;

const DDF: &str = include_str!("../../data/policy-ddf.toml");
/// Policy CSP roots (device and user scope), after [`crate::csp::normalise`].
const ROOTS: &[&str] = &["./Vendor/MSFT/Policy", "./User/Vendor/MSFT/Policy"];

/// One policy node from the DDF table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PolicyDef {
    pub area: String,
    pub name: String,
    pub format: String,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    #[serde(default)]
    pub values: Option<Vec<String>>,
    #[serde(default)]
    pub default: Option<String>,
    /// ADMX-backed: the payload is `<enabled/>`/`<disabled/>` XML ([`super::admx`]).
    #[serde(default)]
    pub admx: bool,
}

#[derive(Deserialize)]
struct Table {
    policy: Vec<PolicyDef>,
}

/// The policy table: the curated entries of `data/policy-ddf.toml` first, then every other
/// `Policy/Config/<Area>/<Policy>` node of the CSP catalogue (device and user scope).
pub fn table() -> &'static [PolicyDef] {
    static T: OnceLock<Vec<PolicyDef>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = toml::from_str::<Table>(DDF)
            .map(|t| t.policy)
            .unwrap_or_default();
        for p in &mut t {
            let path = format!("./Vendor/MSFT/Policy/Config/{}/{}", p.area, p.name);
            let cat = catalogue::get();
            p.admx = cat
                .resolve(&path)
                .is_some_and(|r| matches!(cat.nodes[r.node].allowed, catalogue::Allowed::Admx(_)));
        }
        let mut seen: HashSet<(String, String)> = t
            .iter()
            .map(|p| (p.area.to_ascii_lowercase(), p.name.to_ascii_lowercase()))
            .collect();
        for n in &catalogue::get().nodes {
            if let Some(def) = from_catalogue(n) {
                let key = (def.area.to_ascii_lowercase(), def.name.to_ascii_lowercase());
                if seen.insert(key) {
                    t.push(def);
                }
            }
        }
        t
    })
}

/// A policy leaf of the catalogue as a table entry.
fn from_catalogue(n: &catalogue::Node) -> Option<PolicyDef> {
    if !n.declared || n.is_interior() {
        return None;
    }
    let rest = n
        .path
        .strip_prefix("./User")
        .unwrap_or(&n.path)
        .strip_prefix("./Vendor/MSFT/Policy/Config/")?;
    let (area, name) = rest.split_once('/')?;
    if name.contains('/') || area.starts_with('<') {
        return None;
    }
    let (min, max, values) = match &n.allowed {
        catalogue::Allowed::Range(lo, hi) => (Some(*lo), Some(*hi), None),
        catalogue::Allowed::Enum(v) if n.format == "int" => (None, None, Some(v.clone())),
        _ => (None, None, None),
    };
    Some(PolicyDef {
        area: area.to_string(),
        name: name.to_string(),
        format: n.format.clone(),
        min,
        max,
        values,
        default: n.default.clone(),
        admx: matches!(n.allowed, catalogue::Allowed::Admx(_)),
    })
}

/// Looks a policy up; OMA-DM node names are case-insensitive on Windows.
pub fn lookup(area: &str, name: &str) -> Option<&'static PolicyDef> {
    table()
        .iter()
        .find(|p| p.area.eq_ignore_ascii_case(area) && p.name.eq_ignore_ascii_case(name))
}

fn area_known(area: &str) -> Option<&'static str> {
    table()
        .iter()
        .find(|p| p.area.eq_ignore_ascii_case(area))
        .map(|p| p.area.as_str())
}

impl PolicyDef {
    /// Whether `data` is an allowed value; 400 otherwise (Windows rejects out-of-range data).
    pub fn accepts(&self, data: &str) -> bool {
        let data = data.trim();
        match self.format.as_str() {
            "int" => {
                let Ok(v) = data.parse::<i64>() else {
                    return false;
                };
                if let Some(values) = &self.values {
                    return values.iter().any(|a| a == data);
                }
                let lo = self.min.unwrap_or(i64::MIN);
                let hi = self.max.unwrap_or(i64::MAX);
                (lo..=hi).contains(&v)
            }
            "bool" => matches!(data, "true" | "false"),
            "xml" => crate::xml::parse("policy", &format!("<r>{data}</r>")).is_ok(),
            "chr" if self.admx => super::admx::check(data).is_ok(),
            _ => match &self.values {
                Some(values) => values.iter().any(|a| a == data),
                None => true,
            },
        }
    }
}

/// Whether a normalised path is in the Policy CSP.
pub fn is_policy_path(path: &str) -> bool {
    split(path).is_some()
}

/// (root, segments below the root).
fn split(path: &str) -> Option<(&'static str, Vec<&str>)> {
    ROOTS.iter().find_map(|r| {
        if path == *r {
            Some((*r, Vec::new()))
        } else {
            path.strip_prefix(r)
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|rest| (*r, rest.split('/').collect()))
        }
    })
}

fn config_key(root: &str, def: &PolicyDef) -> String {
    format!("{root}/Config/{}/{}", def.area, def.name)
}

fn node(children: Vec<String>) -> GetResult {
    GetResult {
        format: "node".into(),
        mime: None,
        data: children.join("/"),
    }
}

/// Names directly below `prefix/` among stored keys.
fn stored_children(store: &NodeStore, prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}/");
    let mut out: Vec<String> = store
        .nodes
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix))
        .map(|r| r.split('/').next().unwrap_or(r).to_string())
        .collect();
    out.dedup();
    out
}

/// Get on a Policy CSP node.
pub fn get(store: &NodeStore, path: &str) -> Result<GetResult, u16> {
    let (root, segs) = split(path).ok_or(code::NOT_FOUND)?;
    match segs.as_slice() {
        [] => Ok(node(vec!["Config".into(), "Result".into()])),
        ["Config" | "Result"] => Ok(node(stored_children(store, &format!("{root}/Config")))),
        ["Config" | "Result", area] => {
            let area = area_known(area).ok_or(code::NOT_FOUND)?;
            Ok(node(stored_children(
                store,
                &format!("{root}/Config/{area}"),
            )))
        }
        [kind @ ("Config" | "Result"), area, name] => {
            let def = lookup(area, name).ok_or(code::NOT_FOUND)?;
            match store.nodes.get(&config_key(root, def)) {
                Some(v) => Ok(GetResult {
                    format: def.format.clone(),
                    mime: v.mime.clone().or(Some("text/plain".into())),
                    data: v.data.clone().unwrap_or_default(),
                }),
                None if *kind == "Result" => def
                    .default
                    .clone()
                    .map(|d| GetResult {
                        format: def.format.clone(),
                        mime: Some("text/plain".into()),
                        data: d,
                    })
                    .ok_or(code::NOT_FOUND),
                None => Err(code::NOT_FOUND),
            }
        }
        _ => Err(code::NOT_FOUND),
    }
}

/// Add (`replace == false`) or Replace on a Policy CSP node.
pub fn set(store: &mut NodeStore, path: &str, value: NodeValue, replace: bool) -> u16 {
    let Some((root, segs)) = split(path) else {
        return code::NOT_FOUND;
    };
    match segs.as_slice() {
        ["Result", ..] => code::NOT_ALLOWED,
        ["Config", area, name] => {
            let Some(def) = lookup(area, name) else {
                return code::NOT_FOUND;
            };
            if value.format != def.format {
                return code::UNSUPPORTED_MEDIA_TYPE;
            }
            let data = value.data.clone().unwrap_or_default();
            if !def.accepts(&data) {
                return code::BAD_REQUEST;
            }
            let key = config_key(root, def);
            if !replace && store.nodes.contains_key(&key) {
                return code::ALREADY_EXISTS;
            }
            store.nodes.insert(key, value);
            code::OK
        }
        // Interior nodes exist implicitly; Add of an area node is accepted (implicit add).
        ["Config", area] if !replace => match area_known(area) {
            Some(_) => code::OK,
            None => code::NOT_FOUND,
        },
        [] | ["Config"] | ["Config", _] => code::NOT_ALLOWED,
        _ => code::NOT_FOUND,
    }
}

/// Delete on a Policy CSP node: removes the Config value (and so the Result).
pub fn delete(store: &mut NodeStore, path: &str) -> u16 {
    let Some((root, segs)) = split(path) else {
        return code::NOT_FOUND;
    };
    match segs.as_slice() {
        ["Result", ..] => code::NOT_ALLOWED,
        ["Config", area, name] => match lookup(area, name) {
            None => code::NOT_FOUND,
            Some(def) => match store.nodes.remove(&config_key(root, def)) {
                Some(_) => code::OK,
                None => code::NOT_FOUND,
            },
        },
        ["Config", area] => match area_known(area) {
            None => code::NOT_FOUND,
            Some(a) => store.delete(&format!("{root}/Config/{a}")),
        },
        _ => code::NOT_ALLOWED,
    }
}

/// The Policy CSP behind the [`Csp`] trait.
pub struct Policy;

/// Whether a Policy CSP path names a policy this device's build and edition have (the
/// catalogue's `MSFT:Applicability`; `Policy/Result/...` follows its `Policy/Config/...`
/// node): `Err(404)` on a build older than the policy's (the OS does not register it, as
/// [`generic`] answers for other CSPs' nodes), `Err(405)` on an edition the policy's allow
/// list lacks. Evidence for 405: a Replace of Experience/DoNotSyncBrowserSettings answered
/// 405 on Windows 10 Pro 19044 and 200 on Enterprise (MicrosoftDocs/windows-itpro-docs
/// pull request 11648); Update/BranchReadinessLevel answered 405 on IoT Core
/// (ms-iot/iot-core-azure-dm-client issue 84).
fn applicability(cx: &Tree, path: &str) -> Result<(), u16> {
    let cat = catalogue::get();
    let config = path.replacen("/Policy/Result/", "/Policy/Config/", 1);
    let (Some(p), Some(r)) = (generic::platform(cx.builtins), cat.resolve(&config)) else {
        return Ok(());
    };
    let node = &cat.nodes[r.node];
    if !node.build_applies(&p) {
        return Err(code::NOT_FOUND);
    }
    if !node.edition_applies(&p) {
        return Err(code::NOT_ALLOWED);
    }
    Ok(())
}

fn def_of(path: &str) -> Option<&'static PolicyDef> {
    let mut segs = path.rsplit('/');
    let name = segs.next()?;
    let area = segs.next()?;
    lookup(area, name)
}

impl Csp for Policy {
    fn roots(&self) -> &'static [&'static str] {
        ROOTS
    }

    fn get(&self, cx: &Tree, path: &str) -> Result<GetResult, u16> {
        applicability(cx, path)?;
        get(cx.store, path)
    }

    /// An absent `Meta/Format` is the policy's own format.
    fn set(&self, cx: &mut Tree, path: &str, mut value: NodeValue, replace: bool) -> u16 {
        if let Err(c) = applicability(cx, path) {
            return c;
        }
        if value.format.is_empty() {
            if let Some(def) = def_of(path) {
                value.format = def.format.clone();
            }
        }
        set(cx.store, path, value, replace)
    }

    fn delete(&self, cx: &mut Tree, path: &str) -> u16 {
        if let Err(c) = applicability(cx, path) {
            return c;
        }
        delete(cx.store, path)
    }

    /// No Policy CSP node has Exec in its AccessType.
    fn exec(&self, cx: &mut Tree, path: &str) -> u16 {
        if let Err(c) = applicability(cx, path) {
            return c;
        }
        code::NOT_ALLOWED
    }
}
