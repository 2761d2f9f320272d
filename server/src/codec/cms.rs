//! MS-WSTEP certificate renewal (`RequestType` Renew; Microsoft's "certificate renewal
//! for Windows MDM" documentation). The device sends a new PKCS#10 wrapped in a CMS
//! SignedData (PKCS#7) signed with its current key, usually over a TLS connection that
//! presents its current certificate. The server authenticates the request by that
//! certificate: it must be one this CA issued to an active enrollment, and the PKCS#7
//! signature must verify with its key. The device then gets a new certificate; the old
//! one stays valid until the device first uses the new one or the grace period ends.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::csr::CsrError;
use crate::der::{
    bit_string_bytes, expect, read_tlv, TAG_CONTEXT_0, TAG_INTEGER, TAG_OCTET_STRING, TAG_OID,
    TAG_SEQUENCE, TAG_SET,
};

/// 1.2.840.113549.1.7.2 signedData
const OID_SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
/// 1.2.840.113549.1.9.4 messageDigest
const OID_MESSAGE_DIGEST: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04];
/// 1.3.14.3.2.26 sha1
const OID_SHA1: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1A];
/// 2.16.840.1.101.3.4.2.1 sha256
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// Hashes a message with the signer's digest algorithm.
type Hasher = fn(&[u8]) -> Vec<u8>;

/// A parsed CMS SignedData with one signer.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The encapsulated content: the new PKCS#10.
    pub content: Vec<u8>,
    /// Certificates carried in the SignedData (the signer's, usually).
    pub certificates: Vec<Vec<u8>>,
    digest_oid: Vec<u8>,
    /// DER of signedAttrs re-tagged as SET OF, when present.
    signed_attrs: Option<Vec<u8>>,
    message_digest: Option<Vec<u8>>,
    signature: Vec<u8>,
}

/// Parses a DER CMS ContentInfo holding SignedData (RFC 5652 §5).
pub fn parse_signed_data(der: &[u8]) -> Result<SignedRequest, CsrError> {
    let (ci, _) = expect(der, TAG_SEQUENCE, "ContentInfo is not a SEQUENCE")?;
    let (oid, rest) = expect(ci.contents, TAG_OID, "ContentInfo has no contentType")?;
    if oid.contents != OID_SIGNED_DATA {
        return Err(CsrError::Der("PKCS#7 content is not signedData"));
    }
    let (explicit, _) = expect(rest, TAG_CONTEXT_0, "ContentInfo has no content")?;
    let (sd, _) = expect(
        explicit.contents,
        TAG_SEQUENCE,
        "SignedData is not a SEQUENCE",
    )?;
    let (_version, rest) = expect(sd.contents, TAG_INTEGER, "SignedData version")?;
    let (_digest_algs, rest) = expect(rest, TAG_SET, "SignedData digestAlgorithms")?;
    let (encap, mut rest) = expect(rest, TAG_SEQUENCE, "SignedData encapContentInfo")?;
    let (_ctype, econtent) = expect(encap.contents, TAG_OID, "encapContentInfo eContentType")?;
    let (econtent, _) = expect(econtent, TAG_CONTEXT_0, "encapContentInfo has no eContent")?;
    let (octets, _) = expect(
        econtent.contents,
        TAG_OCTET_STRING,
        "eContent is not an OCTET STRING",
    )?;
    let content = octets.contents.to_vec();

    let mut certificates = Vec::new();
    // certificates [0] IMPLICIT and crls [1] IMPLICIT are optional.
    loop {
        let (tlv, after) = read_tlv(rest)?;
        match tlv.tag {
            TAG_CONTEXT_0 => {
                let mut certs = tlv.contents;
                while !certs.is_empty() {
                    let (c, more) = read_tlv(certs)?;
                    certificates.push(c.encoded.to_vec());
                    certs = more;
                }
                rest = after;
            }
            0xA1 => rest = after,
            _ => break,
        }
    }
    let (signer_infos, _) = expect(rest, TAG_SET, "SignedData signerInfos")?;
    let (si, _) = expect(signer_infos.contents, TAG_SEQUENCE, "no SignerInfo")?;
    let (_v, rest) = expect(si.contents, TAG_INTEGER, "SignerInfo version")?;
    let (_sid, rest) = read_tlv(rest)?;
    let (digest_alg, rest) = expect(rest, TAG_SEQUENCE, "SignerInfo digestAlgorithm")?;
    let (digest_oid, _) = expect(digest_alg.contents, TAG_OID, "digestAlgorithm OID")?;
    let (next, after) = read_tlv(rest)?;
    let (signed_attrs, message_digest, rest) = if next.tag == TAG_CONTEXT_0 {
        // The signature covers the attributes encoded as an explicit SET OF.
        let mut set = next.encoded.to_vec();
        set[0] = TAG_SET;
        (Some(set), message_digest_attr(next.contents)?, after)
    } else {
        (None, None, rest)
    };
    let (_sig_alg, rest) = expect(rest, TAG_SEQUENCE, "SignerInfo signatureAlgorithm")?;
    let (signature, _) = expect(rest, TAG_OCTET_STRING, "SignerInfo signature")?;
    Ok(SignedRequest {
        content,
        certificates,
        digest_oid: digest_oid.contents.to_vec(),
        signed_attrs,
        message_digest,
        signature: signature.contents.to_vec(),
    })
}

