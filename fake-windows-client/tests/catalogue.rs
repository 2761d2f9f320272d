//! The CSP catalogue derived from Microsoft's DDF files: the converter's output, and the
//! status codes the device answers from it, fed through the I/O-free management session.

use fake_windows_client::catalogue;
use fake_windows_client::csp::{BuiltIns, NodeStore};
use fake_windows_client::ddf;
use fake_windows_client::profile::DeviceProfile;
use fake_windows_client::session::ManagementSession;

const DEVICE_ID: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";
const ADDR: &str = "https://mdm.example.org/api/mdm/microsoft/management";

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/ddf/",
            $name
        ))
    };
}

#[test]
fn header_counts_match_the_nodes_per_csp() {
    let c = catalogue::get();
    assert!(c.edition.contains("May 2024"), "{}", c.edition);
    assert!(c.header_counts.len() >= 45, "{:?}", c.header_counts);
    assert_eq!(c.counts(), c.header_counts);
    let total: usize = c.header_counts.iter().map(|(_, n)| n).sum();
    let lines = catalogue::text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    assert_eq!(total, lines, "every line is one declared node");
    assert!(total > 5000);
}

#[test]
fn converter_output_on_fixtures_is_in_the_catalogue() {
    let c = catalogue::get();
    let data = catalogue::text();
    // The header names each edition list once (`#editions\tE<n>\t<list>`).
    let ids: std::collections::BTreeMap<String, String> = data
        .lines()
        .filter_map(|l| l.strip_prefix("#editions\t")?.split_once('\t'))
        .map(|(id, list)| (list.to_string(), id.to_string()))
        .collect();
    for (csp, xml) in [
        ("Reboot", fixture!("Reboot.xml")),
        ("DevInfo", fixture!("DevInfo.xml")),
        ("RemoteLock", fixture!("RemoteLock.xml")),
        ("Personalization", fixture!("Personalization.xml")),
    ] {
        let entries = ddf::convert(xml).expect("fixture converts");
        let counted = c.header_counts.iter().find(|(n, _)| n == csp).map(|x| x.1);
        assert_eq!(counted, Some(entries.len()), "{csp}");
        for e in &entries {
            assert_eq!(ddf::csp_of(&e.path), csp);
            let l = ddf::line_in(e, &ids);
            assert!(data.lines().any(|x| x == l), "{csp}: {l:?} missing");
        }
    }
    let reboot = ddf::convert(fixture!("Reboot.xml")).expect("reboot");
    let now = reboot
        .iter()
        .find(|e| e.path == "./Vendor/MSFT/Reboot/RebootNow")
        .expect("RebootNow");
    assert_eq!((now.access.as_str(), now.format.as_str()), ("EG", "null"));
}

#[test]
fn dynamic_paths_resolve_and_unknown_ones_do_not() {
    let c = catalogue::get();
    let r = c
        .resolve("./Vendor/MSFT/Firewall/MdmStore/FirewallRules/R1/Action/Type")
        .expect("resolves");
    assert_eq!(
        c.nodes[r.node].path,
        "./Vendor/MSFT/Firewall/MdmStore/FirewallRules/<FirewallRuleName>/Action/Type"
    );
    assert_eq!(
        r.instances,
        vec!["./Vendor/MSFT/Firewall/MdmStore/FirewallRules/R1".to_string()]
    );
    assert!(c.resolve("./Vendor/MSFT/Firewall/MdmStore/Nope").is_none());
    assert!(c.covers("./Vendor/MSFT/Defender/Anything"));
    assert!(c.covers("./User/Vendor/MSFT/DMClient/Provider"));
    assert!(!c.covers("./Vendor/MSFT/winmdm/Test"));
}

/// (verb, LocURI, Meta/Format, Data, expected status).
type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a str);

struct H {
    s: ManagementSession,
    store: NodeStore,
    b: BuiltIns,
    ours: u32,
}

fn h() -> H {
    let b = DeviceProfile::random().builtins(DEVICE_ID);
    let mut s = ManagementSession::new("9", ADDR, DEVICE_ID);
    s.first_message(&b, "user");
    H {
        s,
        store: NodeStore::default(),
        b,
        ours: 1,
    }
}

