//! Every status code the emulated CSP tree answers, on nodes of many CSPs: for each CSP, one
//! settable leaf of its DDF is written (200), added again (418), written with the wrong
//! `Meta/Format` (415) and with a value outside its allowed values (400), executed (405,
//! no such leaf has Exec in its AccessType), and a sibling the DDF does not declare is read
//! (404). The values come from the leaf's catalogue entry.

use fake_windows_client::catalogue::{self, Allowed};
use fake_windows_client::csp::NodeStore;
use fake_windows_client::profile::DeviceProfile;
use fake_windows_client::session::ManagementSession;
use std::collections::{BTreeMap, BTreeSet};

const DEVICE_ID: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";
const ADDR: &str = "https://mdm.example.org/api/mdm/microsoft/management";

/// One settable `int` (enumerated or ranged) or `bool` leaf per CSP.
const LEAVES: &[&str] = &[
    "./Vendor/MSFT/BitLocker/AllowWarningForOtherDiskEncryption",
    "./Vendor/MSFT/CertificateStore/MY/WSTEP/Renew/ROBOSupport",
    "./Vendor/MSFT/Defender/Configuration/BehavioralNetworkBlocks/BruteForceProtection/BruteForceProtectionAggressiveness",
    "./Vendor/MSFT/DnsClient/DynamicDNS/Enabled",
    "./Vendor/MSFT/Firewall/MdmStore/DomainProfile/AllowLocalIpsecPolicyMerge",
    "./Vendor/MSFT/LAPS/Policies/ADEncryptedPasswordHistorySize",
    "./Vendor/MSFT/NetworkProxy/AutoDetect",
    "./Vendor/MSFT/PassportForWork/Biometrics/FacialFeaturesUseEnhancedAntiSpoofing",
    "./Vendor/MSFT/Policy/Config/Audit/AccountLogonLogoff_AuditAccountLockout",
    "./Vendor/MSFT/SharedPC/AccountModel",
    "./Vendor/MSFT/WindowsLicensing/DeviceLicensingService/LicenseType",
];

/// Verb, LocURI, optional (format, data), expected status.
type Case<'a> = (
    &'static str,
    &'a str,
    Option<(&'a str, &'a str)>,
    &'static str,
);

/// (good value, other format, value outside the allowed ones) for a leaf.
fn values(path: &str) -> (String, &'static str, String) {
    let c = catalogue::get();
    let node = &c.nodes[c.resolve(path).expect("in the catalogue").node];
    match (node.format.as_str(), &node.allowed) {
        ("bool", _) => ("true".into(), "int", "yes".into()),
        ("int", Allowed::Enum(v)) => (v[0].clone(), "chr", "987".into()),
        ("int", Allowed::Range(lo, hi)) => (lo.to_string(), "chr", (hi + 1).to_string()),
        other => panic!("{path}: no constrained value for {other:?}"),
    }
}

fn command(verb: &str, id: &str, uri: &str, value: Option<(&str, &str)>) -> String {
    let item = value
        .map(|(f, d)| {
            format!(r#"<Meta><Format xmlns="syncml:metinf">{f}</Format></Meta><Data>{d}</Data>"#)
        })
        .unwrap_or_default();
    format!("<{verb}><CmdID>{id}</CmdID><Item><Target><LocURI>{uri}</LocURI></Target>{item}</Item></{verb}>")
}

#[test]
fn each_status_code_on_nodes_of_ten_csps() {
    let b = DeviceProfile::random().builtins(DEVICE_ID);
    let mut s = ManagementSession::new("9", ADDR, DEVICE_ID);
    s.first_message(&b, "user");
    let mut store = NodeStore::default();
    // (CmdID, CSP, expected status)
    let mut want: Vec<(String, String, &str)> = Vec::new();
    let mut body = String::new();
    for (i, leaf) in LEAVES.iter().enumerate() {
        let (good, other, bad) = values(leaf);
        let format = {
            let c = catalogue::get();
            c.nodes[c.resolve(leaf).expect("resolves").node]
                .format
                .clone()
        };
        let csp = fake_windows_client::ddf::csp_of(leaf).to_string();
        let parent = leaf.rsplit_once('/').map_or(*leaf, |(p, _)| p);
        let missing = format!("{parent}/NoSuchNode");
        let cases: [Case; 6] = [
            ("Replace", leaf, Some((&format, &good)), "200"),
            ("Add", leaf, Some((&format, &good)), "418"),
            ("Replace", leaf, Some((other, &good)), "415"),
            ("Replace", leaf, Some((&format, &bad)), "400"),
            ("Exec", leaf, None, "405"),
            ("Get", &missing, None, "404"),
        ];
        for (k, (verb, uri, value, code)) in cases.into_iter().enumerate() {
            let id = format!("c{i}_{k}");
            body.push_str(&command(verb, &id, uri, value));
            want.push((id, csp.clone(), code));
        }
    }
    let xml = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>9</SessionID><MsgID>1</MsgID><Target><LocURI>{DEVICE_ID}</LocURI></Target><Source><LocURI>{ADDR}</LocURI></Source></SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>{body}<Final/></SyncBody></SyncML>"#
    );
    let reply = s
        .handle(&xml, &mut store, &b)
        .expect("handled")
        .expect("reply");
    let d = roxmltree::Document::parse(&reply).expect("xml");
    let got: BTreeMap<String, String> = d
        .descendants()
        .filter(|n| n.has_tag_name("Status"))
        .map(|st| {
            let t = |n: &str| {
                st.children()
                    .find(|c| c.has_tag_name(n))
                    .and_then(|c| c.text())
                    .unwrap_or("")
                    .to_string()
            };
            (t("CmdRef"), t("Data"))
        })
        .collect();
    let mut csps_per_code: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (id, csp, code) in &want {
        match got.get(id) {
            Some(g) if g == code => {
                csps_per_code.entry(code).or_default().insert(csp);
            }
            g => wrong.push(format!("{id} on {csp}: {g:?}, wanted {code}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(csps_per_code.len(), 6);
    for (code, csps) in &csps_per_code {
        assert!(csps.len() >= 10, "{code} on {csps:?}");
    }
}
