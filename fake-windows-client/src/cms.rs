//! CMS SignedData (RFC 5652 §5) wrapping the renewal CSR: Microsoft's "certificate renewal
//! for Windows MDM" has the device sign a PKCS#7 around its new PKCS#10 with the key of the
//! certificate being renewed.

use crate::csr::{self, HashAlg};
use crate::der::{self, oid, read_all, read_tlv, Tlv};
use crate::error::ClientError;
use sha2::{Digest, Sha256};

const STEP: &str = "renew";

fn crypto(what: impl Into<String>) -> ClientError {
    ClientError::Crypto(what.into())
}

/// Issuer Name (DER) and serialNumber content bytes of a certificate.
fn issuer_and_serial(cert_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| crypto(format!("signer certificate: {e}")))?;
    Ok((
        cert.tbs_certificate.issuer.as_raw().to_vec(),
        cert.tbs_certificate.raw_serial().to_vec(),
    ))
}

fn attribute(oid_str: &str, value: Vec<u8>) -> Vec<u8> {
    der::sequence(&[der::oid(oid_str), der::set(&[value])])
}

/// DER of the signed attributes as a SET (tag 0x31): what the signature covers (§5.4).
pub fn signed_attrs_set(content: &[u8]) -> Vec<u8> {
    der::set(&[
        attribute(oid::CONTENT_TYPE, der::oid(oid::DATA)),
        attribute(
            oid::MESSAGE_DIGEST,
            der::octet_string(&Sha256::digest(content)),
        ),
    ])
}

/// ContentInfo(SignedData) over `content` (id-data), signed with `key`, carrying
/// `signer_cert_der` and identifying it by IssuerAndSerialNumber (SignerInfo v1).
pub fn sign(
    content: &[u8],
    signer_cert_der: &[u8],
    key: &rsa::RsaPrivateKey,
) -> Result<Vec<u8>, ClientError> {
    let (issuer, serial) = issuer_and_serial(signer_cert_der)?;
    let attrs = signed_attrs_set(content);
    let signature = csr::sign(key, HashAlg::Sha256, &attrs)?;
    // signedAttrs is [0] IMPLICIT: the same encoding with the context tag.
    let mut implicit = attrs.clone();
    if let Some(t) = implicit.first_mut() {
        *t = 0xa0;
    }
    let signer_info = der::sequence(&[
        der::small_integer(1),
        der::sequence(&[issuer, der::tlv(0x02, &serial)]),
        der::algorithm(oid::SHA256),
        implicit,
        der::algorithm(oid::RSA_ENCRYPTION),
        der::octet_string(&signature),
    ]);
    let signed_data = der::sequence(&[
        der::small_integer(1),
        der::set(&[der::algorithm(oid::SHA256)]),
        der::sequence(&[
            der::oid(oid::DATA),
            der::context(0, &der::octet_string(content)),
        ]),
        der::context(0, signer_cert_der),
        der::set(&[signer_info]),
    ]);
    Ok(der::sequence(&[
        der::oid(oid::SIGNED_DATA),
        der::context(0, &signed_data),
    ]))
}

/// A SignedData read back, for checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSignedData {
    pub version: u32,
    pub digest_algorithms: Vec<String>,
    pub econtent_type: String,
    pub econtent: Vec<u8>,
    pub certificates: Vec<Vec<u8>>,
    pub signer_version: u32,
    pub signer_issuer_der: Vec<u8>,
    pub signer_serial: Vec<u8>,
    pub signer_digest_algorithm: String,
    /// signedAttrs re-encoded with the SET tag (the signed bytes).
    pub signed_attrs_set: Vec<u8>,
    pub attr_content_type: Option<String>,
    pub attr_message_digest: Option<Vec<u8>>,
    pub signature_algorithm: String,
    pub signature: Vec<u8>,
}

fn take<'a>(items: &[Tlv<'a>], i: usize, tag: u8, what: &str) -> Result<Tlv<'a>, ClientError> {
    match items.get(i) {
        Some(t) if t.tag == tag => Ok(*t),
        Some(t) => Err(ClientError::invalid(
            STEP,
            format!("{what}: tag 0x{:02x}, expected 0x{tag:02x}", t.tag),
        )),
        None => Err(ClientError::missing(STEP, what.to_string())),
    }
}

fn children<'a>(t: Tlv<'a>, what: &str) -> Result<Vec<Tlv<'a>>, ClientError> {
    read_all(t.content).ok_or_else(|| ClientError::invalid(STEP, format!("{what}: bad DER")))
}

