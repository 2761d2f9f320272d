//! MS-WSTEP RequestSecurityToken: verify the CSR, sign the device certificate with the
//! identity CA, record the enrollment and return the provisioning document.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use time::format_description::well_known::Rfc3339;

use axum::Extension;

use crate::app::{AppState, PeerCertificate};
use crate::db::NewEnrollment;
use crate::enroll_store::{EnrollClaim, EnrollConflict};
use crate::soap::{self, Fault, FaultSubcode, NS_AC, NS_WSSE, NS_WSTEP, NS_WSTRUST};

/// Hosts of enrollment users (`--enroll-user`) are keyed `user:<name>` in place of a
/// hardware UUID; Orbit enroll refuses that prefix.
pub const USER_HOST_PREFIX: &str = "user:";

pub const ACTION_RST: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
pub const ACTION_RSTRC: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep";
pub const TOKEN_TYPE: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken";
pub const REQUEST_TYPE_ISSUE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
pub const REQUEST_TYPE_RENEW: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew";
pub const VALUE_TYPE_PKCS10: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
pub const VALUE_TYPE_PROVISION_DOC: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc";

/// The parts of a RequestSecurityToken the server uses.
#[derive(Debug)]
pub struct RstRequest {
    pub request_type: String,
    /// ValueType of the request token: PKCS#10, or PKCS#7 for renewals.
    pub token_value_type: String,
    /// The decoded request token: a DER PKCS#10, or a CMS SignedData wrapping one.
    pub csr_der: Vec<u8>,
    /// AdditionalContext items; repeated names (MAC) keep every value.
    pub context: BTreeMap<String, Vec<String>>,
}

impl RstRequest {
    /// First value of a context item, if present and non-empty.
    pub fn context(&self, name: &str) -> Option<&str> {
        self.context
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Parses `wst:RequestSecurityToken` (MS-WSTEP §3.1.4.1.2; children in any order).
pub fn parse_rst(body: roxmltree::Node<'_, '_>) -> Result<RstRequest, String> {
    if body.tag_name().name() != "RequestSecurityToken"
        || body.tag_name().namespace() != Some(NS_WSTRUST)
    {
        return Err("body is not a wst:RequestSecurityToken".into());
    }
    let token_type = soap::child(body, NS_WSTRUST, "TokenType")
        .map(soap::text)
        .ok_or("missing wst:TokenType")?;
    if token_type != TOKEN_TYPE {
        return Err(format!("unsupported TokenType {token_type:?}"));
    }
    let request_type = soap::child(body, NS_WSTRUST, "RequestType")
        .map(soap::text)
        .ok_or("missing wst:RequestType")?;
    let bst = soap::child(body, NS_WSSE, "BinarySecurityToken")
        .ok_or("missing wsse:BinarySecurityToken (the CSR)")?;
    let value_type = soap::attr_local(bst, "ValueType").unwrap_or("").trim();
    if value_type != VALUE_TYPE_PKCS10 && !value_type.ends_with("#PKCS7") {
        return Err(format!(
            "unsupported BinarySecurityToken ValueType {value_type:?}; expected PKCS#10 or PKCS#7"
        ));
    }
    let b64: String = soap::text(bst).split_whitespace().collect();
    let csr_der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| "the PKCS#10 BinarySecurityToken is not valid base64".to_string())?;
    let mut context: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(ac) = soap::child(body, NS_AC, "AdditionalContext") {
        for item in ac
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "ContextItem")
        {
            let Some(name) = item.attribute("Name") else {
                continue;
            };
            let value = soap::child_local(item, "Value")
                .map(soap::text)
                .unwrap_or_default();
            context.entry(name.to_string()).or_default().push(value);
        }
    }
    Ok(RstRequest {
        request_type,
        token_value_type: value_type.to_string(),
        csr_der,
        context,
    })
}

/// A DeviceID as Windows sends it: hex digits and dashes (32 hex chars, or a GUID in
/// older builds and Microsoft's samples).
fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '{' || c == '}')
}

