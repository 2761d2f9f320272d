//! The WSTEP identity CA: signs the client certificates devices use for OMA-DM mTLS.
//!
//! Generated on first start (RSA-2048, SHA-256) and persisted in the data directory so
//! that certificates issued before a restart stay valid.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm,
    PKCS_RSA_SHA256,
};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rustls_pki_types::PrivatePkcs8KeyDer;
use sha1::{Digest, Sha1};
use time::{Duration, OffsetDateTime};

use crate::error::ServerError;

const CA_CERT_FILE: &str = "identity-ca.pem";
const CA_KEY_FILE: &str = "identity-ca.key.pem";

/// The identity CA: its certificate and the key that signs device certificates.
pub struct IdentityCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
    /// SHA-1 thumbprint and base64 of `cert_der`, computed once: every provisioning
    /// document carries both.
    thumbprint: String,
    cert_base64: String,
    /// Certificates that passed [`IdentityCa::verify_issuer`], by SHA-256 of their DER.
    accepted: std::sync::Mutex<std::collections::HashMap<[u8; 32], ClientCert>>,
}

/// Entries of the accepted-certificate memo (about 200 bytes each); it starts over when
/// full.
const ACCEPTED_ENTRIES: usize = 100_000;

/// A device certificate issued by [`IdentityCa::issue`].
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub der: Vec<u8>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// SHA-1 of the DER certificate, uppercase hex (the Windows "thumbprint").
    pub thumbprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// An RSA public key from a CSR, as rcgen wants it for signing.
struct RsaSpki {
    /// The DER `RSAPublicKey` inside the SubjectPublicKeyInfo bit string.
    rsa_public_key: Vec<u8>,
}

impl PublicKeyData for RsaSpki {
    fn der_bytes(&self) -> &[u8] {
        &self.rsa_public_key
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }
}

/// SHA-1 thumbprint of a DER certificate, uppercase hex as Windows shows it.
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(der))
}

