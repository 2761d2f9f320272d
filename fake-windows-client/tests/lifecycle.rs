//! Renewal (CMS SignedData, renewal document), unenrollment state removal and the clock,
//! without a network.

mod common;

use common::{enrolled_device, renewal_xml, TestCa};
use fake_windows_client::csr::{self, HashAlg};
use fake_windows_client::der::oid;
use fake_windows_client::{cms, provisioning, verify, ClientError, RegValue};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};
use std::time::Duration;

macro_rules! vector {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/vectors/",
            $name
        ))
    };
}

fn key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key")
}

#[test]
fn renewal_pkcs7_is_a_verifiable_signed_data() {
    let ca = TestCa::new();
    let current = key();
    let cert = ca.client_cert("DEVICE1", &csr::spki_der(&current).expect("spki"));
    let new_key = key();
    let csr_der = csr::build(
        &new_key,
        &csr::windows_subject_cn("DEVICE1"),
        "DEVICE1",
        HashAlg::Sha256,
    )
    .expect("csr");
    let p7 = cms::sign(&csr_der, &cert, &current).expect("sign");
    let sd = cms::parse(&p7).expect("parses back");
    assert_eq!(sd.version, 1);
    assert_eq!(sd.digest_algorithms, vec![oid::SHA256.to_string()]);
    assert_eq!(sd.econtent_type, oid::DATA);
    assert_eq!(sd.econtent, csr_der);
    assert_eq!(sd.certificates, vec![cert.clone()]);
    assert_eq!(sd.signer_version, 1);
    assert_eq!(sd.signer_digest_algorithm, oid::SHA256);
    assert_eq!(sd.signature_algorithm, oid::RSA_ENCRYPTION);
    let (_, x) = x509_parser::parse_x509_certificate(&cert).expect("cert");
    assert_eq!(sd.signer_issuer_der, x.tbs_certificate.issuer.as_raw());
    assert_eq!(sd.signer_serial, x.tbs_certificate.raw_serial());
    assert_eq!(sd.attr_content_type.as_deref(), Some(oid::DATA));
    assert_eq!(
        sd.attr_message_digest.as_deref(),
        Some(Sha256::digest(&csr_der).as_slice())
    );
    assert_eq!(sd.signed_attrs_set[0], 0x31);
    // RSA PKCS#1 v1.5 SHA-256 over the signedAttrs SET, by the current key.
    let vk = VerifyingKey::<Sha256>::new(current.to_public_key());
    let sig = Signature::try_from(sd.signature.as_slice()).expect("signature");
    vk.verify(&sd.signed_attrs_set, &sig).expect("verifies");
    // Not by the new key.
    let other = VerifyingKey::<Sha256>::new(new_key.to_public_key());
    assert!(other.verify(&sd.signed_attrs_set, &sig).is_err());
    // A corrupted SignedData fails to parse with an error, not a panic.
    assert!(cms::parse(&p7[..p7.len() / 2]).is_err());
}

#[test]
fn renewal_document_is_verified_and_applied() {
    let ca = TestCa::new();
    let mut d = enrolled_device(&ca);
    let before = d.enrollment().expect("enrolled").clone();
    let old_pem = d.client_identity_pem().expect("identity");
    assert!(d.previous_identity_pem().is_none());
    let new_key = key();
    let new_cert = ca.client_cert(d.device_id(), &csr::spki_der(&new_key).expect("spki"));
    let doc =
        provisioning::parse(&renewal_xml(&ca.der, &new_cert, "User", "TestMDM")).expect("doc");
    // Wrong provider, wrong key: refused, nothing changes.
    let err = d.apply_renewal(&doc, key()).expect_err("not our key");
    assert!(err.to_string().contains("public key"), "{err}");
    let other =
        provisioning::parse(&renewal_xml(&ca.der, &new_cert, "User", "Other")).expect("doc");
    let err = d
        .apply_renewal(&other, new_key.clone())
        .expect_err("provider");
    assert!(err.to_string().contains("PROVIDER-ID"), "{err}");
    assert_eq!(d.enrollment(), Some(&before));

    d.apply_renewal(&doc, new_key).expect("renewed");
    let e = d.enrollment().expect("still enrolled").clone();
    assert_eq!(e.client_thumbprint, verify::thumbprint(&new_cert));
    assert_eq!(e.enrollment_guid, before.enrollment_guid);
    assert_eq!(e.renew.renew_period_days, Some(30));
    let store = &d.cert_store().my_user;
    assert_eq!(store.len(), 1, "old certificate removed");
    assert_eq!(store[0].thumbprint, e.client_thumbprint);
    let ek = format!(
        "HKLM\\SOFTWARE\\Microsoft\\Enrollments\\{}",
        e.enrollment_guid
    );
    let reg = d.registry();
    assert_eq!(
        reg.get(&ek, "DMPCertThumbPrint"),
        Some(&RegValue::Sz(e.client_thumbprint.clone()))
    );
    assert_eq!(reg.get(&ek, "RenewStatus"), Some(&RegValue::Dword(0)));
    assert_eq!(reg.get(&ek, "RenewErrorCode"), Some(&RegValue::Dword(0)));
    let acct = format!(
        "HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\Accounts\\{}",
        e.enrollment_guid
    );
    assert_eq!(
        reg.get(&acct, "SslClientCertReference"),
        Some(&RegValue::Sz(format!("MY;User;{}", e.client_thumbprint)))
    );
    assert_eq!(d.previous_identity_pem(), Some(old_pem.clone()));
    assert_ne!(d.client_identity_pem(), Some(old_pem));
}

