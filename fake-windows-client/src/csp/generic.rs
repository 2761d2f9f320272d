//! The catalogue-driven CSP: commands on nodes of every CSP the catalogue describes
//! ([`crate::catalogue`]) and no file of its own overrides, answered as Windows does from
//! the node's DDF: 404 for a node the DDF does not declare, 405 for a verb
//! its AccessType lacks, 415 for a `Meta/Format` other than its DFFormat (as the Policy CSP
//! does), 400 for a value outside its allowed values, 418 for Add of an existing node.
//! Values written live in the [`NodeStore`]; Get-only nodes nobody wrote answer the DDF
//! default, the device profile's value, or a placeholder of the declared format.
//! Dynamic nodes (`<name>` in the DDF) exist once added; Get of their parent lists them.
//!
//! Applicability: a node whose DDF `MSFT:Applicability` names a later OS build than the
//! device's, or an edition allow list without the device's edition, is not in that device's
//! tree, so every verb answers 404 and Get of its parent does not list it. Windows builds
//! its DM tree from the CSPs and nodes the installed OS registers; a LocURI outside it gets
//! "404 Not found" (OMA SyncML RepPro 1.2.2 §10, the codes [MS-MDM] §2.2.4.x Status uses)
//! like any other node the tree lacks, not 405, which is for a verb the AccessType of an
//! existing node lacks. No Microsoft page found states the code for this case separately.
//! (A Policy CSP policy the edition lacks is the exception, with evidence: see
//! [`super::policy`].) The device's build and edition come from its DevDetail `SwV` and
//! DeviceStatus `OS/Edition` built-ins (the profile's `os_version` and `os_edition`).
//!
//! Decisions where Windows' answer is not documented:
//! - The AccessType is taken as the DDF states it, also where siblings differ: Firewall
//!   `MdmStore/DomainProfile/EnableFirewall` has Replace only (Get answers 405) while
//!   `PrivateProfile` has Add, Get, Replace. Microsoft generates the DDFs and CSP pages from
//!   the Windows source (MicrosoftDocs/windows-itpro-docs pull request 11648, maintainer's
//!   comment), so the DDF is the best evidence of what the OS registers.
//! - Add of a node that exists answers 418 before the AccessType is consulted, so Add of a
//!   Get-only node that has a value (`./DevDetail/SwV`) is 418, not 405: OMA SyncML RepPro
//!   1.2.2 §10 defines 418 for an Add whose target exists; no capture shows the order
//!   Windows checks in.
//! - Values outside the DDF's allowed values answer 400 only where [`Node::accepts`]
//!   checks them; the others are accepted (see there).

use super::{code, BuiltIns, GetResult, NodeStore, NodeValue};
use crate::catalogue::{self, access, Catalogue, Node, Platform, Resolved};

/// Whether a dynamic instance (or anything below it) is in the store or the built-ins.
fn instance_exists(store: &NodeStore, builtins: &BuiltIns, inst: &str) -> bool {
    let prefix = format!("{inst}/");
    let under = |k: &str| k == inst || k.starts_with(&prefix);
    store.nodes.keys().any(|k| under(k)) || builtins.iter().any(|(p, _, _)| under(p))
}

/// The device's build and edition, from the profile values among the built-ins.
pub fn platform(builtins: &BuiltIns) -> Option<Platform> {
    let value = |path: &str| {
        builtins
            .iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, _, v)| v.as_str())
    };
    Platform::parse(
        value("./DevDetail/SwV")?,
        value("./Vendor/MSFT/DeviceStatus/OS/Edition").unwrap_or(""),
    )
}

/// Whether the node is in this device's tree (see the module doc on applicability).
fn applies(builtins: &BuiltIns, node: &Node) -> bool {
    platform(builtins).is_none_or(|p| node.applies_to(&p))
}

fn resolve<'c>(
    cat: &'c Catalogue,
    builtins: &BuiltIns,
    path: &str,
) -> Result<(Resolved, &'c Node), u16> {
    let r = cat.resolve(path).ok_or(code::NOT_FOUND)?;
    let node = &cat.nodes[r.node];
    if !applies(builtins, node) {
        return Err(code::NOT_FOUND);
    }
    Ok((r, node))
}

