//! The device's CSP tree as a session sees it: each command goes to the CSP owning its
//! path ([`SPECIAL`] first, the catalogue-driven [`Generic`] otherwise). Actions Windows
//! performs after the session (unenroll, reboot) are collected as [`Effects`].

use super::dmclient::DmClient;
use super::generic::Generic;
use super::policy::Policy;
use super::reboot::Reboot;
use super::{under, BuiltIns, Csp, GetResult, NodeStore, NodeValue};
use serde::{Deserialize, Serialize};

/// CSPs with behaviour beyond their DDF; every other path is [`Generic`]'s.
pub static SPECIAL: &[&dyn Csp] = &[&Policy, &Reboot, &DmClient];

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

/// The CSP answering for a normalised path.
pub fn csp_for(path: &str) -> &'static dyn Csp {
    SPECIAL
        .iter()
        .find(|c| c.roots().iter().any(|r| under(path, r)))
        .copied()
        .unwrap_or(&Generic)
}

impl Tree<'_> {
    pub fn get(&self, path: &str) -> Result<GetResult, u16> {
        csp_for(path).get(self, path)
    }

    /// Add (`replace == false`) or Replace. An absent `Meta/Format` is the node's own.
    pub fn set(&mut self, path: &str, value: NodeValue, replace: bool) -> u16 {
        csp_for(path).set(self, path, value, replace)
    }

    pub fn delete(&mut self, path: &str) -> u16 {
        csp_for(path).delete(self, path)
    }

    pub fn exec(&mut self, path: &str) -> u16 {
        csp_for(path).exec(self, path)
    }
}