fn small_int(t: Tlv) -> u32 {
    t.content
        .iter()
        .fold(0u32, |acc, b| acc.wrapping_shl(8) | u32::from(*b))
}

fn alg_oid(t: Tlv, what: &str) -> Result<String, ClientError> {
    let parts = children(t, what)?;
    Ok(der::oid_string(take(&parts, 0, 0x06, what)?.content))
}

/// Parses a DER ContentInfo holding SignedData with one SignerInfo.
pub fn parse(der_bytes: &[u8]) -> Result<ParsedSignedData, ClientError> {
    let (ci, _) =
        read_tlv(der_bytes).ok_or_else(|| ClientError::invalid(STEP, "ContentInfo: bad DER"))?;
    let ci = children(ci, "ContentInfo")?;
    let ct = take(&ci, 0, 0x06, "ContentInfo contentType")?;
    if der::oid_string(ct.content) != oid::SIGNED_DATA {
        return Err(ClientError::invalid(STEP, "contentType is not signedData"));
    }
    let explicit = children(take(&ci, 1, 0xa0, "ContentInfo content")?, "content")?;
    let sd = children(take(&explicit, 0, 0x30, "SignedData")?, "SignedData")?;
    let version = small_int(take(&sd, 0, 0x02, "SignedData version")?);
    let digest_algorithms = children(take(&sd, 1, 0x31, "digestAlgorithms")?, "digestAlgorithms")?
        .into_iter()
        .map(|a| alg_oid(a, "digestAlgorithm"))
        .collect::<Result<Vec<_>, _>>()?;
    let encap = children(take(&sd, 2, 0x30, "encapContentInfo")?, "encapContentInfo")?;
    let econtent_type = der::oid_string(take(&encap, 0, 0x06, "eContentType")?.content);
    let econtent_wrapper = children(take(&encap, 1, 0xa0, "eContent")?, "eContent")?;
    let econtent = take(&econtent_wrapper, 0, 0x04, "eContent OCTET STRING")?
        .content
        .to_vec();
    let mut idx = 3;
    let mut certificates = Vec::new();
    if let Some(t) = sd.get(idx).filter(|t| t.tag == 0xa0) {
        certificates = children(*t, "certificates")?
            .iter()
            .map(|c| c.encoded.to_vec())
            .collect();
        idx += 1;
    }
    if sd.get(idx).is_some_and(|t| t.tag == 0xa1) {
        idx += 1;
    }
    let infos = children(take(&sd, idx, 0x31, "signerInfos")?, "signerInfos")?;
    let si = children(take(&infos, 0, 0x30, "SignerInfo")?, "SignerInfo")?;
    let signer_version = small_int(take(&si, 0, 0x02, "SignerInfo version")?);
    let sid = children(take(&si, 1, 0x30, "IssuerAndSerialNumber")?, "sid")?;
    let issuer = take(&sid, 0, 0x30, "sid issuer")?;
    let serial = take(&sid, 1, 0x02, "sid serialNumber")?;
    let signer_digest_algorithm = alg_oid(take(&si, 2, 0x30, "digestAlgorithm")?, "digest")?;
    let attrs = take(&si, 3, 0xa0, "signedAttrs")?;
    let mut signed_attrs_set = attrs.encoded.to_vec();
    if let Some(t) = signed_attrs_set.first_mut() {
        *t = 0x31;
    }
    let mut attr_content_type = None;
    let mut attr_message_digest = None;
    for a in children(attrs, "signedAttrs")? {
        let parts = children(a, "Attribute")?;
        let kind = der::oid_string(take(&parts, 0, 0x06, "attrType")?.content);
        let values = children(take(&parts, 1, 0x31, "attrValues")?, "attrValues")?;
        match kind.as_str() {
            oid::CONTENT_TYPE => {
                attr_content_type = Some(der::oid_string(
                    take(&values, 0, 0x06, "contentType")?.content,
                ))
            }
            oid::MESSAGE_DIGEST => {
                attr_message_digest =
                    Some(take(&values, 0, 0x04, "messageDigest")?.content.to_vec())
            }
            _ => {}
        }
    }
    Ok(ParsedSignedData {
        version,
        digest_algorithms,
        econtent_type,
        econtent,
        certificates,
        signer_version,
        signer_issuer_der: issuer.encoded.to_vec(),
        signer_serial: serial.content.to_vec(),
        signer_digest_algorithm,
        signed_attrs_set,
        attr_content_type,
        attr_message_digest,
        signature_algorithm: alg_oid(take(&si, 4, 0x30, "signatureAlgorithm")?, "sigalg")?,
        signature: take(&si, 5, 0x04, "signature")?.content.to_vec(),
    })
}
