//! Provisioning-document verification and the device state Windows writes on success.

mod common;

use common::{criteria, provisioning_xml, DocParams, TestCa};
use fake_windows_client::csr::HashAlg;
use fake_windows_client::xcep::EnrollmentPolicy;
use fake_windows_client::{
    provisioning, ClientError, Device, DeviceProfile, IdentityOverride, RegValue, TlsOptions,
};

fn policy() -> EnrollmentPolicy {
    EnrollmentPolicy {
        policy_schema: 3,
        minimal_key_length: 2048,
        hash_oid: None,
        hash: HashAlg::Sha1,
        validity_period_seconds: None,
        renewal_period_seconds: None,
    }
}

fn device() -> Device {
    let mut d = Device::new(
        DeviceProfile::random(),
        TlsOptions {
            ca_pem: None,
            insecure: true,
        },
    )
    .expect("device");
    d.generate_key_pair(&policy()).expect("key");
    d
}

struct Setup {
    ca: TestCa,
    client_der: Vec<u8>,
}

fn setup(d: &Device) -> Setup {
    let ca = TestCa::new();
    let client_der = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    Setup { ca, client_der }
}

fn params<'a>(s: &'a Setup, d: &Device) -> DocParams<'a> {
    DocParams {
        root_der: &s.ca.der,
        client_der: &s.client_der,
        client_thumbprint: None,
        scope: "User",
        provider_id: "TestMDM",
        dmclient_provider: "TestMDM",
        addr: "https://mdm.example.org/api/mdm/microsoft/management",
        criteria: criteria(d.device_id(), "User"),
    }
}

fn apply(d: &mut Device, xml: &str) -> Result<(), ClientError> {
    let doc = provisioning::parse(xml)?;
    d.apply_provisioning(
        "https://mdm.example.org/api/mdm/microsoft/discovery",
        "user@example.org",
        &doc,
    )
}

#[test]
fn applying_a_valid_document_writes_registry_and_stores() {
    let mut d = device();
    let s = setup(&d);
    let dir = tempfile::tempdir().expect("tempdir");
    let xml = provisioning_xml(&params(&s, &d));
    apply(&mut d, &xml).expect("applies");
    let e = d.enrollment().expect("enrolled").clone();
    assert_eq!(e.provider_id, "TestMDM");
    assert_eq!(e.client_store, "My\\User");
    assert_eq!(
        e.client_thumbprint,
        fake_windows_client::verify::thumbprint(&s.client_der)
    );
    let key = format!(
        "HKLM\\SOFTWARE\\Microsoft\\Enrollments\\{}",
        e.enrollment_guid
    );
    let reg = d.registry();
    assert_eq!(reg.get(&key, "EnrollmentState"), Some(&RegValue::Dword(1)));
    assert_eq!(
        reg.get(&key, "ProviderID"),
        Some(&RegValue::Sz("TestMDM".into()))
    );
    assert_eq!(
        reg.get(&key, "DMPCertThumbPrint"),
        Some(&RegValue::Sz(e.client_thumbprint.clone()))
    );
    assert_eq!(
        reg.get(&key, "RootCertThumbPrint"),
        Some(&RegValue::Sz(e.root_thumbprint.clone()))
    );
    assert_eq!(reg.get(&key, "RenewalPeriod"), Some(&RegValue::Dword(42)));
    assert_eq!(
        reg.get(&key, "CurCryptoProvider"),
        Some(&RegValue::Sz(
            "Microsoft Software Key Storage Provider".into()
        ))
    );
    for name in [
        "EnrollmentType",
        "DiscoveryServiceFullURL",
        "CurKeyContainer",
        "RenewROBOSupport",
        "RenewStatus",
        "RenewTimestamp",
        "RenewErrorCode",
        "isFederated",
        "UPN",
        "SID",
        "EnrollmentFlags",
    ] {
        assert!(reg.get(&key, name).is_some(), "{name}");
    }
    let acct = format!(
        "HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\Accounts\\{}",
        e.enrollment_guid
    );
    assert_eq!(
        reg.get(&acct, "SslClientCertReference"),
        Some(&RegValue::Sz(format!("MY;User;{}", e.client_thumbprint)))
    );
    assert_eq!(
        reg.get(&acct, "ProtoVer"),
        Some(&RegValue::Sz("1.2".into()))
    );
    assert_eq!(d.cert_store().root_system.len(), 1);
    assert_eq!(d.cert_store().my_user.len(), 1);
    assert!(d.cert_store().my_user[0].private_key_pem.is_some());
    assert!(d.client_identity_pem().is_some());

    // State survives a save/load round trip, TLS options included.
    d.save(dir.path()).expect("save");
    let loaded = Device::load(dir.path(), TlsOptions::default()).expect("load");
    assert_eq!(loaded.device_id(), d.device_id());
    assert_eq!(loaded.enrollment(), d.enrollment());
    assert_eq!(loaded.registry(), d.registry());
    assert!(loaded.tls_options().insecure);
    assert_eq!(loaded.public_key_der(), d.public_key_der());
}

