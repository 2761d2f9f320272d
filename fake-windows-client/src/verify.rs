//! Strict checks of a provisioning document against the device's key ([MS-MDE2] §3.3.4.2).

use crate::error::ClientError;
use crate::provisioning::{CertSearchCriteria, ProvisionedCert, ProvisioningDoc};
use base64::Engine;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha1::{Digest, Sha1};
use x509_parser::prelude::*;

const STEP: &str = "verify_provisioning";

/// Uppercase hex SHA-1 of a DER certificate, as Windows names certificates.
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(der))
}

/// What a verified document tells the device.
#[derive(Debug, Clone)]
pub struct Verified {
    pub root_der: Vec<u8>,
    pub root_thumbprint: String,
    pub client_der: Vec<u8>,
    pub client_thumbprint: String,
    /// `User` or `System`.
    pub client_scope: String,
    pub provider_id: String,
    pub addr: String,
    pub criteria: CertSearchCriteria,
}

fn bad(what: impl Into<String>) -> ClientError {
    ClientError::invalid(STEP, what)
}

fn decode_cert(c: &ProvisionedCert) -> Result<Vec<u8>, ClientError> {
    let compact = crate::soap::compact_base64(&c.encoded);
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| {
            bad(format!(
                "{}/{}: EncodedCertificate is not base64: {e}",
                c.store, c.thumbprint
            ))
        })?;
    X509Certificate::from_der(&der).map_err(|e| {
        bad(format!(
            "{}/{}: EncodedCertificate is not an X.509 certificate: {e}",
            c.store, c.thumbprint
        ))
    })?;
    let tp = thumbprint(&der);
    if c.thumbprint != tp {
        return Err(bad(format!(
            "{}: characteristic type {:?} is not the certificate's SHA-1 thumbprint {tp}",
            c.store, c.thumbprint
        )));
    }
    Ok(der)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    &b[n..]
}

/// The certificate part of a verified document.
#[derive(Debug, Clone)]
pub struct VerifiedCerts {
    pub root_der: Vec<u8>,
    pub root_thumbprint: String,
    pub client_der: Vec<u8>,
    pub client_thumbprint: String,
    /// `User` or `System`.
    pub client_scope: String,
    /// CN values of the client certificate subject.
    pub client_cns: Vec<String>,
    store: String,
}

/// Checks version, thumbprints, key binding, issuer signature, EKU and the key container:
/// what an enrollment and a renewal document have in common.
pub fn verify_certs(
    doc: &ProvisioningDoc,
    key: &RsaPrivateKey,
) -> Result<VerifiedCerts, ClientError> {
    if doc.version != "1.1" {
        return Err(bad(format!(
            "wap-provisioningdoc version is {:?}, expected 1.1",
            doc.version
        )));
    }
    if doc.root_certs.is_empty() {
        return Err(ClientError::missing(
            STEP,
            "CertificateStore/Root/System/<thumbprint>/EncodedCertificate",
        ));
    }
    let mut roots = Vec::new();
    for r in &doc.root_certs {
        roots.push(decode_cert(r)?);
    }
    let client_entry = match doc.client_certs.as_slice() {
        [one] => one,
        [] => {
            return Err(ClientError::missing(
                STEP,
                "CertificateStore/My/User or My/System/<thumbprint>/EncodedCertificate",
            ))
        }
        _ => {
            return Err(bad(
                "more than one client certificate in CertificateStore/My",
            ))
        }
    };
    let client_der = decode_cert(client_entry)?;
    let (_, client) = X509Certificate::from_der(&client_der)
        .map_err(|e| bad(format!("client certificate: {e}")))?;

    // The certified key must be ours.
    let ours = key.to_public_key();
    match client.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa_pk)) => {
            if strip_zeros(rsa_pk.modulus) != ours.n().to_bytes_be().as_slice()
                || strip_zeros(rsa_pk.exponent) != ours.e().to_bytes_be().as_slice()
            {
                return Err(bad(
                    "client certificate public key is not the key the device generated",
                ));
            }
        }
        _ => return Err(bad("client certificate does not carry an RSA public key")),
    }
    // Issued by one of the provisioned roots.
    let issuer_idx = roots
        .iter()
        .position(|r| {
            X509Certificate::from_der(r)
                .map(|(_, rc)| client.verify_signature(Some(rc.public_key())).is_ok())
                .unwrap_or(false)
        })
        .ok_or_else(|| {
            bad("client certificate is not signed by the provisioned root certificate")
        })?;
    match client.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth => {}
        Ok(_) => {
            return Err(bad(
                "client certificate lacks the clientAuth extended key usage",
            ))
        }
        Err(e) => return Err(bad(format!("client certificate EKU: {e}"))),
    }
    if !client_entry.private_key_container {
        return Err(ClientError::missing(
            STEP,
            format!(
                "CertificateStore/{}/PrivateKeyContainer",
                client_entry.store
            ),
        ));
    }
    let client_cns: Vec<String> = client
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let root_der = roots.swap_remove(issuer_idx);
    Ok(VerifiedCerts {
        root_thumbprint: thumbprint(&root_der),
        root_der,
        client_thumbprint: client_entry.thumbprint.clone(),
        client_der,
        client_scope: client_entry.store.trim_start_matches("My/").to_string(),
        client_cns,
        store: client_entry.store.clone(),
    })
}

