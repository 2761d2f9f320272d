//! Microsoft documentation examples (testdata/vectors) through the device's parsers.

use fake_windows_client::csr::HashAlg;
use fake_windows_client::{discovery, provisioning, soap, wstep, xcep, ClientError};

macro_rules! vector {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/vectors/",
            $name
        ))
    };
}

/// The documentation examples put a space after "urn:uuid:" in RelatesTo.
const DOC_DISCOVER_ID: &str = "urn:uuid: 748132ec-a575-4329-b01b-6171a9cf8478";
const DOC_POLICY_ID: &str = "urn:uuid: 69960163-adad-4a72-82d2-bb0e5cff5598";
const DOC_RST_ID: &str = "urn:uuid:81a5419a-496b-474f-a627-5cdd33eed8ab";

#[test]
fn discover_response_parses_with_whitespace_trimmed() {
    let r = discovery::parse_response(vector!("mde2-discover-response.xml"), DOC_DISCOVER_ID)
        .expect("parses");
    assert_eq!(r.auth_policy, "Federated");
    assert_eq!(r.enrollment_version, "3.0");
    assert_eq!(
        r.enrollment_policy_service_url,
        "https://enrolltest.contoso.com/ENROLLMENTSERVER/DEVICEENROLLMENTWEBSERVICE.SVC"
    );
    assert_eq!(r.enrollment_service_url, r.enrollment_policy_service_url);
    assert_eq!(
        r.authentication_service_url.as_deref(),
        Some("https://portal.manage.contoso.com/LoginRedirect.aspx")
    );
}

#[test]
fn discover_response_relating_to_another_message_is_a_warning() {
    let mut w = Vec::new();
    discovery::parse_response_with(
        vector!("mde2-discover-response.xml"),
        "urn:uuid:00000000-0000-0000-0000-000000000000",
        &mut w,
    )
    .expect("RelatesTo mismatch is tolerated");
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].check, "soap.relates_to_mismatch");
    assert!(w[0].detail.contains("RelatesTo"), "{w:?}");
}

#[test]
fn discover_response_missing_element_is_named() {
    let xml = vector!("mde2-discover-response.xml");
    let cut = |element: &str| {
        let start = xml.find(&format!("<{element}>")).expect("present");
        let end_tag = format!("</{element}>");
        let end = xml.find(&end_tag).expect("closed") + end_tag.len();
        format!("{}{}", &xml[..start], &xml[end..])
    };
    // minOccurs="1" ([MS-MDE2] §3.1.4.1.3.2).
    for element in ["EnrollmentServiceUrl", "AuthPolicy"] {
        match discovery::parse_response(&cut(element), DOC_DISCOVER_ID) {
            Err(ClientError::Missing { element: e, .. }) => assert!(e.contains(element), "{e}"),
            other => panic!("{element}: {other:?}"),
        }
    }
    // minOccurs="0": EnrollmentVersion silently, EnrollmentPolicyServiceUrl with a warning.
    let mut w = Vec::new();
    let r = discovery::parse_response_with(&cut("EnrollmentVersion"), DOC_DISCOVER_ID, &mut w)
        .expect("no EnrollmentVersion");
    assert_eq!((r.enrollment_version.as_str(), w.len()), ("", 0));
    discovery::parse_response_with(&cut("EnrollmentPolicyServiceUrl"), DOC_DISCOVER_ID, &mut w)
        .expect("no EnrollmentPolicyServiceUrl");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].check, "discovery.enrollment_policy_service_url");
}

#[test]
fn discover_response_rejects_http_urls() {
    let xml = vector!("mde2-discover-response.xml").replace(
        "https://enrolltest.contoso.com/ENROLLMENTSERVER/DEVICEENROLLMENTWEBSERVICE.SVC\n                </EnrollmentServiceUrl>",
        "http://enrolltest.contoso.com/x</EnrollmentServiceUrl>",
    );
    let err = discovery::parse_response(&xml, DOC_DISCOVER_ID).expect_err("http");
    assert!(err.to_string().contains("EnrollmentServiceUrl"), "{err}");
}

#[test]
fn discover_request_has_the_documented_shape() {
    let req = discovery::DiscoverRequest {
        email: "user@contoso.com",
        request_version: "6.0",
        device_type: "CIMClient_Windows",
        application_version: "10.0.22631.2428",
        os_edition: "48",
        auth_policies: &["OnPremise", "Federated"],
    };
    let xml = discovery::build_request(&req, "urn:uuid:1", "https://example.org/d");
    let ours = element_paths(&xml);
    // The documentation sample's Discover namespace has a trailing "/" that Windows does not
    // send; compare local names only.
    for p in element_paths(vector!("mde2-discover-request.xml")) {
        assert!(ours.contains(&p), "missing {p}");
    }
}

