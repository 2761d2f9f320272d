//! Strict checks of a provisioning document against the device's key ([MS-MDE2] §3.3.4.2).

use crate::error::ClientError;
use crate::provisioning::{CertSearchCriteria, ProvisionedCert, ProvisioningDoc};
use crate::warning::{warn, Warning};
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
    /// Tolerated deviations found in the document.
    pub warnings: Vec<Warning>,
}

fn bad(what: impl Into<String>) -> ClientError {
    ClientError::invalid(STEP, what)
}

/// provisioning.cert_encoding (fail): `EncodedCertificate` is a base64 X.509 certificate
/// (CertificateStore CSP, Root/System/CertHash/EncodedCertificate); nothing else can be
/// installed. provisioning.cert_thumbprint (fail): the characteristic naming it is its
/// SHA-1 hash (CertificateStore CSP "CertHash"); Windows records the certificate under
/// that name (DMPCertThumbPrint, SslClientCertReference), so a wrong name leaves the
/// enrollment pointing at a certificate that is not there.
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

/// Whether the certificate `der` certifies the public half of `key`.
fn certifies(der: &[u8], key: &RsaPrivateKey) -> Result<bool, ClientError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| bad(format!("certificate: {e}")))?;
    let ours = key.to_public_key();
    Ok(match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa_pk)) => {
            strip_zeros(rsa_pk.modulus) == ours.n().to_bytes_be().as_slice()
                && strip_zeros(rsa_pk.exponent) == ours.e().to_bytes_be().as_slice()
        }
        _ => false,
    })
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
    /// Tolerated deviations found in the document.
    pub warnings: Vec<Warning>,
}

/// Checks version, thumbprints, key binding, issuer signature, EKU and the key container:
/// what an enrollment and a renewal document have in common. Without a root certificate
/// `root_der` is empty; without one that signed the client certificate it is the first.
pub fn verify_certs(
    doc: &ProvisioningDoc,
    key: &RsaPrivateKey,
) -> Result<VerifiedCerts, ClientError> {
    let mut warnings = Vec::new();
    // provisioning.version (warn): every Microsoft sample says version="1.1" ([MS-MDE2]
    // §4 examples, "enrollment web service" samples); no document says Windows refuses
    // another value.
    if doc.version != "1.1" {
        warn(
            &mut warnings,
            "provisioning.version",
            format!(
                "wap-provisioningdoc version is {:?}, expected 1.1",
                doc.version
            ),
        );
    }
    let mut roots = Vec::new();
    for r in &doc.root_certs {
        roots.push(decode_cert(r)?);
    }
    // provisioning.root_cert_missing (warn): Microsoft's renewal sample says "Root
    // certificate provision is only needed here if it is not in the device already"
    // (certificate renewal for Windows MDM); the client certificate is usable without it.
    if roots.is_empty() {
        warn(
            &mut warnings,
            "provisioning.root_cert_missing",
            "no CertificateStore/Root/System/<thumbprint>/EncodedCertificate",
        );
    }
    // provisioning.client_cert_count (fail): "The provisioning XML contains: the requested
    // certificates (required)" (Mobile device enrollment, enrollment web service); with no
    // certificate for the device's key there is no identity for OMA-DM, with several the
    // identity is ambiguous. CertificateStore/My/User may also hold "one intermediate CA
    // certificate that is needed to chain up the MDM client certificate" (same page).
    if doc.client_certs.is_empty() {
        return Err(ClientError::missing(
            STEP,
            "CertificateStore/My/User or My/System/<thumbprint>/EncodedCertificate",
        ));
    }
    let mut mine = Vec::new();
    let mut others = Vec::new();
    for entry in &doc.client_certs {
        let der = decode_cert(entry)?;
        if certifies(&der, key)? {
            mine.push((entry, der));
        } else {
            others.push(der);
        }
    }
    // provisioning.client_key (fail): the certificate must certify the key the device
    // generated for its PKCS#10 ([MS-WSTEP] §3.1.4.1); the device holds no other private
    // key, so it could not use any other certificate for TLS.
    let (client_entry, client_der) = match mine.len() {
        1 => mine.swap_remove(0),
        0 => {
            return Err(bad(
                "client certificate public key is not the key the device generated",
            ))
        }
        n => {
            return Err(bad(format!(
                "{n} certificates in CertificateStore/My certify the device's key"
            )))
        }
    };
    // provisioning.intermediate_count (warn): "a maximum of one root certificate and one
    // intermediate CA certificate" (Mobile device enrollment); more can come later over
    // OMA-DM, and the client certificate does not depend on them.
    if others.len() > 1 {
        warn(
            &mut warnings,
            "provisioning.intermediate_count",
            format!(
                "{} certificates besides the client certificate in CertificateStore/My",
                others.len()
            ),
        );
    }
    let (_, client) = X509Certificate::from_der(&client_der)
        .map_err(|e| bad(format!("client certificate: {e}")))?;
    // provisioning.client_issuer (warn): the device presents its certificate in TLS and
    // the server validates the chain (RFC 8446 §4.4.2.4); Windows does not need the issuer
    // in the document (see provisioning.root_cert_missing).
    let signed_by = |issuer: &[u8], subject: &X509Certificate| {
        X509Certificate::from_der(issuer)
            .map(|(_, ic)| subject.verify_signature(Some(ic.public_key())).is_ok())
            .unwrap_or(false)
    };
    let intermediate = others.iter().find(|i| signed_by(i, &client));
    let issuer_idx = match intermediate {
        None => roots.iter().position(|r| signed_by(r, &client)),
        Some(i) => X509Certificate::from_der(i)
            .ok()
            .and_then(|(_, ic)| roots.iter().position(|r| signed_by(r, &ic))),
    };
    if issuer_idx.is_none() && !roots.is_empty() {
        warn(
            &mut warnings,
            "provisioning.client_issuer",
            "client certificate does not chain to the provisioned root certificate",
        );
    }
    // provisioning.client_eku (warn): the server decides whether it accepts a client
    // certificate without clientAuth (RFC 5280 §4.2.1.12 binds the relying party, here the
    // server); the device still presents the certificate it was given.
    match client.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth => {}
        Ok(_) => warn(
            &mut warnings,
            "provisioning.client_eku",
            "client certificate lacks the clientAuth extended key usage",
        ),
        Err(e) => warn(
            &mut warnings,
            "provisioning.client_eku",
            format!("client certificate EKU: {e}"),
        ),
    }
    // provisioning.private_key_container (fail): "The PrivateKeyContainer characteristic
    // is required and must be present in the Enrollment provisioning XML" (Mobile device
    // enrollment, enrollment web service notes).
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
    let root_der = if roots.is_empty() {
        Vec::new()
    } else {
        roots.swap_remove(issuer_idx.unwrap_or(0))
    };
    Ok(VerifiedCerts {
        root_thumbprint: if root_der.is_empty() {
            String::new()
        } else {
            thumbprint(&root_der)
        },
        root_der,
        client_thumbprint: client_entry.thumbprint.clone(),
        client_der,
        client_scope: client_entry.store.trim_start_matches("My/").to_string(),
        client_cns,
        store: client_entry.store.clone(),
        warnings,
    })
}