fn message_digest_attr(mut attrs: &[u8]) -> Result<Option<Vec<u8>>, CsrError> {
    while !attrs.is_empty() {
        let (attr, more) = expect(attrs, TAG_SEQUENCE, "signed attribute")?;
        attrs = more;
        let (oid, values) = expect(attr.contents, TAG_OID, "attribute type")?;
        if oid.contents == OID_MESSAGE_DIGEST {
            let (set, _) = expect(values, TAG_SET, "attribute values")?;
            let (v, _) = expect(set.contents, TAG_OCTET_STRING, "messageDigest value")?;
            return Ok(Some(v.contents.to_vec()));
        }
    }
    Ok(None)
}

impl SignedRequest {
    /// Verifies the signer's signature with the RSA key of `cert_der`.
    pub fn verify_with(&self, cert_der: &[u8]) -> Result<(), CsrError> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|_| CsrError::Der("signer certificate"))?;
        let spki = cert.public_key().raw;
        let (spki, _) = expect(spki, TAG_SEQUENCE, "signer SPKI")?;
        let (_alg, rest) = expect(spki.contents, TAG_SEQUENCE, "signer SPKI algorithm")?;
        let (bits, _) = expect(rest, crate::der::TAG_BIT_STRING, "signer SPKI key")?;
        let key = RsaPublicKey::from_pkcs1_der(bit_string_bytes(bits.contents)?)
            .map_err(|_| CsrError::NotRsa)?;
        let (hash_content, scheme): (Hasher, Pkcs1v15Sign) = if self.digest_oid == OID_SHA1 {
            (|d| Sha1::digest(d).to_vec(), Pkcs1v15Sign::new::<Sha1>())
        } else if self.digest_oid == OID_SHA256 {
            (
                |d| Sha256::digest(d).to_vec(),
                Pkcs1v15Sign::new::<Sha256>(),
            )
        } else {
            return Err(CsrError::UnsupportedSignatureAlgorithm);
        };
        let signed = match (&self.signed_attrs, &self.message_digest) {
            (Some(attrs), Some(md)) => {
                if *md != hash_content(&self.content) {
                    return Err(CsrError::BadSignature);
                }
                hash_content(attrs)
            }
            (Some(_), None) => return Err(CsrError::Der("signedAttrs without messageDigest")),
            (None, _) => hash_content(&self.content),
        };
        key.verify(scheme, &signed, &self.signature)
            .map_err(|_| CsrError::BadSignature)
    }
}