#[test]
fn get_policies_request_matches_the_documented_shape() {
    let xml = xcep::build_request("urn:uuid:1", "https://example.org/p", "node-key");
    let ours = element_paths(&xml);
    for p in element_paths(vector!("xcep-getpolicies-request.xml")) {
        assert!(ours.contains(&p), "missing {p}");
    }
    let doc = roxmltree::Document::parse(&xml).expect("well-formed");
    let bst = doc
        .descendants()
        .find(|n| n.has_tag_name((soap::NS_WSSE, "BinarySecurityToken")))
        .expect("token");
    assert_eq!(
        bst.attribute("ValueType"),
        Some(soap::USER_TOKEN_VALUE_TYPE)
    );
    assert_eq!(bst.text(), Some("bm9kZS1rZXk="));
}

#[test]
fn policies_response_parses() {
    let p = xcep::parse_response(vector!("xcep-getpolicies-response.xml"), DOC_POLICY_ID)
        .expect("parses");
    assert_eq!(p.policy_schema, 3);
    assert_eq!(p.minimal_key_length, 2048);
    assert_eq!(p.hash, HashAlg::Sha1);
    assert_eq!(p.hash_oid.as_deref(), Some("1.3.14.3.2.29"));
    assert_eq!(p.validity_period_seconds, Some(1_209_600));
    assert_eq!(p.renewal_period_seconds, Some(172_800));
}

#[test]
fn policies_response_sha256_and_unresolvable_reference() {
    let xml = vector!("xcep-getpolicies-response.xml");
    let sha256 = xml.replace(
        "<value>1.3.14.3.2.29</value>",
        "<value>2.16.840.1.101.3.4.2.1</value>",
    );
    assert_eq!(
        xcep::parse_response(&sha256, DOC_POLICY_ID)
            .expect("parses")
            .hash,
        HashAlg::Sha256
    );
    let dangling = xml.replace(
        "<hashAlgorithmOIDReference>0<",
        "<hashAlgorithmOIDReference>7<",
    );
    let err = xcep::parse_response(&dangling, DOC_POLICY_ID).expect_err("dangling");
    assert!(err.to_string().contains("oIDReferenceID 7"), "{err}");
    let nil = xml.replace(
        "<hashAlgorithmOIDReference>0</hashAlgorithmOIDReference>",
        "<hashAlgorithmOIDReference xsi:nil=\"true\"/>",
    );
    let p = xcep::parse_response(&nil, DOC_POLICY_ID).expect("nil hash");
    assert_eq!((p.hash, p.hash_oid), (HashAlg::Sha1, None));
    let no_len = xml.replace("<minimalKeyLength>2048</minimalKeyLength>", "");
    let err = xcep::parse_response(&no_len, DOC_POLICY_ID).expect_err("no key length");
    assert!(err.to_string().contains("minimalKeyLength"), "{err}");
}

/// Decision: the documentation's RSTRC uses the SOAP 1.1 envelope namespace, but [MS-WSTEP]
/// binds to SOAP 1.2 and every request Windows sends is SOAP 1.2, so the strict client
/// rejects it and says why.
#[test]
fn rstrc_with_soap11_envelope_is_rejected() {
    let err = wstep::parse_response(vector!("wstep-rstrc-response.xml"), DOC_RST_ID)
        .expect_err("SOAP 1.1");
    assert!(err.to_string().contains("SOAP 1.1"), "{err}");
}

#[test]
fn rstrc_body_parses_once_the_envelope_is_soap12() {
    let xml = vector!("wstep-rstrc-response.xml").replace(soap::NS_SOAP11, soap::NS_SOAP12);
    // The sample's token is a placeholder, not base64.
    let err = wstep::parse_response(&xml, DOC_RST_ID).expect_err("placeholder token");
    assert!(err.to_string().contains("BinarySecurityToken"), "{err}");
    // With a real payload the provisioning document comes out.
    use base64::Engine;
    let doc = base64::engine::general_purpose::STANDARD
        .encode(vector!("wstep-renew-provisioningdoc.xml"));
    let xml = xml.replace("B64EncodedSampleBinarySecurityToken", &doc);
    let out = wstep::parse_response(&xml, DOC_RST_ID).expect("parses");
    assert!(out.starts_with("<wap-provisioningdoc"));
    // The security timestamp is warn-level.
    let no_ts = xml.replace("u:Timestamp", "u:Stamp");
    let mut w = Vec::new();
    let out = wstep::parse_response_with(&no_ts, DOC_RST_ID, &mut w).expect("no timestamp");
    assert!(out.starts_with("<wap-provisioningdoc"));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].check, "wstep.security_timestamp");
}