/// provisioning.cert_search_criteria_match (fail): when the criteria are given, Windows
/// looks the client certificate up with them (w7 APPLICATION CSP,
/// SSLCLIENTCERTSEARCHCRITERIA: Subject and Stores); criteria that miss the issued
/// certificate leave the device without a certificate for the OMA-DM session.
fn check_criteria(c: &VerifiedCerts, criteria: &CertSearchCriteria) -> Result<(), ClientError> {
    if !criteria.matches_store(&c.store) {
        return Err(bad(format!(
            "SSLCLIENTCERTSEARCHCRITERIA store {:?} does not name {}",
            criteria.stores, c.store
        )));
    }
    // Names compare without case (RFC 5280 §7.1: caseIgnoreMatch after string preparation).
    for want in criteria.common_names() {
        if !c.client_cns.iter().any(|cn| cn.eq_ignore_ascii_case(&want)) {
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
    let mut c = verify_certs(doc, key)?;
    let mut warnings = std::mem::take(&mut c.warnings);
    // provisioning.application (fail): the w7 APPLICATION characteristic bootstraps the
    // OMA-DM account (w7 APPLICATION CSP); without it there is no management server.
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
    // provisioning.appid (fail): APPID is required and "the only valid value to configure
    // the OMA Client provisioning bootstrap APPID is w7" (w7 APPLICATION CSP).
    let appid = app_get("APPID")?;
    if appid != "w7" {
        return Err(bad(format!("APPLICATION APPID is {appid:?}, expected w7")));
    }
    // provisioning.provider_id (fail): optional in the w7 CSP's table, but the MDM
    // enrollment is keyed by it (DMClient CSP Provider/<ProviderID>: "the bootstrapped
    // device management account's Provider ID"); every published document carries it.
    let provider_id = app_get("PROVIDER-ID")?;
    // provisioning.addr (fail): ADDR is the OMA-DM server; [MS-MDM] §2.1 carries OMA-DM
    // over HTTPS only.
    let addr = app_get("ADDR")?;
    if !addr.to_ascii_lowercase().starts_with("https://") {
        return Err(bad(format!(
            "APPLICATION ADDR is not an https URL: {addr:?}"
        )));
    }
    // provisioning.cert_search_criteria_missing (warn): SSLCLIENTCERTSEARCHCRITERIA is
    // "Optional" in the w7 APPLICATION CSP, and a Windows 10 device (build 19043) enrolled
    // with a document without it and was then managed over OMA-DM (a capture published in
    // fleetdm/fleet). The device then authenticates with the certificate the document
    // installed in My (SslClientCertReference "MY;<scope>;<thumbprint>").
    let raw_criteria = app
        .get("SSLCLIENTCERTSEARCHCRITERIA")
        .map(|v| v.trim())
        .unwrap_or("");
    if raw_criteria.is_empty() {
        warn(
            &mut warnings,
            "provisioning.cert_search_criteria_missing",
            "APPLICATION has no SSLCLIENTCERTSEARCHCRITERIA; the device uses the certificate installed in My",
        );
    }
    let criteria = CertSearchCriteria::parse(raw_criteria);
    check_criteria(&c, &criteria)?;
    // provisioning.dmclient_provider_missing (warn): "an enrollment server should use
    // DMClient CSP XML to configure DM polling schedules" (Mobile device enrollment
    // sample); without it Windows keeps its default schedule.
    // provisioning.dmclient_provider_match (fail): "ProviderID in DMClient CSP must match
    // to PROVIDER-ID in w7 APPLICATION characteristics" (same sample).
    match doc.dmclient.first() {
        None => warn(
            &mut warnings,
            "provisioning.dmclient_provider_missing",
            format!("no DMClient/Provider/{provider_id} characteristic"),
        ),
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
        warnings,
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
    let mut c = verify_certs(doc, key)?;
    // The renewal sample sends the root only "if it is not in the device already".
    c.warnings
        .retain(|w| w.check != "provisioning.root_cert_missing");
    // provisioning.renewal_provider_id (fail): the renewal document names the account it
    // renews (Microsoft's renewal sample: APPLICATION/PROVIDER-ID); another provider's
    // certificate does not belong to this enrollment.
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
