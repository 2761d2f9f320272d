//! Emulated configuration service provider tree: DevInfo, DevDetail and DeviceStatus values
//! from the device profile (read-only, [MS-MDM] / OMA-DM standard objects, Microsoft's
//! DevDetail DDF) and the node store holding what servers and provisioning wrote. Paths of the
//! CSPs the catalogue describes are judged by [`crate::csp_nodes`]; the store's own Add/Replace
//! rules below serve CSP roots the catalogue does not know.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// OMA-DM status codes the tree produces (OMA-DM 1.2 Representation Protocol §10).
pub mod code {
    pub const OK: u16 = 200;
    pub const ACCEPTED: u16 = 202;
    pub const ATOMIC_ROLLBACK_OK: u16 = 216;
    pub const BAD_REQUEST: u16 = 400;
    pub const NOT_FOUND: u16 = 404;
    pub const NOT_ALLOWED: u16 = 405;
    pub const OPTIONAL_NOT_SUPPORTED: u16 = 406;
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    pub const ALREADY_EXISTS: u16 = 418;
    pub const COMMAND_FAILED: u16 = 500;
    pub const ATOMIC_FAILED: u16 = 507;
}

/// A leaf or interior node value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeValue {
    /// `chr`, `int`, `bool`, `b64`, `xml`, `node`, ...
    pub format: String,
    pub mime: Option<String>,
    pub data: Option<String>,
}

/// A Get result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    pub format: String,
    pub mime: Option<String>,
    pub data: String,
}

/// The generic part of the tree (everything but DevInfo/DevDetail).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStore {
    pub nodes: BTreeMap<String, NodeValue>,
}

/// The read-only standard objects as (path, format, value).
pub type BuiltIns = Vec<(String, &'static str, String)>;

/// Validates and normalises a LocURI: must start with `./`, no empty, `.` or `..` segments
/// after the first, no trailing `/` (OMA-DM 1.2 TND §6; Windows rejects a leading `/`).
/// `./Device/Vendor/MSFT/...` and `./Vendor/MSFT/...` name the same device-scope node.
pub fn normalise(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("./")?;
    if rest.is_empty() || rest.ends_with('/') {
        return None;
    }
    if rest
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return None;
    }
    let rest = rest
        .strip_prefix("Device/Vendor/")
        .map(|r| format!("Vendor/{r}"))
        .unwrap_or_else(|| rest.to_string());
    Some(format!("./{rest}"))
}

/// Subtrees whose nodes are Get-only and come from the device profile.
const READ_ONLY_ROOTS: &[&str] = &["./DevInfo", "./DevDetail", "./Vendor/MSFT/DeviceStatus"];

fn is_builtin_path(p: &str) -> bool {
    READ_ONLY_ROOTS
        .iter()
        .any(|r| p == *r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
}

/// Names of the direct children of `path` among `paths`, OMA-DM style (`a/b/c`).
fn children_of<'a>(path: &str, paths: impl Iterator<Item = &'a str>) -> Vec<String> {
    let prefix = format!("{path}/");
    let mut names: Vec<String> = paths
        .filter_map(|p| p.strip_prefix(&prefix))
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
        .collect();
    names.dedup();
    names
}

impl NodeStore {
    /// Get: leaf value, or the child list of an interior node.
    pub fn get(&self, builtins: &BuiltIns, path: &str) -> Result<GetResult, u16> {
        if let Some((_, f, v)) = builtins.iter().find(|(p, _, _)| p == path) {
            return Ok(GetResult {
                format: f.to_string(),
                mime: Some("text/plain".into()),
                data: v.clone(),
            });
        }
        if let Some(v) = self.nodes.get(path) {
            if v.format != "node" {
                return Ok(GetResult {
                    format: v.format.clone(),
                    mime: v.mime.clone(),
                    data: v.data.clone().unwrap_or_default(),
                });
            }
        }
        let mut kids = children_of(path, builtins.iter().map(|(p, _, _)| p.as_str()));
        kids.extend(children_of(path, self.nodes.keys().map(String::as_str)));
        if kids.is_empty() && !self.nodes.contains_key(path) {
            return Err(code::NOT_FOUND);
        }
        Ok(GetResult {
            format: "node".into(),
            mime: None,
            data: kids.join("/"),
        })
    }