#[test]
fn published_renewal_sample_fails_verification_cleanly() {
    let ca = TestCa::new();
    let mut d = enrolled_device(&ca);
    let doc = provisioning::parse(vector!("wstep-renew-provisioningdoc.xml")).expect("structure");
    assert_eq!(
        doc.application
            .as_ref()
            .and_then(|a| a.get("PROVIDER-ID"))
            .map(String::as_str),
        Some("TestMDMServer")
    );
    let err = d.apply_renewal(&doc, key()).expect_err("placeholders");
    assert!(
        matches!(err, ClientError::Invalid { .. })
            && err.to_string().contains("EncodedCertificate"),
        "{err}"
    );
}

#[test]
fn renewal_failures_map_to_windows_hresults() {
    use fake_windows_client::SoapFault;
    let fault = |sub: &str, t: Option<&str>| {
        ClientError::SoapFault(SoapFault {
            http_status: 500,
            code: "s:Receiver".into(),
            subcode: sub.into(),
            reason: "x".into(),
            error_type: t.map(str::to_string),
        })
    };
    let h = fake_windows_client::renew_hresult;
    assert_eq!(h(&fault("s:Authentication", None)), 0x8018_0002);
    assert_eq!(
        h(&fault("s:Authorization", Some("NotEligibleToRenew"))),
        0x8018_0016
    );
    assert_eq!(
        h(&ClientError::Http {
            step: "renew",
            status: 403,
            body: String::new()
        }),
        0x8019_0193
    );
}

#[test]
fn renewal_due_follows_the_device_clock() {
    let ca = TestCa::new();
    let mut d = enrolled_device(&ca);
    // Test certificates are valid 365 days; the document's RenewPeriod is 42 days.
    assert!(!d.renewal_due());
    d.advance_clock(Duration::from_secs(300 * 86_400));
    assert!(!d.renewal_due());
    d.advance_clock(Duration::from_secs(30 * 86_400));
    assert!(d.renewal_due());
}

#[test]
fn unenrollment_removes_the_enrollment_but_keeps_the_device_id() {
    let ca = TestCa::new();
    let mut d = enrolled_device(&ca);
    let device_id = d.device_id().to_string();
    let e = d.enrollment().expect("enrolled").clone();
    let identity = d.client_identity_pem().expect("identity");
    let ek = format!(
        "HKLM\\SOFTWARE\\Microsoft\\Enrollments\\{}",
        e.enrollment_guid
    );
    let acct = format!(
        "HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\Accounts\\{}",
        e.enrollment_guid
    );
    assert!(d.registry().key(&ek).is_some());
    assert!(!d.nodes().nodes.is_empty());
    d.remove_enrollment();
    assert!(!d.is_enrolled());
    assert_eq!(d.device_id(), device_id);
    assert!(d.registry().key(&ek).is_none());
    assert!(d
        .registry()
        .keys
        .keys()
        .all(|k| !k.contains(&e.enrollment_guid)));
    assert!(d.registry().key(&acct).is_none());
    assert!(d.cert_store().my_user.is_empty());
    assert!(d.cert_store().root_system.is_empty());
    assert!(d
        .nodes()
        .nodes
        .keys()
        .all(|k| !k.starts_with("./Vendor/MSFT/DMClient/Provider/TestMDM")));
    assert!(d.client_identity_pem().is_none());
    assert_eq!(d.previous_identity_pem(), Some(identity));
    // MDMDeviceID survives: the machine keeps its DeviceID.
    assert_eq!(
        d.registry().get(
            "HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\MDMDeviceID",
            "DeviceClientId"
        ),
        Some(&RegValue::Sz(device_id.clone()))
    );
    // The same machine enrolls again: new GUID, new key, same DeviceID.
    assert!(d.public_key_der().is_none());
    d.generate_key_pair(&fake_windows_client::xcep::EnrollmentPolicy {
        policy_schema: 3,
        minimal_key_length: 2048,
        hash_oid: None,
        hash: HashAlg::Sha256,
        validity_period_seconds: None,
        renewal_period_seconds: None,
    })
    .expect("key");
    let cert = ca.client_cert(d.device_id(), &d.public_key_der().expect("spki"));
    let xml = common::provisioning_xml(&common::DocParams {
        root_der: &ca.der,
        client_der: &cert,
        client_thumbprint: None,
        scope: "User",
        provider_id: "TestMDM",
        dmclient_provider: "TestMDM",
        addr: "https://mdm.example.org/api/mdm/microsoft/management",
        criteria: common::criteria(d.device_id(), "User"),
    });
    d.apply_provisioning(
        "https://mdm.example.org/api/mdm/microsoft/discovery",
        "user@example.org",
        &provisioning::parse(&xml).expect("doc"),
    )
    .expect("re-enrolled");
    let e2 = d.enrollment().expect("enrolled again");
    assert_ne!(e2.enrollment_guid, e.enrollment_guid);
    assert_ne!(e2.client_thumbprint, e.client_thumbprint);
    assert_eq!(d.device_id(), device_id);
}
