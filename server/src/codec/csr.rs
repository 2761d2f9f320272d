//! PKCS#10 certificate requests as Windows sends them in MS-WSTEP (RFC 2986).
//!
//! Parsing is deliberately lenient where real Windows CSRs are odd (protocol-reference
//! §3): the subject CN is a PrintableString that may contain `!` and end with a NUL,
//! extensions carry Microsoft OIDs, and the signature algorithm may be sha1WithRSA under
//! the old OIW OID 1.3.14.3.2.29. It is strict where it matters: the request must be
//! well-formed DER, carry an RSA key of the policy's minimum size, and its own signature
//! must verify.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::der::{
    bit_string_bytes, expect, read_tlv, TAG_BIT_STRING, TAG_INTEGER, TAG_OID, TAG_SEQUENCE, TAG_SET,
};

/// Why a CSR is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("CSR is not valid DER: {0}")]
    Der(&'static str),
    #[error("CSR public key is not RSA")]
    NotRsa,
    #[error("CSR RSA key is {0} bits; the policy requires at least {1}")]
    KeyTooShort(usize, usize),
    #[error("CSR signature algorithm is not supported")]
    UnsupportedSignatureAlgorithm,
    #[error("CSR signature does not verify")]
    BadSignature,
}

impl From<crate::der::DerError> for CsrError {
    fn from(e: crate::der::DerError) -> Self {
        CsrError::Der(e.0)
    }
}

/// A parsed, verified CSR.
#[derive(Debug, Clone)]
pub struct Csr {
    /// The subject CN as sent (trailing NULs removed), if any.
    pub subject_cn: Option<String>,
    /// The DER `RSAPublicKey` (contents of the SubjectPublicKeyInfo bit string).
    pub rsa_public_key: Vec<u8>,
    pub key_bits: usize,
    /// The hash the request was signed with: "sha1", "sha256", "sha384" or "sha512".
    pub signature_hash: &'static str,
}

impl Csr {
    /// SHA-256 of the DER RSAPublicKey, hex: identifies the key across requests.
    pub fn key_fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.rsa_public_key))
    }
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_PKCS1_PREFIX: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01];
/// 1.3.14.3.2.29 sha1WithRSASignature (OIW), which Windows uses for sha1 policies.
const OID_OIW_SHA1_RSA: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1D];
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Parses and verifies a DER PKCS#10 request.
pub fn parse_and_verify(der: &[u8], min_key_bits: usize) -> Result<Csr, CsrError> {
    let (outer, trailing) = expect(der, TAG_SEQUENCE, "CertificationRequest is not a SEQUENCE")?;
    if !trailing.is_empty() {
        return Err(CsrError::Der("trailing bytes after the request"));
    }
    let (info, rest) = expect(
        outer.contents,
        TAG_SEQUENCE,
        "certificationRequestInfo is not a SEQUENCE",
    )?;
    let (sig_alg, rest) = expect(rest, TAG_SEQUENCE, "signatureAlgorithm is not a SEQUENCE")?;
    let (signature, _) = expect(rest, TAG_BIT_STRING, "signature is not a BIT STRING")?;

    let (_version, rest) = expect(info.contents, TAG_INTEGER, "version is not an INTEGER")?;
    let (subject, rest) = expect(rest, TAG_SEQUENCE, "subject is not a Name")?;
    let (spki, _attributes) = expect(rest, TAG_SEQUENCE, "subjectPKInfo is not a SEQUENCE")?;

    let subject_cn = common_name(subject.contents)?;
    let (key_alg, rest) = expect(
        spki.contents,
        TAG_SEQUENCE,
        "SPKI algorithm is not a SEQUENCE",
    )?;
    let (key_oid, _) = expect(key_alg.contents, TAG_OID, "SPKI algorithm has no OID")?;
    if key_oid.contents != OID_RSA_ENCRYPTION {
        return Err(CsrError::NotRsa);
    }
    let (key_bits_tlv, _) = expect(rest, TAG_BIT_STRING, "SPKI key is not a BIT STRING")?;
    let rsa_public_key = bit_string_bytes(key_bits_tlv.contents)?;
    let key = RsaPublicKey::from_pkcs1_der(rsa_public_key)
        .map_err(|_| CsrError::Der("bad RSAPublicKey"))?;
    let key_bits = key.n().bits();
    if key_bits < min_key_bits {
        return Err(CsrError::KeyTooShort(key_bits, min_key_bits));
    }

    let (sig_oid, _) = expect(sig_alg.contents, TAG_OID, "signatureAlgorithm has no OID")?;
    let sig = bit_string_bytes(signature.contents)?;
    let tbs = info.encoded;
    let signature_hash = verify(&key, rsa_public_key, sig_oid.contents, tbs, sig)?;
    Ok(Csr {
        subject_cn,
        rsa_public_key: rsa_public_key.to_vec(),
        key_bits,
        signature_hash,
    })
}

