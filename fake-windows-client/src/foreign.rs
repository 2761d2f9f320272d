//! Certificates not issued by the server, for negative tests: a self-signed RSA CA and a
//! client certificate it signs (RFC 5280 structures written with the DER module).

use crate::csr::{self, HashAlg};
use crate::der::{self, oid};
use crate::error::ClientError;
use base64::Engine;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;

/// PEM armour for DER bytes.
pub fn pem(label: &str, der_bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der_bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PKCS#8 PEM of a private key.
pub fn key_pem(key: &RsaPrivateKey) -> Result<String, ClientError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|z| z.to_string())
        .map_err(|e| ClientError::Crypto(format!("PKCS#8 encoding: {e}")))
}

fn extension(oid_str: &str, critical: bool, value: Vec<u8>) -> Vec<u8> {
    let mut parts = vec![der::oid(oid_str)];
    if critical {
        parts.push(der::boolean(true));
    }
    parts.push(der::octet_string(&value));
    der::sequence(&parts)
}

fn random_serial() -> Vec<u8> {
    let mut s: [u8; 16] = rand::random();
    s[0] &= 0x7f;
    s[0] |= 0x01;
    der::unsigned_integer(&s)
}

/// Issues a certificate (sha256WithRSA) for the public key `subject_spki` (DER
/// SubjectPublicKeyInfo) signed by `issuer_key`: a CA certificate, or a client certificate
/// with the clientAuth extended key usage.
pub fn issue(
    issuer_cn: &str,
    issuer_key: &RsaPrivateKey,
    subject_cn: &str,
    subject_spki: &[u8],
    is_ca: bool,
) -> Result<Vec<u8>, ClientError> {
    let now = time::OffsetDateTime::now_utc();
    let name = |cn: &str| {
        der::name(&[
            (oid::ORGANIZATION, der::utf8_string("Not The MDM Server")),
            (oid::COMMON_NAME, der::utf8_string(cn)),
        ])
    };
    let exts = if is_ca {
        vec![
            extension(
                oid::BASIC_CONSTRAINTS,
                true,
                der::sequence(&[der::boolean(true)]),
            ),
            extension(oid::KEY_USAGE, true, der::tlv(0x03, &[0x01, 0x06])),
        ]
    } else {
        vec![
            extension(oid::BASIC_CONSTRAINTS, true, der::sequence(&[])),
            extension(oid::KEY_USAGE, true, der::tlv(0x03, &[0x07, 0x80])),
            extension(
                oid::EXT_KEY_USAGE,
                false,
                der::sequence(&[der::oid(oid::CLIENT_AUTH)]),
            ),
        ]
    };
    let tbs = der::sequence(&[
        der::context(0, &der::small_integer(2)),
        random_serial(),
        der::algorithm(oid::SHA256_WITH_RSA),
        name(issuer_cn),
        der::sequence(&[
            der::utc_time(now - time::Duration::hours(1)),
            der::utc_time(now + time::Duration::days(365)),
        ]),
        name(subject_cn),
        subject_spki.to_vec(),
        der::context(3, &der::sequence(&exts)),
    ]);
    let sig = csr::sign(issuer_key, HashAlg::Sha256, &tbs)?;
    Ok(der::sequence(&[
        tbs,
        der::algorithm(oid::SHA256_WITH_RSA),
        der::bit_string(&sig),
    ]))
}

/// A self-signed CA certificate for `key` (PEM), e.g. to trust the foreign identity.
pub fn self_signed_ca(cn: &str, key: &RsaPrivateKey) -> Result<String, ClientError> {
    Ok(pem(
        "CERTIFICATE",
        &issue(cn, key, cn, &csr::spki_der(key)?, true)?,
    ))
}

/// A client certificate (CN = `device_id`) from a freshly made self-signed CA that the
/// server never saw. Returns (certificate PEM, PKCS#8 key PEM).
pub fn foreign_identity(device_id: &str) -> Result<(String, String), ClientError> {
    let mut rng = rand::thread_rng();
    let ca_key =
        RsaPrivateKey::new(&mut rng, 2048).map_err(|e| ClientError::Crypto(e.to_string()))?;
    let key = RsaPrivateKey::new(&mut rng, 2048).map_err(|e| ClientError::Crypto(e.to_string()))?;
    let cert = issue(
        "Foreign Test CA",
        &ca_key,
        device_id,
        &csr::spki_der(&key)?,
        false,
    )?;
    Ok((pem("CERTIFICATE", &cert), key_pem(&key)?))
}