/// The fault for a request the one-device rules refuse (MS-MDE2 §2.2.9 subcodes).
fn conflict_fault(conflict: EnrollConflict, mid: Option<&str>) -> Response {
    match conflict {
        EnrollConflict::DeviceCapReached => Fault::new(
            FaultSubcode::Authorization,
            "this enrollment token has already enrolled another device",
        )
        .with_error_type("DeviceCapReached"),
        // MS-MDE2 §2.2.10: s:Authorization is MENROLL_E_DEVICE_AUTHORIZATION_ERROR
        // (0x80180003, "User not allowed to enroll"), the spec's own example fault, sent
        // without a detail. No detail ErrorType fits: DeviceCapReached tells the user to
        // remove old devices, CustomServerError only exists on recent builds.
        EnrollConflict::DeviceHeldByOtherHost => Fault::new(
            FaultSubcode::Authorization,
            "this DeviceID is enrolled by another host or account; it must be unenrolled or released by an administrator first",
        ),
        EnrollConflict::KeyHeldByOtherDevice => Fault::new(
            FaultSubcode::CertificateRequest,
            "the CSR's public key is already certified for another device",
        )
        .with_error_type("InvalidEnrollmentData"),
    }
    .relating_to(mid)
    .into_response()
}

/// `POST /api/mdm/microsoft/enroll`: RequestType Issue (enrollment) or Renew.
pub async fn request_security_token(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<PeerCertificate>,
    body: String,
) -> Response {
    let doc = match soap::parse_xml(&body) {
        Ok(d) => d,
        Err(e) => return Fault::new(FaultSubcode::MessageFormat, e).into_response(),
    };
    let req = match soap::parse_request(&doc, ACTION_RST) {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let mid = req.message_id.as_deref();
    let rst = match parse_rst(req.body) {
        Ok(r) => r,
        Err(e) => {
            return Fault::new(FaultSubcode::MessageFormat, e)
                .with_error_type("InvalidEnrollmentData")
                .relating_to(mid)
                .into_response()
        }
    };
    if rst.request_type == REQUEST_TYPE_RENEW {
        return match renew(&state, peer.0.as_deref().map(Vec::as_slice), &rst, mid).await {
            Ok(r) => r,
            Err(f) => f.into_response(),
        };
    }
    let host = match state.authenticate_token(&req).await {
        Ok(h) => h,
        Err(f) => return f.into_response(),
    };
    if rst.token_value_type != VALUE_TYPE_PKCS10 {
        return Fault::new(
            FaultSubcode::MessageFormat,
            "an Issue request carries a PKCS#10 token",
        )
        .with_error_type("InvalidEnrollmentData")
        .relating_to(mid)
        .into_response();
    }
    if rst.request_type != REQUEST_TYPE_ISSUE {
        return Fault::new(
            FaultSubcode::MessageFormat,
            format!(
                "RequestType {:?} is not supported by this server",
                rst.request_type
            ),
        )
        .with_error_type("NotSupported")
        .relating_to(mid)
        .into_response();
    }
    let Some(device_id) = rst.context("DeviceID").map(str::to_string) else {
        return Fault::new(
            FaultSubcode::MessageFormat,
            "AdditionalContext lacks the DeviceID item",
        )
        .with_error_type("InvalidEnrollmentData")
        .relating_to(mid)
        .into_response();
    };
    if !valid_device_id(&device_id) {
        return Fault::new(
            FaultSubcode::MessageFormat,
            "DeviceID is not a hexadecimal device identifier",
        )
        .with_error_type("InvalidEnrollmentData")
        .relating_to(mid)
        .into_response();
    }
    let csr = match crate::csr::parse_and_verify(&rst.csr_der, crate::policy::MINIMAL_KEY_LENGTH) {
        Ok(c) => c,
        Err(e) => {
            return Fault::new(FaultSubcode::CertificateRequest, e.to_string())
                .with_error_type("InvalidEnrollmentData")
                .relating_to(mid)
                .into_response()
        }
    };
    // One enrollment token, one device (enrollment users may have several); an enrolled
    // DeviceID stays with its host (same hardware UUID) until unenrolled or released; one
    // key pair, one device. Checked before signing, and again when the enrollment is recorded.
    let claim = EnrollClaim {
        host_uuid: Some(host.host_uuid.clone()),
        hardware_uuid: host.hardware_uuid.clone(),
        device_id: device_id.clone(),
        public_key_sha256: csr.key_fingerprint(),
        multi_device: host.hardware_uuid.starts_with(USER_HOST_PREFIX),
    };
    match state.store.enrollment_conflict(&claim).await {
        Ok(None) => {}
        Ok(Some(conflict)) => return conflict_fault(conflict, mid),
        Err(e) => {
            tracing::error!(error = %e, "enroll: storage failure");
            return Fault::new(FaultSubcode::EnrollmentServer, "storage failure")
                .relating_to(mid)
                .into_response();
        }
    }
    let issued = match state.ca.issue(
        &device_id,
        &csr.rsa_public_key,
        state.config.cert_validity_days,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "certificate signing failed");
            return Fault::new(FaultSubcode::EnrollmentServer, "certificate signing failed")
                .relating_to(mid)
                .into_response();
        }
    };
    let client_store = if rst.context("EnrollmentType") == Some("Device") {
        "System"
    } else {
        "User"
    };
    let device_name = rst.context("DeviceName").unwrap_or("").to_string();
    let upn = host_upn(&rst);
    let record = NewEnrollment {
        device_id: device_id.clone(),
        host_uuid: Some(host.host_uuid.clone()),
        hardware_uuid: host.hardware_uuid.clone(),
        device_name: device_name.clone(),
        os_version: rst.context("OSVersion").unwrap_or("").to_string(),
        enrollment_type: rst.context("EnrollmentType").unwrap_or("").to_string(),
        upn: upn.clone(),
        cert_serial: issued.serial.clone(),
        cert_thumbprint: issued.thumbprint.clone(),
        cert_not_after: issued.not_after.format(&Rfc3339).unwrap_or_default(),
        public_key_sha256: csr.key_fingerprint(),
    };
    match state.store.record_enrollment(record, claim).await {
        Ok(None) => {}
        Ok(Some(conflict)) => return conflict_fault(conflict, mid),
        Err(e) => {
            tracing::error!(error = %e, "could not record enrollment");
            return Fault::new(
                FaultSubcode::EnrollmentServer,
                "could not record the enrollment",
            )
            .relating_to(mid)
            .into_response();
        }
    }
    tracing::info!(%device_id, serial = %issued.serial, csr_hash = csr.signature_hash, "device enrolled");
    let management_url = state.url(crate::app::MANAGEMENT_PATH);
    let root_thumbprint = state.ca.thumbprint();
    let prov = crate::provisioning::build(&crate::provisioning::ProvisioningInput {
        provider_id: &state.config.provider_id,
        management_url: &management_url,
        root_cert_der: state.ca.cert_der(),
        root_thumbprint: &root_thumbprint,
        client_cert_der: &issued.der,
        client_thumbprint: &issued.thumbprint,
        client_subject_cn: &device_id,
        client_store,
        renewal_period_days: state.config.renewal_period_days,
        device_id: &device_id,
        device_name: &device_name,
        upn: &upn,
    });
    soap::soap_response(StatusCode::OK, rstrc(mid, &prov))
}