fn cmd(verb: &str, id: &str, uri: &str, format: Option<&str>, data: Option<&str>) -> String {
    let meta = format
        .map(|f| format!(r#"<Meta><Format xmlns="syncml:metinf">{f}</Format></Meta>"#))
        .unwrap_or_default();
    let data = data
        .map(|d| format!("<Data>{d}</Data>"))
        .unwrap_or_default();
    format!("<{verb}><CmdID>{id}</CmdID><Item><Target><LocURI>{uri}</LocURI></Target>{meta}{data}</Item></{verb}>")
}

impl H {
    /// Sends `body` and returns (CmdRef, status) pairs and the reply.
    fn send(&mut self, body: &str) -> (Vec<(String, String)>, String) {
        let xml = format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>9</SessionID><MsgID>{m}</MsgID><Target><LocURI>{DEVICE_ID}</LocURI></Target><Source><LocURI>{ADDR}</LocURI></Source></SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>{m}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>{body}<Final/></SyncBody></SyncML>"#,
            m = self.ours
        );
        let reply = self
            .s
            .handle(&xml, &mut self.store, &self.b)
            .expect("handled")
            .expect("reply");
        self.ours += 1;
        let d = roxmltree::Document::parse(&reply).expect("xml");
        let codes = d
            .descendants()
            .filter(|n| n.has_tag_name("Status"))
            .skip(1)
            .map(|s| {
                let t = |n: &str| {
                    s.children()
                        .find(|c| c.has_tag_name(n))
                        .and_then(|c| c.text())
                        .unwrap_or("")
                        .to_string()
                };
                (t("CmdRef"), t("Data"))
            })
            .collect();
        (codes, reply)
    }

    /// Runs `(verb, uri, format, data, expected status)` commands and checks each status.
    fn expect(&mut self, cases: &[Case]) -> String {
        let body: String = cases
            .iter()
            .enumerate()
            .map(|(i, (v, u, f, d, _))| cmd(v, &format!("c{i}"), u, *f, *d))
            .collect();
        let (got, reply) = self.send(&body);
        let want: Vec<(String, String)> = cases
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("c{i}"), c.4.to_string()))
            .collect();
        for (w, g) in want.iter().zip(&got) {
            let case = cases[w.0[1..].parse::<usize>().unwrap_or(0)];
            assert_eq!(w, g, "{} {}", case.0, case.1);
        }
        assert_eq!(want.len(), got.len(), "{reply}");
        reply
    }
}

/// The Results data for CmdRef `r`.
fn result(reply: &str, r: &str) -> Option<(String, String)> {
    let d = roxmltree::Document::parse(reply).ok()?;
    let res = d.descendants().find(|n| {
        n.has_tag_name("Results")
            && n.children()
                .any(|c| c.has_tag_name("CmdRef") && c.text() == Some(r))
    })?;
    let text = |name: &str| {
        res.descendants()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .unwrap_or("")
            .to_string()
    };
    Some((text("Format"), text("Data")))
}

const FW: &str = "./Vendor/MSFT/Firewall/MdmStore";