/// The node at `path` when `verb` may act on it: 404 for a node (or an instance on its
/// path) that is not there, 405 for a verb its AccessType lacks.
fn permitted<'c>(
    cat: &'c Catalogue,
    store: &NodeStore,
    builtins: &BuiltIns,
    path: &str,
    verb: u8,
) -> Result<(Resolved, &'c Node), u16> {
    let (r, node) = resolve(cat, builtins, path)?;
    if !node.allows(verb) {
        return Err(code::NOT_ALLOWED);
    }
    if !r
        .instances
        .iter()
        .all(|i| instance_exists(store, builtins, i))
    {
        return Err(code::NOT_FOUND);
    }
    Ok((r, node))
}

/// Instances above the node itself (the node's own instance is checked by the verb).
fn ancestors_exist(store: &NodeStore, builtins: &BuiltIns, r: &Resolved, path: &str) -> bool {
    r.instances
        .iter()
        .filter(|i| i.as_str() != path)
        .all(|i| instance_exists(store, builtins, i))
}

/// A value of the declared format for a Get-only node nobody wrote.
fn placeholder(cat: &Catalogue, builtins: &BuiltIns, node: &Node) -> String {
    if node
        .path
        .ends_with("/DeviceManageability/Capabilities/CSPVersions")
    {
        return csp_versions(cat, builtins);
    }
    match node.format.as_str() {
        "int" => "0".into(),
        "bool" => "false".into(),
        "time" => time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// DeviceManageability CSP `Capabilities/CSPVersions`: the CSPs this device has and their
/// versions.
fn csp_versions(cat: &Catalogue, builtins: &BuiltIns) -> String {
    let list: String = cat
        .nodes
        .iter()
        .filter(|n| n.declared && !n.path.starts_with("./User/"))
        .filter(|n| applies(builtins, n))
        .filter_map(|n| {
            n.csp_version
                .as_ref()
                .map(|v| format!(r#"<CSP Node="{}" Version="{v}"/>"#, n.path))
        })
        .collect();
    format!(
        r#"<DeviceManageability Version="com.microsoft/1.1/MDM/DeviceManageability"><Capabilities><CSPVersions>{list}</CSPVersions></Capabilities></DeviceManageability>"#
    )
}

/// The value a leaf answers, if it has one.
fn leaf_value(
    cat: &Catalogue,
    store: &NodeStore,
    builtins: &BuiltIns,
    node: &Node,
    path: &str,
) -> Option<GetResult> {
    if let Some(v) = store.nodes.get(path) {
        return Some(GetResult {
            format: v.format.clone(),
            mime: v.mime.clone().or(Some("text/plain".into())),
            data: v.data.clone().unwrap_or_default(),
        });
    }
    let text = |format: &str, data: String| GetResult {
        format: format.to_string(),
        mime: Some("text/plain".into()),
        data,
    };
    if let Some((_, f, v)) = builtins.iter().find(|(p, _, _)| p == path) {
        return Some(text(f, v.clone()));
    }
    if let Some(d) = &node.default {
        return Some(text(&node.format, d.clone()));
    }
    if !node.allows(access::ADD) && !node.allows(access::REPLACE) {
        return Some(text(&node.format, placeholder(cat, builtins, node)));
    }
    None
}

/// Names below `path` in the store and built-ins.
fn stored_children(store: &NodeStore, builtins: &BuiltIns, path: &str) -> Vec<String> {
    let prefix = format!("{path}/");
    let mut out: Vec<String> = store
        .nodes
        .keys()
        .map(String::as_str)
        .chain(builtins.iter().map(|(p, _, _)| p.as_str()))
        .filter_map(|k| k.strip_prefix(&prefix))
        .map(|r| r.split('/').next().unwrap_or(r).to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Get: a leaf's value or an interior node's child list.
pub fn get(store: &NodeStore, builtins: &BuiltIns, path: &str) -> Result<GetResult, u16> {
    let cat = catalogue::get();
    let (r, node) = permitted(cat, store, builtins, path, access::GET)?;
    if !node.is_interior() {
        return leaf_value(cat, store, builtins, node, path).ok_or(code::NOT_FOUND);
    }
    let mut kids: Vec<String> = Vec::new();
    let platform = platform(builtins);
    for k in cat.children(r.node).iter().map(|i| &cat.nodes[*i]) {
        if !k.dynamic && platform.is_none_or(|p| k.applies_to(&p)) {
            kids.push(k.name.clone());
        }
    }
    for s in stored_children(store, builtins, path) {
        if !kids.iter().any(|k| k.eq_ignore_ascii_case(&s)) {
            kids.push(s);
        }
    }
    Ok(GetResult {
        format: "node".into(),
        mime: None,
        data: kids.join("/"),
    })
}

/// Format and value checks shared by Add and Replace; fills in an absent format.
fn check_value(node: &Node, value: &mut NodeValue) -> Result<(), u16> {
    if value.format.is_empty() {
        value.format = node.format.clone();
    }
    if value.format != node.format {
        return Err(code::UNSUPPORTED_MEDIA_TYPE);
    }
    if !node.is_interior() && !node.accepts(value.data.as_deref().unwrap_or("")) {
        return Err(code::BAD_REQUEST);
    }
    Ok(())
}

/// Add: creates a leaf value or a dynamic instance (and the instances above it, which
/// Windows adds implicitly).
pub fn add(store: &mut NodeStore, builtins: &BuiltIns, path: &str, mut value: NodeValue) -> u16 {
    let cat = catalogue::get();
    let Ok((r, node)) = resolve(cat, builtins, path) else {
        return code::NOT_FOUND;
    };
    let own_instance = r.instances.last().is_some_and(|i| i == path);
    let exists = if own_instance {
        instance_exists(store, builtins, path)
    } else if node.allows(access::ADD) {
        store.nodes.contains_key(path) || builtins.iter().any(|(p, _, _)| p == path)
    } else {
        ancestors_exist(store, builtins, &r, path)
            && (node.is_interior() || leaf_value(cat, store, builtins, node, path).is_some())
    };
    if exists {
        return code::ALREADY_EXISTS;
    }
    if !node.allows(access::ADD) {
        return code::NOT_ALLOWED;
    }
    if let Err(c) = check_value(node, &mut value) {
        return c;
    }
    store.nodes.insert(path.to_string(), value);
    code::OK
}

/// Replace: sets a leaf the AccessType lets the server write; the instances above it must exist.
pub fn replace(
    store: &mut NodeStore,
    builtins: &BuiltIns,
    path: &str,
    mut value: NodeValue,
) -> u16 {
    let cat = catalogue::get();
    let node = match permitted(cat, store, builtins, path, access::REPLACE) {
        Ok((_, node)) => node,
        Err(c) => return c,
    };
    if let Err(c) = check_value(node, &mut value) {
        return c;
    }
    if node.is_interior() {
        return code::OK;
    }
    store.nodes.insert(path.to_string(), value);
    code::OK
}

/// Add (`replace == false`) or Replace.
pub fn set(
    store: &mut NodeStore,
    builtins: &BuiltIns,
    path: &str,
    value: NodeValue,
    replace_: bool,
) -> u16 {
    if replace_ {
        replace(store, builtins, path, value)
    } else {
        add(store, builtins, path, value)
    }
}

/// Delete: removes what was written at and below the node.
pub fn delete(store: &mut NodeStore, builtins: &BuiltIns, path: &str) -> u16 {
    let cat = catalogue::get();
    let Ok((_, node)) = resolve(cat, builtins, path) else {
        return code::NOT_FOUND;
    };
    if !node.allows(access::DELETE) {
        return code::NOT_ALLOWED;
    }
    store.delete(path)
}

/// Exec: accepted on a node whose AccessType has Exec and whose instances exist.
pub fn exec(store: &NodeStore, builtins: &BuiltIns, path: &str) -> u16 {
    let cat = catalogue::get();
    match permitted(cat, store, builtins, path, access::EXEC) {
        Ok(_) => code::OK,
        Err(c) => c,
    }
}

/// Every CSP of the catalogue without a file of its own: the trait's default methods.
pub struct Generic;

impl super::Csp for Generic {
    fn roots(&self) -> &'static [&'static str] {
        &[]
    }
}
