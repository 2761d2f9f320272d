//! Property tests for every parser of server responses: a hostile or broken server
//! must produce an error, never a panic or a hang. 256 cases per property by default;
//! `PROPTEST_CASES=10000 cargo test -p fake-windows-client --test proptests` is the
//! long run.

use fake_windows_client::{cms, discovery, provisioning, syncml, wstep, xcep};
use proptest::prelude::*;

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

fn xmlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("<".to_string()),
            Just(">".to_string()),
            Just("</".to_string()),
            Just("/>".to_string()),
            Just("=\"".to_string()),
            Just("\"".to_string()),
            Just("&lt;".to_string()),
            Just("<!DOCTYPE x [<!ENTITY e \"y\">]>".to_string()),
            Just("<![CDATA[".to_string()),
            Just("s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"".to_string()),
            Just("SyncML xmlns=\"SYNCML:SYNCML1.2\"".to_string()),
            Just("characteristic type=\"".to_string()),
            "[a-zA-Z0-9 :./\\n]{0,8}",
        ],
        0..120,
    )
    .prop_map(|v| v.concat())
}

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

fn all_parsers(text: &str) {
    let _ = discovery::parse_response(text, "urn:uuid:1");
    let _ = xcep::parse_response(text, "urn:uuid:1");
    let _ = wstep::parse_response(text, "urn:uuid:1");
    let _ = provisioning::parse(text);
    let _ = syncml::parse_server_message(text);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn response_parsers_never_panic(text in xmlish()) {
        all_parsers(&text);
    }

    #[test]
    fn discover_response_mutations(text in mutated(vector("mde2-discover-response.xml"))) {
        all_parsers(&text);
    }

    #[test]
    fn policy_response_mutations(text in mutated(vector("xcep-getpolicies-response.xml"))) {
        all_parsers(&text);
    }

    #[test]
    fn provisioning_doc_mutations(text in mutated(vector("wstep-renew-provisioningdoc.xml"))) {
        all_parsers(&text);
    }

    #[test]
    fn server_syncml_mutations(text in mutated(vector("omadm-pkg2-server.xml"))) {
        all_parsers(&text);
    }

    #[test]
    fn cms_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = cms::parse(&bytes);
    }
}
