//! MS-WSTEP RequestSecurityToken over the store and the identity CA: Issue (verify the
//! CSR, sign the device certificate, record the enrollment, build the provisioning
//! document) and Renew (see [`crate::cms`]). The decisions are
//! [`crate::protocol::enrollment`]; the answer is the RSTRC envelope or a fault.

use crate::ca::IssuedCert;
use crate::csr::Csr;
use crate::error::ServerError;
use crate::model::{EnrollClaim, RenewedCert, SignedCert};
use crate::paths::MANAGEMENT_PATH;
use time::format_description::well_known::Rfc3339;

use crate::protocol::enrollment as decide;
use crate::soap::{Fault, FaultSubcode, Request};
use crate::state::AppState;
use crate::wstep::{rstrc, RstRequest};

/// A storage failure, logged, as the fault Windows gets.
fn storage_fault<'m>(
    what: &'static str,
    mid: Option<&'m str>,
) -> impl Fn(ServerError) -> Fault + 'm {
    move |e| {
        tracing::error!(error = %e, "{what}: storage failure");
        Fault::new(FaultSubcode::EnrollmentServer, "storage failure").relating_to(mid)
    }
}

/// What Issue and Renew share: `claim` checked against the one-device rules on record,
/// then the device's certificate signed. The rules are checked again in the
/// transaction that records the result.
async fn check_and_sign(
    state: &AppState,
    claim: &EnrollClaim,
    device_id: &str,
    csr: &Csr,
    mid: Option<&str>,
    what: &'static str,
) -> Result<IssuedCert, Fault> {
    if let Some(conflict) = state
        .store
        .enrollment_conflict(claim)
        .await
        .map_err(storage_fault(what, mid))?
    {
        return Err(decide::conflict_fault(conflict, mid));
    }
    state
        .ca
        .issue(
            device_id,
            &csr.rsa_public_key,
            state.config.cert_validity_days,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "{what}: certificate signing failed");
            Fault::new(FaultSubcode::EnrollmentServer, "certificate signing failed")
                .relating_to(mid)
        })
}

/// An Issue request: the RSTRC carrying the provisioning document.
pub async fn issue(
    state: &AppState,
    req: &Request<'_, '_>,
    rst: &RstRequest,
) -> Result<String, Fault> {
    let mid = req.message_id.as_deref();
    let host = state.authenticate_token(req).await?;
    let device_id = decide::check_issue(rst, mid)?;
    let csr = decide::verified_csr(&rst.csr_der, mid)?;
    // Checked before signing, and again when the enrollment is recorded.
    let claim = decide::issue_claim(&host, &device_id, &csr);
    let issued = check_and_sign(state, &claim, &device_id, &csr, mid, "enroll").await?;
    let not_after = issued.not_after.format(&Rfc3339).unwrap_or_default();
    let signed = SignedCert {
        serial: &issued.serial,
        thumbprint: &issued.thumbprint,
        not_after: &not_after,
    };
    crate::crash::point("enroll.after_sign");
    let record = decide::new_enrollment(rst, &host, &device_id, signed, &csr);
    let (device_name, upn) = (record.device_name.clone(), record.upn.clone());
    match state.store.record_enrollment(record, claim).await {
        Ok(None) => {}
        Ok(Some(conflict)) => return Err(decide::conflict_fault(conflict, mid)),
        Err(e) => {
            tracing::error!(error = %e, "could not record enrollment");
            return Err(Fault::new(
                FaultSubcode::EnrollmentServer,
                "could not record the enrollment",
            )
            .relating_to(mid));
        }
    }
    tracing::info!(%device_id, serial = %issued.serial, csr_hash = csr.signature_hash, "device enrolled");
    let digest = if state.config.management_auth.digest_enabled() {
        Some(
            crate::service::digest::provision(&state.store, &device_id)
                .await
                .map_err(storage_fault("digest credentials", mid))?,
        )
    } else {
        None
    };
    let client_secret = hex::encode(rand::random::<[u8; 24]>());
    let management_url = state.url(MANAGEMENT_PATH);
    let root_thumbprint = state.ca.thumbprint();
    let prov = crate::provisioning::build(&crate::provisioning::ProvisioningInput {
        provider_id: &state.config.provider_id,
        management_url: &management_url,
        root_cert_base64: state.ca.cert_base64(),
        root_thumbprint,
        client_cert_der: &issued.der,
        client_thumbprint: &issued.thumbprint,
        client_subject_cn: &device_id,
        client_store: decide::client_store(rst.context("EnrollmentType")),
        renewal_period_days: state.config.renewal_period_days,
        device_id: &device_id,
        device_name: &device_name,
        upn: &upn,
        digest: digest
            .as_ref()
            .map(|d| crate::provisioning::DigestCredentials {
                name: &device_id,
                secret: &d.secret,
                nonce: &d.nonce,
                client_secret: &client_secret,
            }),
    });
    Ok(rstrc(mid, &prov))
}

