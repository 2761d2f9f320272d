//! PKCS#10 certificate request shaped like the one Windows sends in MS-WSTEP (RFC 2986).
//!
//! Observed in a published capture of a Windows 10 enrollment: the subject is a single CN
//! PrintableString `<first 30 chars of an uppercase GUID>!<DeviceID>` followed by a NUL byte,
//! the attributes hold one extensionRequest with extension 1.3.6.1.4.1.311.66.1.0 whose value
//! is the raw bytes of the DeviceID and a NUL (not a nested DER value), and the signature
//! algorithm is whatever the enrollment policy asks for (1.3.14.3.2.29 for sha1RSA).

use crate::der::{self, oid};
use crate::error::ClientError;
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;

/// Hash algorithm of a signature, as named by the enrollment policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HashAlg {
    /// SHA-1; signatureAlgorithm 1.3.14.3.2.29 (OIW sha1WithRSASignature) like Windows.
    Sha1,
    /// SHA-256; signatureAlgorithm 1.2.840.113549.1.1.11.
    Sha256,
}

impl HashAlg {
    /// OID written in signatureAlgorithm.
    pub fn signature_oid(self) -> &'static str {
        match self {
            HashAlg::Sha1 => oid::SHA1_WITH_RSA_OIW,
            HashAlg::Sha256 => oid::SHA256_WITH_RSA,
        }
    }
}

/// RSASSA-PKCS1-v1_5 signature over `data`.
pub fn sign(key: &RsaPrivateKey, hash: HashAlg, data: &[u8]) -> Result<Vec<u8>, ClientError> {
    let sig = match hash {
        HashAlg::Sha1 => rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key.clone())
            .try_sign(data)
            .map(|s| s.to_vec()),
        HashAlg::Sha256 => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone())
            .try_sign(data)
            .map(|s| s.to_vec()),
    };
    sig.map_err(|e| ClientError::Crypto(format!("signing: {e}")))
}

/// DER SubjectPublicKeyInfo of the key.
pub fn spki_der(key: &RsaPrivateKey) -> Result<Vec<u8>, ClientError> {
    key.to_public_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| ClientError::Crypto(format!("public key encoding: {e}")))
}

/// The subject CN bytes Windows uses: `<GUID prefix>!<DeviceID>\0`.
pub fn windows_subject_cn(device_id: &str) -> Vec<u8> {
    let guid = uuid::Uuid::new_v4().to_string().to_uppercase();
    let mut cn: Vec<u8> = guid.as_bytes().iter().take(30).copied().collect();
    cn.push(b'!');
    cn.extend_from_slice(device_id.as_bytes());
    cn.push(0);
    cn
}

/// Builds the DER CSR: subject CN `subject_cn` (PrintableString, bytes as given) and one
/// requested extension 1.3.6.1.4.1.311.66.1.0 carrying `device_id` followed by NUL.
pub fn build(
    key: &RsaPrivateKey,
    subject_cn: &[u8],
    device_id: &str,
    hash: HashAlg,
) -> Result<Vec<u8>, ClientError> {
    let subject = der::name(&[(oid::COMMON_NAME, der::printable_string(subject_cn))]);
    let mut ext_value = device_id.as_bytes().to_vec();
    ext_value.push(0);
    let extension = der::sequence(&[der::oid(oid::MS_DEVICE_ID), der::octet_string(&ext_value)]);
    let extensions = der::sequence(&[extension]);
    let attribute = der::sequence(&[der::oid(oid::EXTENSION_REQUEST), der::set(&[extensions])]);
    let info = der::sequence(&[
        der::small_integer(0),
        subject,
        spki_der(key)?,
        der::context(0, &attribute),
    ]);
    let signature = sign(key, hash, &info)?;
    Ok(der::sequence(&[
        info,
        der::algorithm(hash.signature_oid()),
        der::bit_string(&signature),
    ]))
}

/// The hash a CSR was signed with, from its signatureAlgorithm (OIW sha1WithRSA or
/// sha256WithRSA); `None` for anything else or a malformed request.
pub fn hash_of(csr_der: &[u8]) -> Option<HashAlg> {
    let (outer, _) = der::read_tlv(csr_der)?;
    let parts = der::read_all(outer.content)?;
    let alg = der::read_all(parts.get(1)?.content)?;
    match der::oid_string(alg.first()?.content).as_str() {
        oid::SHA1_WITH_RSA_OIW => Some(HashAlg::Sha1),
        oid::SHA256_WITH_RSA => Some(HashAlg::Sha256),
        _ => None,
    }
}

/// A CSR over `key` with the subject and attributes of `original` copied as encoded
/// (a real device's CSR keeps its PrintableString CN with the trailing NUL and its
/// DeviceID extension request byte for byte), signed with `hash`.
pub fn rebuild(
    original: &[u8],
    key: &RsaPrivateKey,
    hash: HashAlg,
) -> Result<Vec<u8>, ClientError> {
    let bad = || ClientError::Crypto("the original CSR is not a DER PKCS#10 request".into());
    let (outer, _) = der::read_tlv(original).ok_or_else(bad)?;
    let parts = der::read_all(outer.content).ok_or_else(bad)?;
    let info = der::read_all(parts.first().ok_or_else(bad)?.content).ok_or_else(bad)?;
    // version, subject, subjectPKInfo, [0] attributes (RFC 2986 §4.1).
    let (version, subject) = match info.as_slice() {
        [v, s, _, ..] => (v, s),
        _ => return Err(bad()),
    };
    let attributes = info.iter().skip(3).find(|t| t.tag == 0xa0);
    let mut fields = vec![
        version.encoded.to_vec(),
        subject.encoded.to_vec(),
        spki_der(key)?,
    ];
    if let Some(a) = attributes {
        fields.push(a.encoded.to_vec());
    }
    let info = der::sequence(&fields);
    let signature = sign(key, hash, &info)?;
    Ok(der::sequence(&[
        info,
        der::algorithm(hash.signature_oid()),
        der::bit_string(&signature),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLVs of CertificationRequestInfo: version, subject, SPKI, attributes.
    fn info_parts(csr: &[u8]) -> Vec<Vec<u8>> {
        let (outer, _) = der::read_tlv(csr).unwrap();
        let parts = der::read_all(outer.content).unwrap();
        der::read_all(parts[0].content)
            .unwrap()
            .iter()
            .map(|t| t.encoded.to_vec())
            .collect()
    }

    #[test]
    fn a_rebuilt_csr_keeps_subject_and_attributes_over_the_new_key() {
        let mut rng = rand::thread_rng();
        let old_key = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let new_key = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let cn = windows_subject_cn("DEVICE-1");
        let original = build(&old_key, &cn, "DEVICE-1", HashAlg::Sha1).unwrap();
        let rebuilt = rebuild(&original, &new_key, HashAlg::Sha256).unwrap();
        let (a, b) = (info_parts(&original), info_parts(&rebuilt));
        assert_eq!(a.len(), 4);
        // Subject (PrintableString CN with its NUL) and attributes byte for byte.
        assert_eq!(a[1], b[1]);
        assert_eq!(a[3], b[3]);
        assert_eq!(b[2], spki_der(&new_key).unwrap());
        assert_eq!(hash_of(&original), Some(HashAlg::Sha1));
        assert_eq!(hash_of(&rebuilt), Some(HashAlg::Sha256));
        assert!(rebuild(b"not DER", &new_key, HashAlg::Sha1).is_err());
    }
}