/// Hash name, `rsa`-crate scheme, digest function and aws-lc-rs algorithm of a signature OID.
type SignatureCheck = (
    &'static str,
    Pkcs1v15Sign,
    fn(&[u8]) -> Vec<u8>,
    &'static aws_lc_rs::signature::RsaParameters,
);

/// Verifies the request's signature. aws-lc-rs does the work for 2048-8192-bit keys (several
/// times faster than the `rsa` crate); anything aws-lc-rs refuses, including keys outside that
/// range or unusual encodings, is checked again with the `rsa` crate before being called
/// a bad signature, so no request Windows could send is refused for its strictness.
fn verify(
    key: &RsaPublicKey,
    pkcs1_key: &[u8],
    oid: &[u8],
    tbs: &[u8],
    sig: &[u8],
) -> Result<&'static str, CsrError> {
    use aws_lc_rs::signature as rs;
    let (hash, scheme, digest, lc_alg): SignatureCheck =
        if oid == OID_OIW_SHA1_RSA || oid == [OID_PKCS1_PREFIX, &[0x05]].concat().as_slice() {
            (
                "sha1",
                Pkcs1v15Sign::new::<Sha1>(),
                |d| Sha1::digest(d).to_vec(),
                &rs::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            )
        } else if oid == [OID_PKCS1_PREFIX, &[0x0B]].concat().as_slice() {
            (
                "sha256",
                Pkcs1v15Sign::new::<Sha256>(),
                |d| Sha256::digest(d).to_vec(),
                &rs::RSA_PKCS1_2048_8192_SHA256,
            )
        } else if oid == [OID_PKCS1_PREFIX, &[0x0C]].concat().as_slice() {
            (
                "sha384",
                Pkcs1v15Sign::new::<Sha384>(),
                |d| Sha384::digest(d).to_vec(),
                &rs::RSA_PKCS1_2048_8192_SHA384,
            )
        } else if oid == [OID_PKCS1_PREFIX, &[0x0D]].concat().as_slice() {
            (
                "sha512",
                Pkcs1v15Sign::new::<Sha512>(),
                |d| Sha512::digest(d).to_vec(),
                &rs::RSA_PKCS1_2048_8192_SHA512,
            )
        } else {
            return Err(CsrError::UnsupportedSignatureAlgorithm);
        };
    if rs::UnparsedPublicKey::new(lc_alg, pkcs1_key)
        .verify(tbs, sig)
        .is_ok()
    {
        return Ok(hash);
    }
    key.verify(scheme, &digest(tbs), sig)
        .map_err(|_| CsrError::BadSignature)?;
    Ok(hash)
}

/// The first CN in a Name, decoded leniently: any string type, trailing NULs dropped,
/// invalid UTF-8 replaced.
fn common_name(mut rdns: &[u8]) -> Result<Option<String>, CsrError> {
    while !rdns.is_empty() {
        let (rdn, rest) = expect(rdns, TAG_SET, "RDN is not a SET")?;
        rdns = rest;
        let mut atvs = rdn.contents;
        while !atvs.is_empty() {
            let (atv, rest) = expect(
                atvs,
                TAG_SEQUENCE,
                "AttributeTypeAndValue is not a SEQUENCE",
            )?;
            atvs = rest;
            let (oid, value) = expect(atv.contents, TAG_OID, "attribute type is not an OID")?;
            if oid.contents == OID_COMMON_NAME {
                let (v, _) = read_tlv(value)?;
                let s = String::from_utf8_lossy(v.contents);
                return Ok(Some(s.trim_end_matches('\0').to_string()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_without_panic() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x80\x00\x00",
            b"hello",
        ] {
            assert!(parse_and_verify(input, 2048).is_err());
        }
    }
}