#[test]
fn malformed_provisioning_doc_sample_fails_clearly() {
    let err =
        provisioning::parse(vector!("wstep-provisioningdoc.xml")).expect_err("malformed comment");
    assert!(matches!(err, ClientError::Xml { .. }), "{err:?}");
    assert!(err.to_string().contains("not well-formed"), "{err}");
}

#[test]
fn provisioning_doc_sample_parses_when_repaired() {
    let fixed = vector!("wstep-provisioningdoc.xml").replace("<!-If", "<!-- If");
    let doc = provisioning::parse(&fixed).expect("structure");
    assert_eq!(doc.version, "1.1");
    assert_eq!(doc.root_certs.len(), 1);
    assert_eq!(doc.client_certs.len(), 1);
    assert!(doc.client_certs[0].private_key_container);
    assert_eq!(doc.client_certs[0].store, "My/User");
    let renew = doc.renew.clone().expect("renew");
    assert_eq!(
        (
            renew.robo_support,
            renew.renew_period_days,
            renew.retry_interval_days
        ),
        (Some(true), Some(60), Some(4))
    );
    let app = doc.application.clone().expect("application");
    assert_eq!(
        app.get("PROVIDER-ID").map(String::as_str),
        Some("TestMDMServer")
    );
    assert_eq!(doc.app_auth.len(), 2);
    assert_eq!(doc.dmclient.len(), 1);
    assert_eq!(doc.dmclient[0].provider_id, "TestMDMServer");
    assert_eq!(
        doc.dmclient[0].poll.get("PollOnLogin").map(String::as_str),
        Some("true")
    );
    let c = provisioning::CertSearchCriteria::parse(
        app.get("SSLCLIENTCERTSEARCHCRITERIA")
            .map(String::as_str)
            .unwrap_or(""),
    );
    assert_eq!(
        c.common_names(),
        vec!["Users".to_string(), "Administrator".to_string()]
    );
}

#[test]
fn renewal_doc_parses_structurally_but_fails_verification() {
    let doc = provisioning::parse(vector!("wstep-renew-provisioningdoc.xml")).expect("structure");
    assert_eq!(
        doc.root_certs[0].thumbprint,
        "EncodedRootCertHashInsertedHere "
    );
    assert!(doc.client_certs[0].private_key_container);
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).expect("key");
    let err = fake_windows_client::verify::verify(&doc, &key).expect_err("placeholders");
    assert!(err.to_string().contains("EncodedCertificate"), "{err}");
}

#[test]
fn documented_rst_sample_is_not_well_formed() {
    // The published RST lacks a closing ContextItem; ours must be well-formed and carry
    // every context item the documentation lists.
    assert!(roxmltree::Document::parse(vector!("wstep-rst-request.xml")).is_err());
    let items: Vec<(&str, String)> = [
        "UXInitiated",
        "HWDevID",
        "Locale",
        "TargetedUserLoggedIn",
        "OSEdition",
        "DeviceName",
        "MAC",
        "DeviceID",
        "EnrollmentType",
        "DeviceType",
        "OSVersion",
        "ApplicationVersion",
        "NotInOobe",
        "RequestVersion",
    ]
    .iter()
    .map(|n| (*n, format!("v-{n}")))
    .collect();
    let xml = wstep::build_request("urn:uuid:1", "https://e/x", "tok", &[1, 2, 3], &items);
    let doc = roxmltree::Document::parse(&xml).expect("well-formed");
    let names: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name((soap::NS_AC, "ContextItem")))
        .filter_map(|n| n.attribute("Name"))
        .collect();
    assert_eq!(names, items.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    let bst = doc
        .descendants()
        .filter(|n| n.has_tag_name((soap::NS_WSSE, "BinarySecurityToken")))
        .find(|n| n.attribute("ValueType") == Some(wstep::PKCS10_VALUE_TYPE))
        .expect("CSR token");
    assert_eq!(bst.text(), Some("AQID"));
}

/// Slash-joined local names of every element, from the root.
fn element_paths(xml: &str) -> std::collections::BTreeSet<String> {
    let doc = roxmltree::Document::parse(xml).expect("well-formed");
    doc.descendants()
        .filter(|n| n.is_element())
        .map(|n| {
            let mut v: Vec<&str> = n
                .ancestors()
                .filter(|a| a.is_element())
                .map(|a| a.tag_name().name())
                .collect();
            v.reverse();
            v.join("/")
        })
        .collect()
}