    fn exists(&self, builtins: &BuiltIns, path: &str) -> bool {
        self.get(builtins, path).is_ok()
    }

    /// Add: 418 when the node exists, 405 under the read-only standard objects.
    pub fn add(&mut self, builtins: &BuiltIns, path: &str, value: NodeValue) -> u16 {
        if is_builtin_path(path) {
            return if self.exists(builtins, path) {
                code::ALREADY_EXISTS
            } else {
                code::NOT_ALLOWED
            };
        }
        if self.exists(builtins, path) {
            return code::ALREADY_EXISTS;
        }
        self.nodes.insert(path.to_string(), value);
        code::OK
    }

    /// Replace: 405 on read-only nodes; a missing node is created (Windows CSPs accept
    /// Replace of a policy that was never added).
    pub fn replace(&mut self, path: &str, value: NodeValue) -> u16 {
        if is_builtin_path(path) {
            return code::NOT_ALLOWED;
        }
        self.nodes.insert(path.to_string(), value);
        code::OK
    }

    /// Delete a node and its subtree: 404 when absent, 405 on read-only nodes.
    pub fn delete(&mut self, builtins: &BuiltIns, path: &str) -> u16 {
        if is_builtin_path(path) {
            return if self.exists(builtins, path) {
                code::NOT_ALLOWED
            } else {
                code::NOT_FOUND
            };
        }
        let prefix = format!("{path}/");
        let before = self.nodes.len();
        self.nodes
            .retain(|k, _| k != path && !k.starts_with(&prefix));
        if self.nodes.len() == before {
            code::NOT_FOUND
        } else {
            code::OK
        }
    }

    /// Exec: accepted for a node that exists in the store, 405 on read-only nodes, 404 otherwise.
    pub fn exec(&self, builtins: &BuiltIns, path: &str) -> u16 {
        if is_builtin_path(path) {
            return if self.exists(builtins, path) {
                code::NOT_ALLOWED
            } else {
                code::NOT_FOUND
            };
        }
        if self.nodes.contains_key(path) {
            code::OK
        } else {
            code::NOT_FOUND
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtins() -> BuiltIns {
        vec![
            ("./DevInfo/DevId".into(), "chr", "ABC".into()),
            ("./DevDetail/SwV".into(), "chr", "10.0.22631.2428".into()),
        ]
    }

    #[test]
    fn tree_semantics() {
        let b = builtins();
        let mut s = NodeStore::default();
        let v = NodeValue {
            format: "int".into(),
            mime: None,
            data: Some("6".into()),
        };
        assert_eq!(
            s.get(&b, "./DevDetail/SwV").map(|r| r.data),
            Ok("10.0.22631.2428".into())
        );
        assert_eq!(s.get(&b, "./DevInfo").map(|r| r.data), Ok("DevId".into()));
        assert_eq!(s.get(&b, "./Vendor/MSFT/X"), Err(code::NOT_FOUND));
        assert_eq!(s.add(&b, "./Vendor/MSFT/X", v.clone()), code::OK);
        assert_eq!(
            s.add(&b, "./Vendor/MSFT/X", v.clone()),
            code::ALREADY_EXISTS
        );
        assert_eq!(s.replace("./DevDetail/SwV", v.clone()), code::NOT_ALLOWED);
        assert_eq!(
            s.add(&b, "./DevDetail/SwV", v.clone()),
            code::ALREADY_EXISTS
        );
        assert_eq!(s.delete(&b, "./Vendor/MSFT/Y"), code::NOT_FOUND);
        assert_eq!(s.delete(&b, "./Vendor/MSFT"), code::OK);
        assert_eq!(s.exec(&b, "./Vendor/MSFT/Nope"), code::NOT_FOUND);
    }

    #[test]
    fn locuri_rules() {
        assert_eq!(
            normalise("./Device/Vendor/MSFT/A"),
            Some("./Vendor/MSFT/A".into())
        );
        assert_eq!(normalise("./Vendor/MSFT/./A"), None);
        assert_eq!(normalise("/Vendor"), None);
        assert_eq!(normalise("./Vendor/"), None);
        assert_eq!(normalise("./Vendor//A"), None);
        assert_eq!(normalise("./Vendor/../A"), None);
    }
}