#[test]
fn verification_failures_name_the_problem() {
    let mut d = device();
    let s = setup(&d);
    let wrong_key = {
        let k = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
        s.ca.client_cert(
            d.device_id(),
            &fake_windows_client::csr::spki_der(&k).expect("spki"),
        )
    };
    let ca_as_client = s.ca.der.clone();
    let cases: Vec<(DocParams, &str)> = vec![
        (
            DocParams {
                client_thumbprint: Some("00".repeat(20)),
                ..params(&s, &d)
            },
            "thumbprint",
        ),
        (
            DocParams {
                client_der: &wrong_key,
                ..params(&s, &d)
            },
            "not the key the device generated",
        ),
        (
            DocParams {
                addr: "http://plain.example.org/",
                ..params(&s, &d)
            },
            "ADDR",
        ),
        (
            DocParams {
                criteria: criteria(d.device_id(), "System"),
                ..params(&s, &d)
            },
            "SSLCLIENTCERTSEARCHCRITERIA",
        ),
        (
            DocParams {
                criteria: criteria("SOMEONE-ELSE", "User"),
                ..params(&s, &d)
            },
            "SSLCLIENTCERTSEARCHCRITERIA",
        ),
    ];
    let docs: Vec<(String, &str)> = cases
        .iter()
        .map(|(p, w)| (provisioning_xml(p), *w))
        .collect();
    drop(cases);
    for (xml, want) in docs {
        let err = apply(&mut d, &xml).expect_err(want);
        assert!(err.to_string().contains(want), "wanted {want:?} in {err}");
    }
    // A CA certificate handed out as the client certificate: wrong key first.
    let p = DocParams {
        client_der: &ca_as_client,
        ..params(&s, &d)
    };
    let xml = provisioning_xml(&p);
    assert!(apply(&mut d, &xml).is_err());
    assert!(d.enrollment().is_none());
    // A client certificate from another CA and a DMClient node for another provider are
    // tolerated (warn-level; tests/tolerance.rs).
}

#[test]
fn system_scope_is_honoured() {
    let mut d = device();
    let s = setup(&d);
    let p = DocParams {
        scope: "System",
        criteria: criteria(d.device_id(), "System"),
        ..params(&s, &d)
    };
    let xml = provisioning_xml(&p);
    apply(&mut d, &xml).expect("applies");
    assert_eq!(d.cert_store().my_system.len(), 1);
    let e = d.enrollment().expect("enrolled");
    let acct = format!(
        "HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\Accounts\\{}",
        e.enrollment_guid
    );
    assert_eq!(
        d.registry()
            .get(&acct, "SslClientCertReference")
            .and_then(RegValue::as_str),
        Some(format!("MY;System;{}", e.client_thumbprint).as_str())
    );
}

#[test]
fn foreign_identity_is_a_client_cert_from_another_ca() {
    let (cert_pem, key_pem) = fake_windows_client::foreign_identity("ABCDEF").expect("identity");
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).expect("pem");
    let cert = pem.parse_x509().expect("cert");
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok()),
        Some("ABCDEF")
    );
    assert!(cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.client_auth));
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let mut d = device();
    d.set_identity_override(IdentityOverride::Foreign { cert_pem, key_pem });
}