/// A renewal (see [`crate::cms`]): the RSTRC with the new certificate.
pub async fn renew(
    state: &AppState,
    presented: Option<&[u8]>,
    rst: &RstRequest,
    mid: Option<&str>,
) -> Result<String, Fault> {
    let fault = |sub: FaultSubcode, reason: String| Fault::new(sub, reason).relating_to(mid);
    let signed = if rst.token_value_type.ends_with("#PKCS7") {
        Some(
            crate::cms::parse_signed_data(&rst.csr_der)
                .map_err(|e| fault(FaultSubcode::MessageFormat, format!("renewal PKCS#7: {e}")))?,
        )
    } else {
        None
    };
    let carried = signed
        .as_ref()
        .and_then(|s| s.certificates.first())
        .map(Vec::as_slice);
    let cert = decide::renewal_signer(presented, carried, mid)?;
    let signer = state
        .ca
        .verify_issued(cert)
        .map_err(|e| fault(FaultSubcode::Authentication, e.to_string()))?;
    let found = state
        .store
        .enrollment_by_cert_serial(&signer.serial)
        .await
        .map_err(storage_fault("renewal", mid))?;
    let enrollment = decide::renewable(found, mid)?;
    let csr_der = match &signed {
        Some(sd) => {
            sd.verify_with(cert).map_err(|e| {
                fault(
                    FaultSubcode::Authentication,
                    format!("renewal PKCS#7 signature: {e}"),
                )
            })?;
            sd.content.clone()
        }
        None => rst.csr_der.clone(),
    };
    let csr = crate::csr::parse_and_verify(&csr_der, crate::xcep::MINIMAL_KEY_LENGTH)
        .map_err(|e| fault(FaultSubcode::CertificateRequest, e.to_string()))?;
    let device_id = enrollment.device_id.clone();
    // One key pair, one device, as at enrollment: checked before signing and again
    // where the renewal is recorded.
    let claim = decide::renewal_claim(&enrollment, &csr);
    let issued = check_and_sign(state, &claim, &device_id, &csr, mid, "renewal").await?;
    let not_after = issued.not_after.format(&Rfc3339).unwrap_or_default();
    crate::crash::point("renew.after_sign");
    let recorded = state
        .store
        .renew_certificate(
            &claim,
            RenewedCert {
                serial: &issued.serial,
                thumbprint: &issued.thumbprint,
                not_after: &not_after,
                grace_secs: i64::from(state.config.renewal_grace_secs),
            },
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "renewal: storage failure");
            fault(
                FaultSubcode::EnrollmentServer,
                "could not record the renewal".into(),
            )
        })?;
    if let Some(conflict) = recorded {
        return Err(decide::conflict_fault(conflict, mid));
    }
    tracing::info!(%device_id, serial = %issued.serial, "certificate renewed");
    let root_thumbprint = state.ca.thumbprint();
    let doc = crate::provisioning::build_renewal(&crate::provisioning::RenewalInput {
        provider_id: &state.config.provider_id,
        root_cert_base64: state.ca.cert_base64(),
        root_thumbprint,
        client_cert_der: &issued.der,
        client_thumbprint: &issued.thumbprint,
        client_store: decide::client_store(Some(enrollment.enrollment_type.as_str())),
        renewal_period_days: state.config.renewal_period_days,
    });
    Ok(rstrc(mid, &doc))
}