impl IdentityCa {
    /// Loads the CA from `dir`, generating and persisting it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, ServerError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if crate::tls::create_pair_once(&cert_path, &key_path, Self::generate)? {
            tracing::info!(path = %cert_path.display(), "generated WSTEP identity CA");
        }
        let cert_pem = std::fs::read_to_string(&cert_path)?;
        let key_pem = std::fs::read_to_string(&key_path)?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// Builds the CA from its PEM certificate and PKCS#8 key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, ServerError> {
        let key = KeyPair::from_pkcs8_pem_and_sign_algo(key_pem, &PKCS_RSA_SHA256)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let cert_der = crate::tls::pem_certs(cert_pem.as_bytes())?
            .into_iter()
            .next()
            .ok_or_else(|| ServerError::Config("identity CA file holds no certificate".into()))?
            .to_vec();
        use base64::Engine;
        Ok(IdentityCa {
            issuer,
            thumbprint: thumbprint(&cert_der),
            cert_base64: base64::engine::general_purpose::STANDARD.encode(&cert_der),
            cert_der,
            cert_pem: cert_pem.to_string(),
            accepted: Default::default(),
        })
    }

    fn generate() -> Result<(String, String), ServerError> {
        let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| ServerError::Crypto(format!("RSA key generation: {e}")))?;
        let pkcs8 = rsa
            .to_pkcs8_der()
            .map_err(|e| ServerError::Crypto(format!("PKCS#8 encoding: {e}")))?;
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
            &PKCS_RSA_SHA256,
        )?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "winmdm WSTEP identity CA");
        dn.push(DnType::OrganizationName, "winmdm");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial().0);
        let cert = params.self_signed(&key)?;
        let key_pem = pkcs8_pem(&rsa)?;
        Ok((cert.pem(), key_pem))
    }

    /// DER of the CA certificate.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// PEM of the CA certificate.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Thumbprint of the CA certificate.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Base64 (standard alphabet, padded) of the CA certificate's DER.
    pub fn cert_base64(&self) -> &str {
        &self.cert_base64
    }

    /// Signs a client-authentication certificate for `subject_cn` over the CSR's RSA
    /// public key (`rsa_public_key` is the DER `RSAPublicKey`).
    pub fn issue(
        &self,
        subject_cn: &str,
        rsa_public_key: &[u8],
        validity_days: u32,
    ) -> Result<IssuedCert, ServerError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject_cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        // Back-date a little: device clocks drift and Windows rejects not-yet-valid certs.
        let not_before = now - Duration::minutes(10);
        let not_after = now + Duration::days(i64::from(validity_days));
        params.not_before = not_before;
        params.not_after = not_after;
        let (serial, serial_hex) = random_serial();
        params.serial_number = Some(serial);
        let key = RsaSpki {
            rsa_public_key: rsa_public_key.to_vec(),
        };
        let cert = params.signed_by(&key, &self.issuer)?;
        let der = cert.der().to_vec();
        Ok(IssuedCert {
            thumbprint: thumbprint(&der),
            der,
            serial: serial_hex,
            not_before,
            not_after,
        })
    }

    /// Checks that `der` is a certificate this CA signed, valid now. Which enrollment it
    /// belongs to is the caller's check.
    pub fn verify_issued(&self, der: &[u8]) -> Result<ClientCert, CertRejection> {
        let issued = self.verify_issuer(der)?;
        issued.check_validity(crate::clock::unix_now())?;
        Ok(issued)
    }

    /// The time-independent half of [`IdentityCa::verify_issued`]: issuer, signature and
    /// clientAuth EKU. A connection checks this once and the validity period per request.
    /// The verdict depends only on the DER bytes and this CA, so an accepted certificate
    /// is remembered: a device's next connection (a resumed TLS session presents the
    /// same certificate) skips the parsing and the signature check, about a tenth of the
    /// server's CPU per new connection. Refusals are not remembered. Whether the
    /// certificate is still valid and still bound to an active enrollment is checked on
    /// every request regardless.
    pub fn verify_issuer(&self, der: &[u8]) -> Result<ClientCert, CertRejection> {
        use sha2::{Digest as _, Sha256};
        let key: [u8; 32] = Sha256::digest(der).into();
        let lock = || self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = lock().get(&key) {
            return Ok(c.clone());
        }
        let issued = self.check_issuer(der)?;
        let mut accepted = lock();
        if accepted.len() >= ACCEPTED_ENTRIES {
            accepted.clear();
        }
        accepted.insert(key, issued.clone());
        Ok(issued)
    }

    fn check_issuer(&self, der: &[u8]) -> Result<ClientCert, CertRejection> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|_| CertRejection::Malformed)?;
        let (_, ca) = x509_parser::parse_x509_certificate(&self.cert_der)
            .map_err(|_| CertRejection::Malformed)?;
        if cert.issuer() != ca.subject() {
            return Err(CertRejection::UnknownIssuer);
        }
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| CertRejection::UnknownIssuer)?;
        let client_auth = cert
            .extended_key_usage()
            .ok()
            .flatten()
            .map(|eku| eku.value.client_auth)
            .unwrap_or(false);
        if !client_auth {
            return Err(CertRejection::WrongUsage);
        }
        let validity = cert.validity();
        Ok(ClientCert {
            serial: hex::encode(cert.raw_serial()),
            thumbprint: thumbprint(der),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }
}

/// A certificate this CA issued for client authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Serial number, lowercase hex.
    pub serial: String,
    pub thumbprint: String,
    /// Validity period, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl ClientCert {
    /// Refuses the certificate outside its validity period (RFC 5280 §4.1.2.5: both
    /// bounds inclusive).
    pub fn check_validity(&self, now: i64) -> Result<(), CertRejection> {
        if now < self.not_before || now > self.not_after {
            return Err(CertRejection::Expired);
        }
        Ok(())
    }
}

/// Why a presented client certificate is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertRejection {
    #[error("client certificate is not valid DER")]
    Malformed,
    #[error("client certificate was not issued by this server's identity CA")]
    UnknownIssuer,
    #[error("client certificate is expired or not yet valid")]
    Expired,
    #[error("client certificate lacks the clientAuth extended key usage")]
    WrongUsage,
}

fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // no leading zero byte, so the DER encoding is exactly these bytes
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

fn pkcs8_pem(key: &rsa::RsaPrivateKey) -> Result<String, ServerError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| ServerError::Crypto(format!("PKCS#8 PEM encoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn cached_thumbprint_and_base64_are_those_of_the_certificate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = IdentityCa::load_or_create(dir.path()).expect("CA");
        assert_eq!(ca.thumbprint(), thumbprint(ca.cert_der()));
        assert_eq!(ca.thumbprint().len(), 40);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(ca.cert_base64())
            .expect("base64");
        assert_eq!(decoded, ca.cert_der());
    }
}