/// Handles a renewal (see [`crate::renew`]); returns the RSTRC with the new certificate.
async fn renew(
    state: &AppState,
    presented: Option<&[u8]>,
    rst: &RstRequest,
    mid: Option<&str>,
) -> Result<Response, Fault> {
    let fault = |sub: FaultSubcode, reason: String| Fault::new(sub, reason).relating_to(mid);
    let not_eligible = |reason: &str| {
        Fault::new(FaultSubcode::Authorization, reason)
            .with_error_type("NotEligibleToRenew")
            .relating_to(mid)
    };
    let signed = if rst.token_value_type.ends_with("#PKCS7") {
        Some(
            crate::renew::parse_signed_data(&rst.csr_der)
                .map_err(|e| fault(FaultSubcode::MessageFormat, format!("renewal PKCS#7: {e}")))?,
        )
    } else {
        None
    };
    let carried = signed
        .as_ref()
        .and_then(|s| s.certificates.first())
        .map(Vec::as_slice);
    let cert = match (presented, carried) {
        (Some(p), Some(c)) if p != c => {
            return Err(fault(
                FaultSubcode::Authentication,
                "the PKCS#7 signer is not the TLS client certificate".into(),
            ))
        }
        (Some(p), _) => p,
        (None, Some(c)) => c,
        (None, None) => {
            return Err(fault(
                FaultSubcode::Authentication,
                "a renewal must be authenticated by the device's current certificate".into(),
            ))
        }
    };
    let (serial, _) = state
        .ca
        .verify_issued(cert)
        .map_err(|e| fault(FaultSubcode::Authentication, e.to_string()))?;
    let enrollment = match state.store.enrollment_by_cert_serial(&serial).await {
        Ok(Some((e, true))) if e.state == "enrolled" => e,
        Ok(_) => {
            return Err(not_eligible(
                "the certificate does not belong to an active enrollment",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "renewal: storage failure");
            return Err(fault(
                FaultSubcode::EnrollmentServer,
                "storage failure".into(),
            ));
        }
    };
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
    let csr = crate::csr::parse_and_verify(&csr_der, crate::policy::MINIMAL_KEY_LENGTH)
        .map_err(|e| fault(FaultSubcode::CertificateRequest, e.to_string()))?;
    let device_id = enrollment.device_id.clone();
    // One key pair, one device, as at enrollment: checked before signing and again
    // where the renewal is recorded.
    let claim = EnrollClaim {
        host_uuid: None,
        hardware_uuid: enrollment.hardware_uuid.clone(),
        device_id: device_id.clone(),
        public_key_sha256: csr.key_fingerprint(),
        multi_device: true,
    };
    let storage = |e: crate::error::ServerError| {
        tracing::error!(error = %e, "renewal: storage failure");
        fault(FaultSubcode::EnrollmentServer, "storage failure".into())
    };
    if let Some(conflict) = state
        .store
        .enrollment_conflict(&claim)
        .await
        .map_err(storage)?
    {
        return Ok(conflict_fault(conflict, mid));
    }
    let issued = state
        .ca
        .issue(
            &device_id,
            &csr.rsa_public_key,
            state.config.cert_validity_days,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "renewal: signing failed");
            fault(
                FaultSubcode::EnrollmentServer,
                "certificate signing failed".into(),
            )
        })?;
    let recorded = state
        .store
        .renew_certificate(
            &claim,
            &issued.serial,
            &issued.thumbprint,
            &issued.not_after.format(&Rfc3339).unwrap_or_default(),
            i64::from(state.config.renewal_grace_secs),
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
        return Ok(conflict_fault(conflict, mid));
    }
    tracing::info!(%device_id, serial = %issued.serial, "certificate renewed");
    let client_store = if enrollment.enrollment_type == "Device" {
        "System"
    } else {
        "User"
    };
    let root_thumbprint = state.ca.thumbprint();
    let doc = crate::provisioning::build_renewal(&crate::provisioning::RenewalInput {
        provider_id: &state.config.provider_id,
        root_cert_der: state.ca.cert_der(),
        root_thumbprint: &root_thumbprint,
        client_cert_der: &issued.der,
        client_thumbprint: &issued.thumbprint,
        client_store,
        renewal_period_days: state.config.renewal_period_days,
    });
    Ok(soap::soap_response(StatusCode::OK, rstrc(mid, &doc)))
}

