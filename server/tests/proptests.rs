//! Property tests for every server-side parser: no panic, no hang on arbitrary input,
//! and round trips where a builder exists. The default run uses 256 cases per
//! property; `PROPTEST_CASES=10000 cargo test --release -p winmdm-server --test proptests`
//! is the dedicated long run (see SECURITY.md).

use proptest::prelude::*;
use winmdm_server::{csr, discovery, enroll, renew, soap, syncml};

fn vector(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../testdata/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_default()
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text biased towards XML syntax.
fn xmlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("<".to_string()),
            Just(">".to_string()),
            Just("</".to_string()),
            Just("/>".to_string()),
            Just("=\"".to_string()),
            Just("\"".to_string()),
            Just("&amp;".to_string()),
            Just("&#x0;".to_string()),
            Just("<!DOCTYPE a [<!ENTITY e \"x\">]>".to_string()),
            Just("<![CDATA[".to_string()),
            Just("]]>".to_string()),
            Just("s:Envelope".to_string()),
            Just("xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"".to_string()),
            Just("SyncML".to_string()),
            Just("SyncHdr".to_string()),
            Just("CmdID".to_string()),
            "[a-zA-Z0-9 :.\\n]{0,8}",
        ],
        0..120,
    )
    .prop_map(|v| v.concat())
}

/// A published vector with a random slice replaced by random text.
fn mutated(base: String) -> impl Strategy<Value = String> {
    let len = base.len().max(1);
    (0..len, 0..64usize, xmlish()).prop_map(move |(at, del, ins)| {
        let mut s = base.clone();
        let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + del).min(s.len());
        let end = (end..=s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s.replace_range(at..end, &ins);
        s
    })
}

fn exercise_soap(text: &str) {
    if let Ok(doc) = soap::parse_xml(text) {
        for action in [discovery::ACTION_DISCOVER, enroll::ACTION_RST, "x"] {
            if let Ok(req) = soap::parse_request(&doc, action) {
                let _ = soap::user_token(&req);
                let _ = discovery::parse_discover(req.body);
                let _ = enroll::parse_rst(req.body);
            }
        }
    }
}

fn exercise_syncml(text: &str) {
    if let Ok(doc) = soap::parse_xml(text) {
        if let Ok(m) = syncml::parse_client_message(&doc) {
            for c in &m.commands {
                let _ = c.result_items();
            }
        }
    }
    let _ = syncml::normalise_command(text);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn soap_parsers_never_panic(text in xmlish()) {
        exercise_soap(&text);
    }

    #[test]
    fn discover_request_mutations_never_panic(text in mutated(vector("mde2-discover-request.xml"))) {
        exercise_soap(&text);
    }

    #[test]
    fn rst_request_mutations_never_panic(text in mutated(vector("wstep-rst-request.xml"))) {
        exercise_soap(&text);
    }

    #[test]
    fn syncml_parsers_never_panic(text in xmlish()) {
        exercise_syncml(&text);
    }

    #[test]
    fn syncml_mutations_never_panic(text in mutated(vector("omadm-pkg2-server.xml"))) {
        exercise_syncml(&text);
    }

    #[test]
    fn der_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = csr::parse_and_verify(&bytes, 2048);
        let _ = renew::parse_signed_data(&bytes);
    }

    #[test]
    fn der_parsers_survive_structured_prefixes(tail in proptest::collection::vec(any::<u8>(), 0..300), tag in prop_oneof![Just(0x30u8), Just(0x31), Just(0xA0), Just(0x04)], len in any::<u8>()) {
        let mut bytes = vec![0x30, 0x82, 0x01, len, tag, 0x81, len];
        bytes.extend(tail);
        let _ = csr::parse_and_verify(&bytes, 2048);
        let _ = renew::parse_signed_data(&bytes);
    }

    #[test]
    fn built_commands_round_trip(
        verb in prop_oneof![Just("Get"), Just("Add"), Just("Replace"), Just("Delete"), Just("Exec")],
        path in "[A-Za-z0-9_]{1,12}(/[A-Za-z0-9_]{1,12}){0,4}",
        data in proptest::option::of("[ -~]{0,40}"),
    ) {
        let target = format!("./Vendor/MSFT/{path}");
        let xml = syncml::build_command(verb, &target, Some("chr"), None, data.as_deref()).unwrap();
        let (v, t, stored) = syncml::normalise_command(&xml).unwrap();
        prop_assert_eq!(v, verb);
        prop_assert_eq!(t, target);
        let delivered = stored.replace(syncml::CMD_ID_PLACEHOLDER, "1");
        let wrapped = format!("<SyncBody xmlns=\"SYNCML:SYNCML1.2\">{delivered}</SyncBody>");
        let doc = roxmltree::Document::parse(&wrapped).unwrap();
        let d = doc.descendants().find(|n| n.has_tag_name("Data")).and_then(|n| n.text()).map(str::to_string);
        prop_assert_eq!(d.unwrap_or_default(), data.unwrap_or_default());
    }

    #[test]
    fn server_messages_parse_back(session in "[0-9]{1,6}", msg in 1u32..1000, device in "[0-9A-F]{32}", statuses in 0usize..20) {
        let hdr = syncml::SyncHdr {
            ver_dtd: "1.2".into(), ver_proto: "DM/1.2".into(), session_id: session.clone(),
            msg_id: msg.to_string(), target: "https://x/y".into(), source: device.clone(), max_msg_size: None,
        };
        let mut m = syncml::ServerMessage::reply_to(&hdr, "https://x/y", 65536);
        for i in 0..statuses {
            m.status(&msg.to_string(), &i.to_string(), "Alert", 200);
        }
        let xml = m.finish();
        let doc = soap::parse_xml(&xml).unwrap();
        let parsed = syncml::parse_client_message(&doc).unwrap();
        prop_assert_eq!(parsed.hdr.session_id, session);
        prop_assert_eq!(parsed.hdr.target, device);
        prop_assert_eq!(parsed.hdr.max_msg_size, Some(65536));
        prop_assert_eq!(parsed.commands.len(), statuses);
        prop_assert!(parsed.is_final);
    }
}
