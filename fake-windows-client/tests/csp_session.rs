//! CSP behaviour (Policy, DMClient, Reboot, Atomic), large-object chunking and
//! multi-message packages, driven through the session state machine with canned replies.

use fake_windows_client::csp::policy;
use fake_windows_client::csp::{NodeStore, NodeValue};
use fake_windows_client::profile::DeviceProfile;
use fake_windows_client::session::ManagementSession;

const DEVICE_ID: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";
const ADDR: &str = "https://mdm.example.org/api/mdm/microsoft/management";
const PKG1_REFS: &[&str] = &["2", "3", "4"];

struct H {
    s: ManagementSession,
    store: NodeStore,
    b: fake_windows_client::csp::BuiltIns,
    /// Our last message's MsgID.
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

/// A server message answering our message `msg_ref` (statuses for `refs`), with
/// `body` commands, an optional MaxMsgSize and Final unless `more`.
fn server(
    msg_ref: u32,
    refs: &[(&str, &str)],
    body: &str,
    max: Option<usize>,
    more: bool,
) -> String {
    let st: String = refs
        .iter()
        .enumerate()
        .map(|(i, (r, code))| format!("<Status><CmdID>{}</CmdID><MsgRef>{msg_ref}</MsgRef><CmdRef>{r}</CmdRef><Cmd>X</Cmd><Data>{code}</Data></Status>", i + 2))
        .collect();
    let meta = max
        .map(|m| format!(r#"<Meta><MaxMsgSize xmlns="syncml:metinf">{m}</MaxMsgSize></Meta>"#))
        .unwrap_or_default();
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>9</SessionID><MsgID>{msg_ref}</MsgID><Target><LocURI>{DEVICE_ID}</LocURI></Target><Source><LocURI>{ADDR}</LocURI></Source>{meta}</SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>{msg_ref}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>{st}{body}{}</SyncBody></SyncML>"#,
        if more { "" } else { "<Final/>" }
    )
}

fn pkg1_refs() -> Vec<(&'static str, &'static str)> {
    PKG1_REFS.iter().map(|r| (*r, "200")).collect()
}

impl H {
    fn send(&mut self, body: &str) -> String {
        let xml = server(self.ours, &pkg1_refs(), body, None, false);
        let r = self
            .s
            .handle(&xml, &mut self.store, &self.b)
            .expect("handled")
            .expect("reply");
        self.ours += 1;
        r
    }
}

fn codes(xml: &str) -> Vec<(String, String)> {
    let d = roxmltree::Document::parse(xml).expect("xml");
    d.root_element()
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
        .collect()
}

fn want(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn result_data(xml: &str, cmd_ref: &str) -> Option<String> {
    let d = roxmltree::Document::parse(xml).ok()?;
    let r = d.descendants().find(|n| {
        n.has_tag_name("Results")
            && n.children()
                .any(|c| c.has_tag_name("CmdRef") && c.text() == Some(cmd_ref))
    })?;
    r.descendants()
        .find(|n| n.has_tag_name("Data"))
        .map(|n| n.text().unwrap_or("").to_string())
}

/// Firewall CSP rules: dynamic nodes a server adds.
const RULES: &str = "./Vendor/MSFT/Firewall/MdmStore/FirewallRules";

fn cmd(verb: &str, id: &str, uri: &str, format: Option<&str>, data: Option<&str>) -> String {
    let meta = format
        .map(|f| format!(r#"<Meta><Format xmlns="syncml:metinf">{f}</Format></Meta>"#))
        .unwrap_or_default();
    let data = data
        .map(|d| format!("<Data>{d}</Data>"))
        .unwrap_or_default();
    format!("<{verb}><CmdID>{id}</CmdID><Item><Target><LocURI>{uri}</LocURI></Target>{meta}{data}</Item></{verb}>")
}

#[test]
fn ddf_table_loads() {
    assert!(policy::table().len() >= 15);
    assert!(policy::lookup("camera", "allowcamera").is_some());
}

#[test]
fn policy_csp_behaves_like_windows() {
    let mut h = h();
    let cfg = "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera";
    let res = "./Device/Vendor/MSFT/Policy/Result/Camera/AllowCamera";
    let body = [
        cmd("Get", "g0", res, None, None),
        cmd("Replace", "r1", cfg, Some("int"), Some("0")),
        cmd("Get", "g1", res, None, None),
        cmd(
            "Get",
            "g2",
            "./Vendor/MSFT/Policy/Config/Camera/AllowCamera",
            None,
            None,
        ),
        cmd(
            "Replace",
            "r2",
            "./Device/Vendor/MSFT/Policy/Config/Camera/NoSuchPolicy",
            Some("int"),
            Some("1"),
        ),
        cmd(
            "Replace",
            "r3",
            "./Device/Vendor/MSFT/Policy/Config/NoSuchArea/X",
            Some("int"),
            Some("1"),
        ),
        cmd("Replace", "r4", cfg, Some("chr"), Some("1")),
        cmd("Replace", "r5", res, Some("int"), Some("1")),
        cmd(
            "Add",
            "a1",
            "./Device/Vendor/MSFT/Policy/Config/DeviceLock/MinDevicePasswordLength",
            Some("int"),
            Some("6"),
        ),
        cmd(
            "Add",
            "a2",
            "./Device/Vendor/MSFT/Policy/Config/DeviceLock/MinDevicePasswordLength",
            Some("int"),
            Some("7"),
        ),
        cmd(
            "Replace",
            "r6",
            "./Device/Vendor/MSFT/Policy/Config/DeviceLock/MinDevicePasswordLength",
            Some("int"),
            Some("99"),
        ),
        cmd("Exec", "e1", cfg, None, None),
        cmd("Delete", "d1", res, None, None),
    ]
    .concat();
    let reply = h.send(&body);
    assert_eq!(
        codes(&reply),
        want(&[
            ("g0", "200"),
            ("r1", "200"),
            ("g1", "200"),
            ("g2", "200"),
            ("r2", "404"),
            ("r3", "404"),
            ("r4", "415"),
            ("r5", "405"),
            ("a1", "200"),
            ("a2", "418"),
            ("r6", "400"),
            ("e1", "405"),
            ("d1", "405"),
        ]),
        "{reply}"
    );
    // Result reports the default before, the configured value after the Replace.
    assert_eq!(result_data(&reply, "g0").as_deref(), Some("1"));
    assert_eq!(result_data(&reply, "g1").as_deref(), Some("0"));
    assert_eq!(result_data(&reply, "g2").as_deref(), Some("0"));
    // Delete under Config removes the value: Config 404, Result back to the default.
    let reply = h.send(
        &[
            cmd("Delete", "d2", cfg, None, None),
            cmd("Get", "g3", cfg, None, None),
            cmd("Get", "g4", res, None, None),
            cmd("Delete", "d3", cfg, None, None),
        ]
        .concat(),
    );
    assert_eq!(
        codes(&reply),
        want(&[("d2", "200"), ("g3", "404"), ("g4", "200"), ("d3", "404")])
    );
    assert_eq!(result_data(&reply, "g4").as_deref(), Some("1"));
}

#[test]
fn dmclient_unenroll_and_reboot_are_recorded() {
    let mut h = h();
    h.store.nodes.insert(
        "./Vendor/MSFT/DMClient/Provider/TestMDM/EntDMID".into(),
        NodeValue {
            format: "chr".into(),
            mime: None,
            data: Some("abc".into()),
        },
    );
    let unenroll = r#"<Exec><CmdID>u1</CmdID><Item><Target><LocURI>./Vendor/MSFT/DMClient/Provider/TestMDM/Unenroll</LocURI></Target><Meta><Format xmlns="syncml:metinf">chr</Format><Type xmlns="syncml:metinf">text/plain</Type></Meta><Data>TestMDM</Data></Item></Exec>"#;
    let reply = h.send(
        &[
            cmd(
                "Exec",
                "x1",
                "./Vendor/MSFT/DMClient/Provider/Other/Unenroll",
                None,
                None,
            ),
            cmd(
                "Exec",
                "b1",
                "./Device/Vendor/MSFT/Reboot/RebootNow",
                None,
                None,
            ),
            unenroll.to_string(),
        ]
        .concat(),
    );
    assert_eq!(
        codes(&reply),
        want(&[("x1", "404"), ("b1", "200"), ("u1", "200")])
    );
    assert_eq!(h.s.effects.unenroll_provider.as_deref(), Some("TestMDM"));
    assert_eq!(h.s.effects.reboots, 1);
}

#[test]
fn atomic_failure_rolls_back_with_216() {
    let mut h = h();
    let body = format!(
        "<Atomic><CmdID>at</CmdID>{}{}{}</Atomic>",
        cmd("Add", "x1", &format!("{RULES}/A"), None, None),
        cmd("Exec", "x2", "./Vendor/MSFT/Reboot/RebootNow", None, None),
        cmd(
            "Replace",
            "x3",
            "./Vendor/MSFT/Policy/Result/Camera/AllowCamera",
            Some("int"),
            Some("0")
        ),
    );
    let reply = h.send(&body);
    assert_eq!(
        codes(&reply),
        want(&[("at", "507"), ("x1", "216"), ("x2", "216"), ("x3", "405")])
    );
    assert!(h.store.nodes.is_empty());
    assert_eq!(h.s.effects.reboots, 0);
}

#[test]
fn unenroll_package_one_carries_alert_1226() {
    let b = DeviceProfile::random().builtins(DEVICE_ID);
    let mut s = ManagementSession::new("1", ADDR, DEVICE_ID);
    let xml = s.first_message_unenroll(&b, "user");
    let d = roxmltree::Document::parse(&xml).expect("xml");
    let alert = d
        .descendants()
        .filter(|n| n.has_tag_name("Alert"))
        .find(|a| {
            a.children()
                .any(|c| c.has_tag_name("Data") && c.text() == Some("1226"))
        })
        .expect("1226");
    let text = |name: &str| {
        alert
            .descendants()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
    };
    assert_eq!(
        text("Type"),
        Some("com.microsoft:mdm.unenrollment.userrequest")
    );
    assert_eq!(text("Format"), Some("int"));
    let item_data = alert
        .children()
        .find(|c| c.has_tag_name("Item"))
        .and_then(|i| i.children().find(|c| c.has_tag_name("Data")))
        .and_then(|n| n.text());
    assert_eq!(item_data, Some("1"));
    // An answer missing a Status (here the Replace after the 1226 Alert) ends the session
    // too, with a warning.
    let store = &mut NodeStore::default();
    let missing =
        server(1, &pkg1_refs(), "", None, false).replace("<SessionID>9<", "<SessionID>1<");
    assert_eq!(s.handle(&missing, store, &b).expect("ok"), None);
    let w = s.take_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].detail.contains("CmdID 5"), "{w:?}");
    let mut s = ManagementSession::new("1", ADDR, DEVICE_ID);
    s.first_message_unenroll(&b, "user");
    let ok = server(
        1,
        &[("2", "200"), ("3", "200"), ("4", "200"), ("5", "200")],
        "",
        None,
        false,
    )
    .replace("<SessionID>9<", "<SessionID>1<");
    assert_eq!(s.handle(&ok, store, &b).expect("ok"), None);
    assert!(s.warnings().is_empty());
}

struct Msg {
    len: usize,
    is_final: bool,
    results: Vec<(String, Option<String>, bool, String)>,
    alerts: Vec<String>,
}

/// (CmdID, Size, MoreData, Data) per Results item.
fn inspect(xml: &str) -> Msg {
    let d = roxmltree::Document::parse(xml).expect("xml");
    let body = d
        .descendants()
        .find(|n| n.has_tag_name("SyncBody"))
        .expect("body");
    let results = body
        .children()
        .filter(|n| n.has_tag_name("Results"))
        .flat_map(|r| {
            let id = r
                .children()
                .find(|c| c.has_tag_name("CmdID"))
                .and_then(|c| c.text())
                .unwrap_or("")
                .to_string();
            r.children()
                .filter(|c| c.has_tag_name("Item"))
                .map(move |i| {
                    let size = i
                        .descendants()
                        .find(|n| n.has_tag_name("Size"))
                        .and_then(|n| n.text())
                        .map(str::to_string);
                    let more = i.children().any(|c| c.has_tag_name("MoreData"));
                    let data = i
                        .children()
                        .find(|c| c.has_tag_name("Data"))
                        .and_then(|n| n.text())
                        .unwrap_or("")
                        .to_string();
                    (id.clone(), size, more, data)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Msg {
        len: xml.len(),
        is_final: body.children().any(|c| c.has_tag_name("Final")),
        results,
        alerts: body
            .children()
            .filter(|n| n.has_tag_name("Alert"))
            .filter_map(|a| {
                a.children()
                    .find(|c| c.has_tag_name("Data"))
                    .and_then(|c| c.text())
            })
            .map(str::to_string)
            .collect(),
    }
}

#[test]
fn large_results_are_chunked_within_max_msg_size() {
    let mut h = h();
    // 200 KB with characters that grow when escaped.
    let big: String = (0..200_000)
        .map(|i| match i % 97 {
            0 => '<',
            1 => '&',
            _ => char::from(b'a' + (i % 26) as u8),
        })
        .collect();
    h.store.nodes.insert(
        "./Vendor/MSFT/Personalization/DesktopImageUrl".into(),
        NodeValue {
            format: "chr".into(),
            mime: None,
            data: Some(big.clone()),
        },
    );
    let body = [
        cmd(
            "Replace",
            "r1",
            "./Vendor/MSFT/Personalization/LockScreenImageUrl",
            Some("chr"),
            Some("x"),
        ),
        cmd(
            "Get",
            "g1",
            "./Vendor/MSFT/Personalization/DesktopImageUrl",
            None,
            None,
        ),
    ]
    .concat();
    let first = server(1, &pkg1_refs(), &body, Some(65536), false);
    let mut reply =
        h.s.handle(&first, &mut h.store, &h.b)
            .expect("ok")
            .expect("reply");
    let mut msgs = Vec::new();
    let mut ours = 2;
    loop {
        let m = inspect(&reply);
        assert!(
            m.len <= 65536,
            "message {} is {} bytes",
            msgs.len() + 1,
            m.len
        );
        let done = m.is_final;
        let chunk_id = m.results.first().map(|r| r.0.clone()).unwrap_or_default();
        msgs.push((m, reply.clone()));
        if done {
            let end = server(ours, &[(chunk_id.as_str(), "200")], "", Some(65536), false);
            assert_eq!(h.s.handle(&end, &mut h.store, &h.b).expect("ok"), None);
            break;
        }
        // Status 213 for the chunk, Alert 1222 for the next message.
        let next = server(
            ours,
            &[(chunk_id.as_str(), "213")],
            "<Alert><CmdID>9</CmdID><Data>1222</Data></Alert>",
            Some(65536),
            false,
        );
        reply =
            h.s.handle(&next, &mut h.store, &h.b)
                .expect("ok")
                .expect("next chunk");
        ours += 1;
        assert!(ours < 20, "too many messages");
    }
    assert!(msgs.len() >= 4, "{} messages", msgs.len());
    // Statuses for the server's commands are in the first message only.
    let first_codes = codes(&msgs[0].1);
    assert_eq!(first_codes, want(&[("r1", "200"), ("g1", "200")]));
    for (i, (m, _)) in msgs.iter().enumerate() {
        let last = i + 1 == msgs.len();
        assert_eq!(m.results.len(), 1, "one chunk per message");
        let (_, size, more, _) = &m.results[0];
        assert_eq!(size.is_some(), i == 0, "Meta/Size only on the first chunk");
        assert_eq!(*more, !last, "MoreData on all but the last");
        assert_eq!(m.is_final, last, "Final only on the last");
        if i > 0 {
            assert!(m.alerts.is_empty());
        }
    }
    assert_eq!(msgs[0].0.results[0].1.as_deref(), Some("200000"));
    let whole: String = msgs.iter().map(|(m, _)| m.results[0].3.as_str()).collect();
    assert_eq!(whole, big);
}

#[test]
fn multi_message_server_package_is_answered_with_alert_1222() {
    let mut h = h();
    let part1 = server(
        1,
        &pkg1_refs(),
        &cmd("Add", "a1", &format!("{RULES}/A"), None, None),
        None,
        true,
    );
    let reply =
        h.s.handle(&part1, &mut h.store, &h.b)
            .expect("no Final is fine")
            .expect("reply");
    let m = inspect(&reply);
    assert_eq!(m.alerts, vec!["1222".to_string()]);
    assert_eq!(codes(&reply), want(&[("a1", "200")]));
    // The alert's CmdID should get a Status in the next server message; a message without
    // it is still answered, with a warning naming the Alert.
    let alert_id = roxmltree::Document::parse(&reply)
        .ok()
        .and_then(|d| {
            d.descendants()
                .find(|n| n.has_tag_name("Alert"))
                .and_then(|a| a.children().find(|c| c.has_tag_name("CmdID")))
                .and_then(|c| c.text().map(str::to_string))
        })
        .expect("alert id");
    assert!(h.s.take_warnings().is_empty());
    let part2 = server(
        2,
        &[],
        &cmd("Add", "a2", &format!("{RULES}/B"), None, None),
        None,
        false,
    );
    let reply =
        h.s.handle(&part2, &mut h.store, &h.b)
            .expect("ok")
            .expect("reply");
    let w = h.s.take_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].check, "syncml.command_status_missing");
    assert!(
        w[0].detail.contains(&format!("Alert CmdID {alert_id}")),
        "{w:?}"
    );
    assert_eq!(codes(&reply), want(&[("a2", "200")]));
    assert!(inspect(&reply).is_final);
    assert_eq!(h.store.nodes.len(), 2);
}
