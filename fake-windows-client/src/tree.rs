//! The device's CSP tree as the session sees it: Policy CSP, DMClient and Reboot behave as
//! their CSPs do; every other CSP the DDF catalogue describes answers from its DDF
//! ([`csp_nodes`]), DevInfo/DevDetail/DeviceStatus with the device profile's values; a path
//! under a CSP root the catalogue does not know goes to the generic node store. Actions Windows performs after the session (unenroll,
//! reboot) are collected as [`Effects`].

use crate::csp::{code, BuiltIns, GetResult, NodeStore, NodeValue};
use crate::{catalogue, csp_nodes, policy};
use serde::{Deserialize, Serialize};

const DMCLIENT_PROVIDERS: &str = "./Vendor/MSFT/DMClient/Provider";
const REBOOT: &str = "./Vendor/MSFT/Reboot";
const REBOOT_NOW: &str = "./Vendor/MSFT/Reboot/RebootNow";

/// What the server's commands asked the device to do once the session is over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects {
    /// ProviderID of a DMClient `Unenroll` Exec answered with 200.
    pub unenroll_provider: Option<String>,
    /// RebootNow Execs answered with 200.
    pub reboots: u32,
}

/// The tree for one command: node store, built-ins and collected effects.
pub struct Tree<'a> {
    pub store: &'a mut NodeStore,
    pub builtins: &'a BuiltIns,
    pub effects: &'a mut Effects,
}

/// `Provider/<ID>/Unenroll` → `<ID>`.
fn unenroll_provider(path: &str) -> Option<&str> {
    path.strip_prefix(DMCLIENT_PROVIDERS)?
        .strip_prefix('/')?
        .strip_suffix("/Unenroll")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

impl Tree<'_> {
    /// Whether a Policy CSP path names a policy this device's build and edition have
    /// (the catalogue's `MSFT:Applicability`; `Policy/Result/...` follows its
    /// `Policy/Config/...` node). Windows answers 404 for a policy the OS lacks, as
    /// [`csp_nodes`] does for other CSPs' nodes. Non-policy paths always pass here.
    fn policy_applies(&self, path: &str) -> bool {
        if !policy::is_policy_path(path) {
            return true;
        }
        let cat = catalogue::get();
        let config = path.replacen("/Policy/Result/", "/Policy/Config/", 1);
        match (csp_nodes::platform(self.builtins), cat.resolve(&config)) {
            (Some(p), Some(r)) => cat.nodes[r.node].applies_to(&p),
            _ => true,
        }
    }

    pub fn get(&self, path: &str) -> Result<GetResult, u16> {
        if !self.policy_applies(path) {
            return Err(code::NOT_FOUND);
        }
        if policy::is_policy_path(path) {
            return policy::get(self.store, path);
        }
        if path == REBOOT {
            return Ok(GetResult {
                format: "node".into(),
                mime: None,
                data: "RebootNow/Schedule".into(),
            });
        }
        if path == REBOOT_NOW {
            // Reboot CSP DDF: RebootNow is Exec/Get with an empty value.
            return Ok(GetResult {
                format: "null".into(),
                mime: Some("text/plain".into()),
                data: String::new(),
            });
        }
        if catalogue::get().covers(path) {
            return csp_nodes::get(self.store, self.builtins, path);
        }
        self.store.get(self.builtins, path)
    }

    /// Add or Replace. An absent `Meta/Format` is the node's own format (chr for the
    /// generic store).
    pub fn set(&mut self, path: &str, mut value: NodeValue, replace: bool) -> u16 {
        if !self.policy_applies(path) {
            return code::NOT_FOUND;
        }
        if policy::is_policy_path(path) {
            if value.format.is_empty() {
                if let Some(def) = policy_def(path) {
                    value.format = def.format.clone();
                }
            }
            return policy::set(self.store, path, value, replace);
        }
        if path == REBOOT_NOW || unenroll_provider(path).is_some() {
            return code::NOT_ALLOWED;
        }
        if catalogue::get().covers(path) {
            return if replace {
                csp_nodes::replace(self.store, self.builtins, path, value)
            } else {
                csp_nodes::add(self.store, self.builtins, path, value)
            };
        }
        if value.format.is_empty() {
            value.format = "chr".into();
        }
        if replace {
            self.store.replace(path, value)
        } else {
            self.store.add(self.builtins, path, value)
        }
    }

    pub fn delete(&mut self, path: &str) -> u16 {
        if !self.policy_applies(path) {
            return code::NOT_FOUND;
        }
        if policy::is_policy_path(path) {
            return policy::delete(self.store, path);
        }
        if path == REBOOT_NOW || unenroll_provider(path).is_some() {
            return code::NOT_ALLOWED;
        }
        if catalogue::get().covers(path) {
            return csp_nodes::delete(self.store, self.builtins, path);
        }
        self.store.delete(self.builtins, path)
    }

    pub fn exec(&mut self, path: &str) -> u16 {
        if !self.policy_applies(path) {
            return code::NOT_FOUND;
        }
        if policy::is_policy_path(path) {
            return code::NOT_ALLOWED;
        }
        if path == REBOOT_NOW {
            self.effects.reboots += 1;
            return code::OK;
        }
        if let Some(id) = unenroll_provider(path) {
            // DMClient CSP: only the provider this device is enrolled with can be removed.
            let prefix = format!("{DMCLIENT_PROVIDERS}/{id}/");
            if !self.store.nodes.keys().any(|k| k.starts_with(&prefix)) {
                return code::NOT_FOUND;
            }
            self.effects.unenroll_provider = Some(id.to_string());
            return code::OK;
        }
        if catalogue::get().covers(path) {
            return csp_nodes::exec(self.store, self.builtins, path);
        }
        self.store.exec(self.builtins, path)
    }
}

fn policy_def(path: &str) -> Option<&'static policy::PolicyDef> {
    let mut segs = path.rsplit('/');
    let name = segs.next()?;
    let area = segs.next()?;
    policy::lookup(area, name)
}
