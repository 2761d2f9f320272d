//! The emulated device's configuration service providers.
//!
//! Every CSP answers through the [`Csp`] trait; [`tree::Tree`] sends each command to the
//! CSP owning its path. CSPs with behaviour beyond their DDF have a file here ([`policy`],
//! [`reboot`], [`dmclient`]); every other CSP of Microsoft's DDF catalogue is served by
//! [`generic`] from its DDF (404 for a node the catalogue lacks, 405 for a verb outside the
//! AccessType, 415/400 for a value outside the declared format and allowed values, 418 for
//! Add of an existing node). Adding a CSP with special behaviour is one file implementing
//! [`Csp`] and its line in [`tree::SPECIAL`].
//!
//! A path under no CSP of the catalogue answers 404: Windows builds its DM tree from the
//! CSPs the OS registers, and a LocURI outside it is "Not found" (OMA SyncML RepPro 1.2.2
//! §10). This module also holds the node store where written values live, and the
//! DevInfo/DevDetail/DeviceStatus values of the device profile ([`BuiltIns`]).

pub use crate::admx;
pub mod devdetail;
pub mod dmclient;
pub mod generic;
pub mod policy;
pub mod reboot;
pub mod tree;

pub use tree::{Effects, Tree};

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

impl NodeStore {
    /// Stores a value as written (provisioning and the CSPs' own checks come first).
    pub fn put(&mut self, path: &str, value: NodeValue) {
        self.nodes.insert(path.to_string(), value);
    }

    /// Removes a node and its subtree: 200, or 404 when nothing was stored there.
    pub fn delete(&mut self, path: &str) -> u16 {
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
}

/// One configuration service provider. The default methods answer from the CSP's DDF in
/// the catalogue ([`generic`]); a CSP with behaviour of its own overrides what differs.
pub trait Csp: Sync {
    /// The CSP's root paths, after [`normalise`] (e.g. `./Vendor/MSFT/Reboot`).
    fn roots(&self) -> &'static [&'static str];

    fn get(&self, cx: &Tree, path: &str) -> Result<GetResult, u16> {
        generic::get(cx.store, cx.builtins, path)
    }

    /// Add (`replace == false`) or Replace.
    fn set(&self, cx: &mut Tree, path: &str, value: NodeValue, replace: bool) -> u16 {
        generic::set(cx.store, cx.builtins, path, value, replace)
    }

    fn delete(&self, cx: &mut Tree, path: &str) -> u16 {
        generic::delete(cx.store, cx.builtins, path)
    }

    fn exec(&self, cx: &mut Tree, path: &str) -> u16 {
        generic::exec(cx.store, cx.builtins, path)
    }
}

/// Whether `path` is `root` or below it.
pub fn under(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_delete_removes_a_subtree() {
        let mut s = NodeStore::default();
        let v = NodeValue {
            format: "int".into(),
            mime: None,
            data: Some("6".into()),
        };
        s.put("./Vendor/MSFT/Firewall/FirewallRules/R/Action/Type", v);
        assert_eq!(
            s.delete("./Vendor/MSFT/Firewall/FirewallRules/Other"),
            code::NOT_FOUND
        );
        assert_eq!(s.delete("./Vendor/MSFT/Firewall/FirewallRules/R"), code::OK);
        assert!(s.nodes.is_empty());
        assert!(under(
            "./Vendor/MSFT/Reboot/RebootNow",
            "./Vendor/MSFT/Reboot"
        ));
        assert!(!under("./Vendor/MSFT/RebootX", "./Vendor/MSFT/Reboot"));
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