fn check_criteria(c: &VerifiedCerts, criteria: &CertSearchCriteria) -> Result<(), ClientError> {
    if !criteria.matches_store(&c.store) {
        return Err(bad(format!(
            "SSLCLIENTCERTSEARCHCRITERIA store {:?} does not name {}",
            criteria.stores, c.store
        )));
    }
    for want in criteria.common_names() {
        if !c.client_cns.contains(&want) {
            return Err(bad(format!(
                "SSLCLIENTCERTSEARCHCRITERIA subject CN {want:?} does not match the client certificate (CN {:?})",
                c.client_cns
            )));
        }
    }
    Ok(())
}

/// Verifies the document: thumbprints, key binding, issuer signature, EKU, w7 application
/// and DMClient provider consistency.
pub fn verify(doc: &ProvisioningDoc, key: &RsaPrivateKey) -> Result<Verified, ClientError> {
    let c = verify_certs(doc, key)?;
    let app = doc
        .application
        .as_ref()
        .ok_or_else(|| ClientError::missing(STEP, "APPLICATION characteristic"))?;
    let app_get = |n: &str| {
        app.get(n)
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .ok_or_else(|| ClientError::missing(STEP, format!("APPLICATION/{n}")))
    };
    let appid = app_get("APPID")?;
    if appid != "w7" {
        return Err(bad(format!("APPLICATION APPID is {appid:?}, expected w7")));
    }
    let provider_id = app_get("PROVIDER-ID")?;
    let addr = app_get("ADDR")?;
    if !addr.to_ascii_lowercase().starts_with("https://") {
        return Err(bad(format!(
            "APPLICATION ADDR is not an https URL: {addr:?}"
        )));
    }
    let criteria = CertSearchCriteria::parse(&app_get("SSLCLIENTCERTSEARCHCRITERIA")?);
    check_criteria(&c, &criteria)?;
    // The DMClient provider node must name the same provider as the w7 application.
    match doc.dmclient.first() {
        None => {
            return Err(ClientError::missing(
                STEP,
                format!("DMClient/Provider/{provider_id}"),
            ))
        }
        Some(first) if !doc.dmclient.iter().any(|p| p.provider_id == provider_id) => {
            return Err(bad(format!(
                "DMClient/Provider/{} does not match APPLICATION PROVIDER-ID {provider_id:?}",
                first.provider_id
            )))
        }
        Some(_) => {}
    }
    Ok(Verified {
        root_der: c.root_der,
        root_thumbprint: c.root_thumbprint,
        client_der: c.client_der,
        client_thumbprint: c.client_thumbprint,
        client_scope: c.client_scope,
        provider_id,
        addr,
        criteria,
    })
}

/// Verifies a renewal document (certificate renewal for Windows MDM): the certificate
/// checks of an enrollment, `APPLICATION/PROVIDER-ID` naming the enrolled provider, and
/// the new certificate still matching the enrollment's SSLCLIENTCERTSEARCHCRITERIA.
pub fn verify_renewal(
    doc: &ProvisioningDoc,
    key: &RsaPrivateKey,
    provider_id: &str,
    criteria: &CertSearchCriteria,
) -> Result<VerifiedCerts, ClientError> {
    let c = verify_certs(doc, key)?;
    let got = doc
        .application
        .as_ref()
        .and_then(|a| a.get("PROVIDER-ID"))
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ClientError::missing(STEP, "APPLICATION/PROVIDER-ID"))?;
    if got != provider_id {
        return Err(bad(format!(
            "APPLICATION PROVIDER-ID is {got:?}, the device is enrolled with {provider_id:?}"
        )));
    }
    check_criteria(&c, criteria)?;
    Ok(c)
}