#[test]
fn permitted_commands_answer_200_across_csps() {
    let mut h = h();
    let rule = format!("{FW}/FirewallRules/AllowWinmdm");
    let reply = h.expect(&[
        (
            "Get",
            "./Vendor/MSFT/Defender/Health/ProductStatus",
            None,
            None,
            "200",
        ),
        (
            "Get",
            "./Device/Vendor/MSFT/BitLocker/Status/DeviceEncryptionStatus",
            None,
            None,
            "200",
        ),
        (
            "Get",
            "./Vendor/MSFT/DeviceStatus/Battery/Status",
            None,
            None,
            "200",
        ),
        (
            "Get",
            "./Vendor/MSFT/DeviceManageability/Capabilities/CSPVersions",
            None,
            None,
            "200",
        ),
        (
            "Replace",
            "./Vendor/MSFT/BitLocker/RequireDeviceEncryption",
            Some("int"),
            Some("1"),
            "200",
        ),
        (
            "Replace",
            &format!("{FW}/DomainProfile/EnableFirewall"),
            Some("bool"),
            Some("false"),
            "200",
        ),
        ("Add", &rule, Some("node"), None, "200"),
        (
            "Replace",
            &format!("{rule}/Action/Type"),
            Some("int"),
            Some("0"),
            "200",
        ),
        ("Get", &format!("{FW}/FirewallRules"), None, None, "200"),
        ("Get", &format!("{rule}/Action/Type"), None, None, "200"),
        (
            "Add",
            "./Vendor/MSFT/Personalization/DesktopImageUrl",
            Some("chr"),
            Some("https://example.org/a.jpg"),
            "200",
        ),
        (
            "Get",
            "./Vendor/MSFT/Personalization/DesktopImageUrl",
            None,
            None,
            "200",
        ),
        (
            "Exec",
            "./Vendor/MSFT/Defender/Scan",
            None,
            Some("1"),
            "200",
        ),
        (
            "Exec",
            "./Device/Vendor/MSFT/RemoteLock/Lock",
            None,
            None,
            "200",
        ),
        (
            "Get",
            "./Vendor/MSFT/LAPS/Policies/BackupDirectory",
            None,
            None,
            "200",
        ),
        (
            "Get",
            "./Vendor/MSFT/HealthAttestation/Status",
            None,
            None,
            "200",
        ),
        ("Get", "./DevDetail/SwV", None, None, "200"),
        (
            "Get",
            "./User/Vendor/MSFT/DMClient/Provider",
            None,
            None,
            "200",
        ),
        (
            "Get",
            "./Vendor/MSFT/NetworkProxy/ProxySettingsPerUser",
            None,
            None,
            "200",
        ),
    ]);
    let csps = result(&reply, "c3").expect("CSPVersions");
    assert!(
        csps.1
            .contains(r#"<CSP Node="./Vendor/MSFT/Firewall" Version="#),
        "{csps:?}"
    );
    assert_eq!(result(&reply, "c0").map(|r| r.0), Some("int".into()));
    assert_eq!(
        result(&reply, "c8").map(|r| r.1),
        Some("AllowWinmdm".into())
    );
    assert_eq!(result(&reply, "c9"), Some(("int".into(), "0".into())));
    assert_eq!(
        result(&reply, "c11").map(|r| r.1),
        Some("https://example.org/a.jpg".into())
    );
    assert_eq!(
        result(&reply, "c14"),
        Some(("int".into(), "0".into())),
        "DDF default"
    );
    assert_eq!(result(&reply, "c16").map(|r| r.0), Some("chr".into()));
}

#[test]
fn verbs_outside_the_access_type_answer_405() {
    let mut h = h();
    h.expect(&[
        (
            "Replace",
            "./Vendor/MSFT/Defender/Health/ProductStatus",
            Some("int"),
            Some("0"),
            "405",
        ),
        (
            "Replace",
            "./Device/Vendor/MSFT/BitLocker/Status/DeviceEncryptionStatus",
            Some("int"),
            Some("0"),
            "405",
        ),
        (
            "Delete",
            "./Vendor/MSFT/DeviceStatus/OS/Edition",
            None,
            None,
            "405",
        ),
        (
            "Exec",
            &format!("{FW}/DomainProfile/EnableFirewall"),
            None,
            None,
            "405",
        ),
        (
            "Get",
            &format!("{FW}/DomainProfile/EnableFirewall"),
            None,
            None,
            "405",
        ),
        (
            "Replace",
            "./Vendor/MSFT/HealthAttestation/Status",
            Some("int"),
            Some("1"),
            "405",
        ),
        (
            "Exec",
            "./Vendor/MSFT/Personalization/DesktopImageUrl",
            None,
            None,
            "405",
        ),
        (
            "Replace",
            "./Vendor/MSFT/RemoteLock/Lock",
            None,
            None,
            "405",
        ),
        (
            "Delete",
            "./Vendor/MSFT/WindowsLicensing/Edition",
            None,
            None,
            "405",
        ),
        ("Replace", "./DevInfo/Man", Some("chr"), Some("x"), "405"),
        (
            "Exec",
            "./Vendor/MSFT/DeviceManageability/Capabilities/CSPVersions",
            None,
            None,
            "405",
        ),
    ]);
}

#[test]
fn nodes_the_ddf_does_not_declare_answer_404() {
    let mut h = h();
    h.expect(&[
        ("Get", &format!("{FW}/NoSuchProfile"), None, None, "404"),
        (
            "Get",
            "./Vendor/MSFT/Defender/Health/NoSuchCounter",
            None,
            None,
            "404",
        ),
        (
            "Replace",
            "./Vendor/MSFT/BitLocker/NoSuchSetting",
            Some("int"),
            Some("1"),
            "404",
        ),
        (
            "Add",
            "./Vendor/MSFT/LAPS/Policies/Nope",
            Some("int"),
            Some("1"),
            "404",
        ),
        (
            "Exec",
            "./Vendor/MSFT/RemoteWipe/doWipeLater",
            None,
            None,
            "404",
        ),
        (
            "Get",
            "./DevDetail/Ext/Microsoft/NoSuchValue",
            None,
            None,
            "404",
        ),
        // A dynamic instance nobody added.
        (
            "Get",
            &format!("{FW}/FirewallRules/Never/Action/Type"),
            None,
            None,
            "404",
        ),
        (
            "Replace",
            &format!("{FW}/FirewallRules/Never/Action/Type"),
            Some("int"),
            Some("1"),
            "404",
        ),
        // A setting with no default nobody wrote.
        (
            "Get",
            "./Vendor/MSFT/Personalization/DesktopImageUrl",
            None,
            None,
            "404",
        ),
        (
            "Delete",
            "./Vendor/MSFT/Personalization/DesktopImageUrl",
            None,
            None,
            "404",
        ),
    ]);
}

#[test]
fn wrong_formats_answer_415_and_bad_values_400() {
    let mut h = h();
    h.expect(&[
        (
            "Replace",
            &format!("{FW}/DomainProfile/EnableFirewall"),
            Some("int"),
            Some("0"),
            "415",
        ),
        (
            "Replace",
            "./Vendor/MSFT/BitLocker/RequireDeviceEncryption",
            Some("chr"),
            Some("1"),
            "415",
        ),
        (
            "Add",
            "./Vendor/MSFT/Personalization/DesktopImageUrl",
            Some("int"),
            Some("1"),
            "415",
        ),
        (
            "Replace",
            "./Vendor/MSFT/NetworkProxy/ProxySettingsPerUser",
            Some("bool"),
            Some("true"),
            "415",
        ),
        (
            "Replace",
            "./Vendor/MSFT/BitLocker/RequireDeviceEncryption",
            Some("int"),
            Some("7"),
            "400",
        ),
        (
            "Replace",
            &format!("{FW}/DomainProfile/EnableFirewall"),
            Some("bool"),
            Some("yes"),
            "400",
        ),
        (
            "Replace",
            "./Vendor/MSFT/LAPS/Policies/BackupDirectory",
            Some("int"),
            Some("x"),
            "400",
        ),
        // Without Meta/Format the node's own format applies.
        (
            "Replace",
            "./Vendor/MSFT/LAPS/Policies/BackupDirectory",
            None,
            Some("2"),
            "200",
        ),
    ]);
}

#[test]
fn add_of_an_existing_node_answers_418_and_delete_removes_instances() {
    let mut h = h();
    let rule = format!("{FW}/FirewallRules/R1");
    h.expect(&[
        ("Add", &rule, None, None, "200"),
        ("Add", &rule, None, None, "418"),
        (
            "Add",
            "./Vendor/MSFT/Defender/Health/ProductStatus",
            Some("int"),
            Some("0"),
            "418",
        ),
        ("Add", "./DevDetail/SwV", Some("chr"), Some("1"), "418"),
        (
            "Add",
            "./Vendor/MSFT/Personalization/LockScreenImageUrl",
            Some("chr"),
            Some("Contoso"),
            "200",
        ),
        (
            "Add",
            "./Device/Vendor/MSFT/Personalization/LockScreenImageUrl",
            Some("chr"),
            Some("Again"),
            "418",
        ),
        (
            "Add",
            &format!("{FW}/DomainProfile/EnableFirewall"),
            Some("bool"),
            Some("true"),
            "418",
        ),
        // Implicit add of the instance above a leaf.
        (
            "Add",
            "./Vendor/MSFT/Office/Installation/o1/Install",
            Some("chr"),
            Some("x"),
            "405",
        ),
        (
            "Add",
            &format!("{FW}/FirewallRules/R9/Name"),
            Some("chr"),
            Some("Nine"),
            "200",
        ),
        ("Get", &format!("{FW}/FirewallRules"), None, None, "200"),
        ("Delete", &rule, None, None, "200"),
        ("Get", &rule, None, None, "404"),
        ("Get", &format!("{FW}/FirewallRules"), None, None, "200"),
    ]);
    let (_, reply) = h.send(&cmd("Get", "g", &format!("{FW}/FirewallRules"), None, None));
    assert_eq!(result(&reply, "g").map(|r| r.1), Some("R9".into()));
}

#[test]
fn device_and_legacy_paths_are_one_node_and_user_scope_is_apart() {
    let mut h = h();
    let reply = h.expect(&[
        (
            "Replace",
            "./Device/Vendor/MSFT/BitLocker/RequireDeviceEncryption",
            Some("int"),
            Some("1"),
            "200",
        ),
        (
            "Get",
            "./Vendor/MSFT/BitLocker/RequireDeviceEncryption",
            None,
            None,
            "200",
        ),
        (
            "Add",
            "./User/Vendor/MSFT/Personalization/LockScreenImageUrl",
            Some("chr"),
            Some("x"),
            "404",
        ),
        ("Get", "./User/Vendor/MSFT/NoSuchCsp", None, None, "404"),
    ]);
    assert_eq!(result(&reply, "c1").map(|r| r.1), Some("1".into()));
}

#[test]
fn policies_beyond_the_curated_table_come_from_the_catalogue() {
    let n = fake_windows_client::csp::policy::table().len();
    assert!(n > 2000, "{n}");
    let mut h = h();
    let cfg = "./Device/Vendor/MSFT/Policy/Config/Update/ActiveHoursStart";
    let res = "./Device/Vendor/MSFT/Policy/Result/Update/ActiveHoursStart";
    let reply = h.expect(&[
        ("Get", res, None, None, "200"),
        ("Replace", cfg, Some("int"), Some("24"), "400"),
        ("Replace", cfg, Some("chr"), Some("9"), "415"),
        ("Replace", cfg, Some("int"), Some("9"), "200"),
        ("Get", res, None, None, "200"),
        (
            "Replace",
            "./User/Vendor/MSFT/Policy/Config/Browser/HomePages",
            Some("chr"),
            Some("&lt;https://example.org&gt;"),
            "200",
        ),
        (
            "Replace",
            "./Device/Vendor/MSFT/Policy/Config/Update/NoSuchPolicy",
            Some("int"),
            Some("1"),
            "404",
        ),
    ]);
    assert_eq!(
        result(&reply, "c0").map(|r| r.1),
        Some("8".into()),
        "DDF default"
    );
    assert_eq!(result(&reply, "c4").map(|r| r.1), Some("9".into()));
}

#[test]
fn inspect_shows_access_format_and_value() {
    use fake_windows_client::inspect;
    let b = DeviceProfile::random().builtins(DEVICE_ID);
    let store = NodeStore::default();
    let one = inspect::get(
        &store,
        &b,
        "./Device/Vendor/MSFT/Defender/Health/ProductStatus",
    )
    .expect("valid");
    assert!(one.contains("access Get; format int"), "{one}");
    assert!(one.ends_with("value int: 0"), "{one}");
    let lines = inspect::list(&store, &b, "./Vendor/MSFT/BitLocker/Status").expect("listed");
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[1].contains("DeviceEncryptionStatus  [access Get; format int"));
    assert!(inspect::list(&store, &b, "./Vendor/MSFT/Nope").is_err());
    assert!(inspect::get(&store, &b, "Vendor/MSFT").is_err());
}

