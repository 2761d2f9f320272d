//! Applicability by OS build and edition: the catalogue keeps each DDF node's
//! `MSFT:OsBuildVersion` and `MSFT:EditionAllowList`, and a node the device's build or
//! edition lacks answers 404 to every verb (see `src/csp/generic.rs`), except a policy
//! the device's edition lacks, which answers 405 as Windows does (`src/csp/policy.rs`).

use fake_windows_client::catalogue::{self, Platform};
use fake_windows_client::csp::NodeStore;
use fake_windows_client::ddf;
use fake_windows_client::profile::DeviceProfile;
use fake_windows_client::session::ManagementSession;

const DEVICE_ID: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";
const ADDR: &str = "https://mdm.example.org/api/mdm/microsoft/management";

/// Introduced in Windows 11 21H2 (BitLocker DDF: `10.0.22000`).
const AFTER_19045: &str = "./Vendor/MSFT/BitLocker/RemovableDrivesExcludedFromEncryption";
/// Policy CSP DDF: `10.0.22631.2506` (a cumulative update of 23H2).
const UBR_POLICY: &str =
    "./Device/Vendor/MSFT/Policy/Config/Authentication/EnablePasswordlessExperience";
/// AssignedAccess DDF: edition allow list without Pro (0x30).
const ENTERPRISE_NODE: &str = "./Vendor/MSFT/AssignedAccess/ShellLauncher";
/// Policy CSP DDF: App-V policies, edition allow list without Pro (0x30).
const ENTERPRISE_POLICY: &str =
    "./Device/Vendor/MSFT/Policy/Config/AppVirtualization/AllowAppVClient";
/// Personalization DDF: `99.9.99999`, not in any released build of that DDF edition.
const UNRELEASED: &str = "./Vendor/MSFT/Personalization/CompanyName";

/// A command: verb, LocURI and optional (format, data).
type Cmd<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

/// Sends one message of commands to a fresh device with `profile` and returns the
/// status of each command (CmdID `c0`, `c1`, ...) and the reply.
fn run(profile: DeviceProfile, cmds: &[Cmd]) -> (Vec<String>, String) {
    let b = profile.builtins(DEVICE_ID);
    let mut s = ManagementSession::new("9", ADDR, DEVICE_ID);
    s.first_message(&b, "user");
    let mut store = NodeStore::default();
    let body: String = cmds
        .iter()
        .enumerate()
        .map(|(i, (verb, uri, value))| {
            let item = value
                .map(|(f, d)| {
                    format!(r#"<Meta><Format xmlns="syncml:metinf">{f}</Format></Meta><Data>{d}</Data>"#)
                })
                .unwrap_or_default();
            format!("<{verb}><CmdID>c{i}</CmdID><Item><Target><LocURI>{uri}</LocURI></Target>{item}</Item></{verb}>")
        })
        .collect();
    let xml = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>9</SessionID><MsgID>1</MsgID><Target><LocURI>{DEVICE_ID}</LocURI></Target><Source><LocURI>{ADDR}</LocURI></Source></SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>{body}<Final/></SyncBody></SyncML>"#
    );
    let reply = s
        .handle(&xml, &mut store, &b)
        .expect("handled")
        .expect("reply");
    let d = roxmltree::Document::parse(&reply).expect("xml");
    let codes = (0..cmds.len())
        .map(|i| {
            let r = format!("c{i}");
            d.descendants()
                .filter(|n| n.has_tag_name("Status"))
                .find(|s| {
                    s.children()
                        .any(|c| c.has_tag_name("CmdRef") && c.text() == Some(r.as_str()))
                })
                .and_then(|s| s.children().find(|c| c.has_tag_name("Data")))
                .and_then(|c| c.text())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    (codes, reply)
}

/// Every verb on `uri` (Replace, Get, Delete, Exec) and the Get of its parent.
fn all_verbs<'a>(uri: &'a str, value: (&'a str, &'a str)) -> Vec<Cmd<'a>> {
    vec![
        ("Replace", uri, Some(value)),
        ("Get", uri, None),
        ("Delete", uri, None),
        ("Add", uri, Some(value)),
        ("Exec", uri, None),
    ]
}

#[test]
fn a_node_introduced_after_19045_is_there_on_22631_only() {
    let cmds = all_verbs(AFTER_19045, ("chr", "E:"));
    let (w11, _) = run(DeviceProfile::random(), &cmds);
    assert_eq!(w11, ["200", "200", "200", "200", "405"]);
    let (w10, _) = run(DeviceProfile::windows10_19045_pro(), &cmds);
    assert_eq!(w10, ["404"; 5]);
    // Get of the parent lists the node on 11 and not on 10.
    let get = [("Get", "./Vendor/MSFT/BitLocker", None)];
    let (_, reply) = run(DeviceProfile::random(), &get);
    assert!(
        reply.contains("RemovableDrivesExcludedFromEncryption"),
        "{reply}"
    );
    let (_, reply) = run(DeviceProfile::windows10_19045_pro(), &get);
    assert!(reply.contains("RequireDeviceEncryption"), "{reply}");
    assert!(
        !reply.contains("RemovableDrivesExcludedFromEncryption"),
        "{reply}"
    );
}

