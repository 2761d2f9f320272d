//! The PKCS#10 request: structure, Windows quirks and signatures.

use fake_windows_client::csr::{self, HashAlg};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::RsaPrivateKey;
use x509_parser::prelude::*;

const DEVICE_ID: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";

fn key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("keygen")
}

/// (CertificationRequestInfo bytes, signature algorithm OID, signature) split by hand.
fn split(der: &[u8]) -> (Vec<u8>, String, Vec<u8>) {
    let (_, req) = X509CertificationRequest::from_der(der).expect("CSR parses");
    (
        req.certification_request_info.raw.to_vec(),
        req.signature_algorithm.algorithm.to_id_string(),
        req.signature_value.data.to_vec(),
    )
}

#[test]
fn windows_shaped_csr_parses_and_verifies_for_both_hashes() {
    let k = key();
    for (hash, oid) in [
        (HashAlg::Sha1, "1.3.14.3.2.29"),
        (HashAlg::Sha256, "1.2.840.113549.1.1.11"),
    ] {
        let cn = csr::windows_subject_cn(DEVICE_ID);
        let der = csr::build(&k, &cn, DEVICE_ID, hash).expect("csr");
        let (info, alg, sig) = split(&der);
        assert_eq!(alg, oid);
        let pubkey = k.to_public_key();
        let sig = Signature::try_from(sig.as_slice()).expect("signature");
        match hash {
            HashAlg::Sha1 => VerifyingKey::<sha1::Sha1>::new(pubkey).verify(&info, &sig),
            HashAlg::Sha256 => VerifyingKey::<sha2::Sha256>::new(pubkey).verify(&info, &sig),
        }
        .expect("signature verifies");

        let (_, req) = X509CertificationRequest::from_der(&der).expect("parses");
        let info = &req.certification_request_info;
        // Subject: one CN, PrintableString tag, "<30-char GUID prefix>!<DeviceID>\0".
        let cn_attr = info.subject.iter_common_name().next().expect("CN");
        assert_eq!(
            cn_attr.attr_value().header.tag(),
            x509_parser::der_parser::asn1_rs::Tag::PrintableString
        );
        let raw = cn_attr.attr_value().data;
        assert_eq!(raw.len(), 30 + 1 + 32 + 1);
        assert_eq!(raw[30], b'!');
        assert_eq!(&raw[31..63], DEVICE_ID.as_bytes());
        assert_eq!(raw[63], 0);
        // One extensionRequest with the Microsoft DeviceID extension.
        let attr = info.iter_attributes().next().expect("attribute");
        assert_eq!(attr.oid.to_id_string(), "1.2.840.113549.1.9.14");
        let exts = match attr.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(e) => &e.extensions,
            other => panic!("unexpected attribute {other:?}"),
        };
        assert_eq!(exts.len(), 1);
        assert_eq!(exts[0].oid.to_id_string(), "1.3.6.1.4.1.311.66.1.0");
        assert!(!exts[0].critical);
        let mut want = DEVICE_ID.as_bytes().to_vec();
        want.push(0);
        assert_eq!(exts[0].value, want.as_slice());
        // The public key is ours.
        assert_eq!(
            info.subject_pki.raw,
            csr::spki_der(&k).expect("spki").as_slice()
        );
    }
}

#[test]
fn openssl_accepts_the_signature_when_available() {
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        eprintln!("openssl not installed; skipped");
        return;
    };
    if !out.status.success() {
        return;
    }
    let k = key();
    let dir = tempfile::tempdir().expect("tempdir");
    // A clean subject (openssl is strict about PrintableString contents) and the Windows one.
    for (name, cn, hash) in [
        ("sha256.der", b"DEVICE".to_vec(), HashAlg::Sha256),
        ("sha1.der", b"DEVICE".to_vec(), HashAlg::Sha1),
        (
            "windows.der",
            csr::windows_subject_cn(DEVICE_ID),
            HashAlg::Sha256,
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, csr::build(&k, &cn, DEVICE_ID, hash).expect("csr")).expect("write");
        let out = std::process::Command::new("openssl")
            .args(["req", "-verify", "-noout", "-inform", "DER", "-in"])
            .arg(&path)
            .output()
            .expect("run openssl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if name == "windows.der" && !out.status.success() {
            // Some OpenSSL builds reject '!' / NUL in a PrintableString; the signature check
            // above is authoritative for that shape.
            eprintln!("openssl rejects the Windows subject: {text}");
            continue;
        }
        assert!(out.status.success(), "{name}: {text}");
        assert!(
            text.contains("verify OK")
                || text.contains("Certificate request self-signature verify OK"),
            "{name}: {text}"
        );
    }
}