#[test]
fn profile_values_have_the_format_the_ddf_declares() {
    let c = catalogue::get();
    for (path, format, _) in DeviceProfile::random().builtins(DEVICE_ID) {
        let r = c
            .resolve(&path)
            .unwrap_or_else(|| panic!("{path} not in the catalogue"));
        assert_eq!(c.nodes[r.node].format, format, "{path}");
    }
}

#[test]
fn admx_backed_policies_take_an_enabled_or_disabled_payload() {
    let mut h = h();
    let p = "./Device/Vendor/MSFT/Policy/Config/ActiveXControls/ApprovedInstallationSites";
    let c = catalogue::get();
    let node = &c.nodes[c
        .resolve("./Vendor/MSFT/Policy/Config/ActiveXControls/ApprovedInstallationSites")
        .expect("in the catalogue")
        .node];
    assert_eq!(
        node.allowed,
        catalogue::Allowed::Admx("ActiveXInstallService.admx".into())
    );
    h.expect(&[
        (
            "Replace",
            p,
            Some("chr"),
            Some(r#"&lt;enabled/&gt;&lt;data id="ApprovedActiveXInstallSiteslist" value="https://contoso.com&amp;#xF000;2,1,0,0"/&gt;"#),
            "200",
        ),
        ("Replace", p, Some("chr"), Some("&lt;disabled/&gt;"), "200"),
        // Neither state, not XML, both states, a data element without value.
        ("Replace", p, Some("chr"), Some("1"), "400"),
        ("Replace", p, Some("chr"), Some("&lt;enabled&gt;"), "400"),
        (
            "Replace",
            p,
            Some("chr"),
            Some("&lt;enabled/&gt;&lt;disabled/&gt;"),
            "400",
        ),
        (
            "Replace",
            p,
            Some("chr"),
            Some(r#"&lt;enabled/&gt;&lt;data id="x"/&gt;"#),
            "400",
        ),
        // The format ADMX pages require is chr.
        ("Replace", p, Some("int"), Some("1"), "415"),
    ]);
}