#[test]
fn a_policy_needing_a_later_update_revision_answers_404_before_it() {
    let cmds = [
        ("Replace", UBR_POLICY, Some(("int", "1"))),
        ("Get", UBR_POLICY, None),
    ];
    // The default profile is 10.0.22631.2428, below .2506.
    let (before, _) = run(DeviceProfile::random(), &cmds);
    assert_eq!(before, ["404", "404"]);
    let (after, _) = run(
        DeviceProfile::random().with_os_version("10.0.22631.2506"),
        &cmds,
    );
    assert_eq!(after, ["200", "200"]);
    let (w10, _) = run(DeviceProfile::windows10_19045_pro(), &cmds);
    assert_eq!(w10, ["404", "404"]);
}

#[test]
fn enterprise_only_nodes_answer_404_and_policies_405_on_pro_and_200_on_enterprise() {
    let cmds = [
        (
            "Replace",
            ENTERPRISE_NODE,
            Some(("chr", "&lt;ShellLauncherConfiguration/&gt;")),
        ),
        ("Get", ENTERPRISE_NODE, None),
        ("Delete", ENTERPRISE_NODE, None),
        ("Add", ENTERPRISE_POLICY, Some(("chr", "&lt;enabled/&gt;"))),
        ("Get", ENTERPRISE_POLICY, None),
        ("Delete", ENTERPRISE_POLICY, None),
    ];
    let (pro, _) = run(DeviceProfile::random(), &cmds);
    assert_eq!(pro, ["404", "404", "404", "405", "405", "405"]);
    let (ent, _) = run(DeviceProfile::windows11_26100_enterprise(), &cmds);
    assert_eq!(ent, ["200"; 6]);
    let (ent10, _) = run(DeviceProfile::random().with_edition("4"), &cmds);
    assert_eq!(ent10, ["200"; 6]);
}

#[test]
fn nodes_of_unreleased_builds_are_absent_on_every_profile() {
    let cmds = [
        ("Replace", UNRELEASED, Some(("chr", "Contoso"))),
        ("Get", UNRELEASED, None),
    ];
    for p in [
        DeviceProfile::random(),
        DeviceProfile::windows10_19045_pro(),
        DeviceProfile::windows11_26100_enterprise(),
    ] {
        let (got, _) = run(p, &cmds);
        assert_eq!(got, ["404", "404"]);
    }
}

#[test]
fn the_converter_keeps_build_and_editions_and_omits_inherited_ones() {
    let xml = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/ddf/Personalization.xml"
    ));
    let entries = ddf::convert(xml).expect("fixture converts");
    let get = |p: &str| {
        entries
            .iter()
            .find(|e| e.path == format!("./Vendor/MSFT/Personalization{p}"))
            .expect("node")
    };
    let root = get("");
    assert_eq!(root.min_build, "16299");
    assert!(root.editions.starts_with("4;27;48;"), "{}", root.editions);
    // Same applicability as the root: left to inheritance.
    assert_eq!(get("/DesktopImageUrl").min_build, "");
    assert_eq!(get("/DesktopImageUrl").editions, "");
    assert_eq!(get("/CompanyName").min_build, "99999");
    assert!(ddf::line(get("/CompanyName")).ends_with("\t99999"));
    // The bundled catalogue resolves them the same way.
    let c = catalogue::get();
    let node = |p: &str| &c.nodes[c.resolve(p).expect("resolves").node];
    let url = node("./Vendor/MSFT/Personalization/DesktopImageUrl");
    assert_eq!(url.min_build, Some((16299, 0)));
    assert!(url
        .editions
        .as_ref()
        .is_some_and(|e| e.contains(&48) && e.contains(&4)));
    let ent = node(ENTERPRISE_NODE);
    assert!(ent
        .editions
        .as_ref()
        .is_some_and(|e| !e.contains(&48) && e.contains(&4)));
    let ubr = node("./Vendor/MSFT/Policy/Config/Authentication/EnablePasswordlessExperience");
    assert_eq!(ubr.min_build, Some((22631, 2506)));
}

#[test]
fn csp_versions_lists_only_the_csps_the_device_has() {
    let get = [(
        "Get",
        "./Vendor/MSFT/DeviceManageability/Capabilities/CSPVersions",
        None,
    )];
    // DeclaredConfiguration is `99.9.99999` in this DDF edition; PassportForWork is everywhere.
    for p in [
        DeviceProfile::random(),
        DeviceProfile::windows10_19045_pro(),
    ] {
        let (got, reply) = run(p, &get);
        assert_eq!(got, ["200"]);
        assert!(reply.contains("./Vendor/MSFT/PassportForWork"), "{reply}");
        assert!(
            !reply.contains("./Vendor/MSFT/DeclaredConfiguration"),
            "{reply}"
        );
    }
}

#[test]
fn versions_and_edition_lists_parse() {
    assert_eq!(ddf::build_of("10.0.17763"), "17763");
    assert_eq!(ddf::build_of("10.0.22621.2352"), "22621.2352");
    assert_eq!(ddf::build_of("99.9.99999"), "99999");
    assert_eq!(ddf::build_of("junk"), "");
    assert_eq!(ddf::editions_of("0x4;0x1B;0x30;"), "4;27;48");
    assert_eq!(
        Platform::parse("10.0.22631.2428", "48"),
        Some(Platform {
            build: (22631, 2428),
            edition: Some(48)
        })
    );
    assert_eq!(Platform::parse("Windows", "48"), None);
    assert_eq!(
        DeviceProfile::windows10_19045_pro().os_platform(),
        "Windows 10 Pro"
    );
    assert_eq!(
        DeviceProfile::windows11_26100_enterprise().os_platform(),
        "Windows 11 Enterprise"
    );
}