/// The UPN the device enrolled with, when it sent one; else empty.
fn host_upn(rst: &RstRequest) -> String {
    rst.context("UPN").unwrap_or("").to_string()
}

/// The RequestSecurityTokenResponseCollection envelope (MS-WSTEP §3.1.4.1.2.2).
fn rstrc(relates_to: Option<&str>, provisioning_doc: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    let created = now.format(&Rfc3339).unwrap_or_default();
    let expires = (now + time::Duration::minutes(5))
        .format(&Rfc3339)
        .unwrap_or_default();
    let security = format!(
        "<o:Security s:mustUnderstand=\"1\" xmlns:o=\"{NS_WSSE}\"><u:Timestamp u:Id=\"_0\"><u:Created>{created}</u:Created><u:Expires>{expires}</u:Expires></u:Timestamp></o:Security>"
    );
    let token = base64::engine::general_purpose::STANDARD.encode(provisioning_doc.as_bytes());
    let body = format!(
        "<RequestSecurityTokenResponseCollection xmlns=\"{NS_WSTRUST}\"><RequestSecurityTokenResponse><TokenType>{TOKEN_TYPE}</TokenType><DispositionMessage xmlns=\"{NS_WSTEP}\"></DispositionMessage><RequestedSecurityToken><BinarySecurityToken ValueType=\"{VALUE_TYPE_PROVISION_DOC}\" EncodingType=\"{NS_WSSE}#base64binary\" xmlns=\"{NS_WSSE}\">{token}</BinarySecurityToken></RequestedSecurityToken><RequestID xmlns=\"{NS_WSTEP}\">0</RequestID></RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection>"
    );
    soap::envelope(ACTION_RSTRC, relates_to, &security, &body)
}
