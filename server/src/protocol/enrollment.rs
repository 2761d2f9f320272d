//! The enrollment decisions after parsing (MS-MDE2, MS-WSTEP), without I/O: which
//! Issue and Renew requests go on, what the one-device rules are asked, what a refusal
//! tells Windows, and what an enrollment records.

use crate::csr::Csr;
use crate::model::{
    CertEnrollment, EnrollClaim, EnrollConflict, Enrollment, EnrollmentState, Host, NewEnrollment,
    SignedCert,
};
use crate::soap::{Fault, FaultSubcode};
use crate::wstep::{RstRequest, REQUEST_TYPE_ISSUE, VALUE_TYPE_PKCS10};
use crate::xcep::MINIMAL_KEY_LENGTH;

/// Hosts of enrollment users (`--enroll-user`) are keyed `user:<name>` in place of a
/// hardware UUID; Orbit enroll refuses that prefix.
pub const USER_HOST_PREFIX: &str = "user:";

/// A DeviceID as Windows sends it: hex digits and dashes (32 hex chars, or a GUID in
/// older builds and Microsoft's samples).
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '{' || c == '}')
}

/// Checks an Issue request from an authenticated host; returns its DeviceID.
pub fn check_issue(rst: &RstRequest, mid: Option<&str>) -> Result<String, Fault> {
    let invalid = |reason: &str| {
        Fault::new(FaultSubcode::MessageFormat, reason)
            .with_error_type("InvalidEnrollmentData")
            .relating_to(mid)
    };
    if rst.token_value_type != VALUE_TYPE_PKCS10 {
        return Err(invalid("an Issue request carries a PKCS#10 token"));
    }
    if rst.request_type != REQUEST_TYPE_ISSUE {
        return Err(Fault::new(
            FaultSubcode::MessageFormat,
            format!(
                "RequestType {:?} is not supported by this server",
                rst.request_type
            ),
        )
        .with_error_type("NotSupported")
        .relating_to(mid));
    }
    let Some(device_id) = rst.context("DeviceID") else {
        return Err(invalid("AdditionalContext lacks the DeviceID item"));
    };
    if !valid_device_id(device_id) {
        return Err(invalid("DeviceID is not a hexadecimal device identifier"));
    }
    Ok(device_id.to_string())
}

/// Parses and verifies a CSR against the policy's key size (MS-XCEP minimalKeyLength).
pub fn verified_csr(der: &[u8], mid: Option<&str>) -> Result<Csr, Fault> {
    crate::csr::parse_and_verify(der, MINIMAL_KEY_LENGTH).map_err(|e| {
        Fault::new(FaultSubcode::CertificateRequest, e.to_string())
            .with_error_type("InvalidEnrollmentData")
            .relating_to(mid)
    })
}

/// What the one-device rules check for an Issue request: one enrollment token, one
/// device (enrollment users may have several); an enrolled DeviceID stays with its host
/// (same hardware UUID) until unenrolled or released; one key pair, one device.
pub fn issue_claim(host: &Host, device_id: &str, csr: &Csr) -> EnrollClaim {
    EnrollClaim {
        host_uuid: Some(host.host_uuid.clone()),
        hardware_uuid: host.hardware_uuid.clone(),
        device_id: device_id.to_string(),
        public_key_sha256: csr.key_fingerprint(),
        multi_device: host.hardware_uuid.starts_with(USER_HOST_PREFIX),
    }
}

/// For a renewal only the key rule applies: one key pair, one device.
pub fn renewal_claim(enrollment: &Enrollment, csr: &Csr) -> EnrollClaim {
    EnrollClaim {
        host_uuid: None,
        hardware_uuid: enrollment.hardware_uuid.clone(),
        device_id: enrollment.device_id.clone(),
        public_key_sha256: csr.key_fingerprint(),
        multi_device: true,
    }
}

/// The fault for a request the one-device rules refuse (MS-MDE2 §2.2.9 subcodes).
pub fn conflict_fault(conflict: EnrollConflict, mid: Option<&str>) -> Fault {
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
}

/// The certificate store the device keeps its certificate in (the provisioning
/// document's CertificateStore): `System` for device enrollments, else `User`.
pub fn client_store(enrollment_type: Option<&str>) -> &'static str {
    if enrollment_type == Some("Device") {
        "System"
    } else {
        "User"
    }
}

/// The enrollment an Issue request records once its certificate is signed.
pub fn new_enrollment(
    rst: &RstRequest,
    host: &Host,
    device_id: &str,
    issued: SignedCert<'_>,
    csr: &Csr,
) -> NewEnrollment {
    NewEnrollment {
        device_id: device_id.to_string(),
        host_uuid: Some(host.host_uuid.clone()),
        hardware_uuid: host.hardware_uuid.clone(),
        device_name: rst.context("DeviceName").unwrap_or("").to_string(),
        os_version: rst.context("OSVersion").unwrap_or("").to_string(),
        enrollment_type: rst.context("EnrollmentType").unwrap_or("").to_string(),
        // The UPN the device enrolled with, when it sent one; else empty.
        upn: rst.context("UPN").unwrap_or("").to_string(),
        cert_serial: issued.serial.to_string(),
        cert_thumbprint: issued.thumbprint.to_string(),
        cert_not_after: issued.not_after.to_string(),
        public_key_sha256: csr.key_fingerprint(),
    }
}

/// The certificate that authenticates a renewal: the TLS client certificate, or the
/// one the PKCS#7 carries; when both are there they must be the same.
pub fn renewal_signer<'a>(
    presented: Option<&'a [u8]>,
    carried: Option<&'a [u8]>,
    mid: Option<&str>,
) -> Result<&'a [u8], Fault> {
    let fault = |reason: &str| Fault::new(FaultSubcode::Authentication, reason).relating_to(mid);
    match (presented, carried) {
        (Some(p), Some(c)) if p != c => {
            Err(fault("the PKCS#7 signer is not the TLS client certificate"))
        }
        (Some(p), _) => Ok(p),
        (None, Some(c)) => Ok(c),
        (None, None) => Err(fault(
            "a renewal must be authenticated by the device's current certificate",
        )),
    }
}

/// The enrollment a renewal renews: the signer must be the current certificate of an
/// enrolled device (MS-WSTEP renewal; `NotEligibleToRenew` otherwise).
pub fn renewable(found: Option<CertEnrollment>, mid: Option<&str>) -> Result<Enrollment, Fault> {
    match found {
        Some(CertEnrollment {
            enrollment,
            current: true,
        }) if enrollment.state == EnrollmentState::Enrolled => Ok(enrollment),
        _ => Err(Fault::new(
            FaultSubcode::Authorization,
            "the certificate does not belong to an active enrollment",
        )
        .with_error_type("NotEligibleToRenew")
        .relating_to(mid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rst(value_type: &str, request_type: &str, device_id: Option<&str>) -> RstRequest {
        let mut context = BTreeMap::new();
        if let Some(id) = device_id {
            context.insert("DeviceID".to_string(), vec![id.to_string()]);
        }
        RstRequest {
            request_type: request_type.into(),
            token_value_type: value_type.into(),
            csr_der: Vec::new(),
            context,
        }
    }

    #[test]
    fn issue_requests_need_a_pkcs10_and_a_hex_device_id() {
        let id = "7BA748C8703E4DF2A74A92984117346A";
        assert_eq!(
            check_issue(&rst(VALUE_TYPE_PKCS10, REQUEST_TYPE_ISSUE, Some(id)), None).ok(),
            Some(id.to_string())
        );
        let refused = |r: RstRequest| {
            check_issue(&r, Some("m"))
                .err()
                .map(|f| (f.reason, f.error_type))
        };
        assert_eq!(
            refused(rst(VALUE_TYPE_PKCS10, REQUEST_TYPE_ISSUE, None)).map(|f| f.1),
            Some(Some("InvalidEnrollmentData"))
        );
        assert_eq!(
            refused(rst(VALUE_TYPE_PKCS10, "Validate", Some(id))).map(|f| f.1),
            Some(Some("NotSupported"))
        );
        assert!(refused(rst("x#PKCS7", REQUEST_TYPE_ISSUE, Some(id))).is_some());
        assert!(refused(rst(VALUE_TYPE_PKCS10, REQUEST_TYPE_ISSUE, Some("not-hex!"))).is_some());
        assert!(valid_device_id("{6F9619FF-8B86-D011-B42D-00C04FC964FF}"));
    }

    #[test]
    fn a_renewal_is_signed_by_one_certificate() {
        let (a, b) = (&[1u8][..], &[2u8][..]);
        assert_eq!(renewal_signer(Some(a), Some(a), None).ok(), Some(a));
        assert_eq!(renewal_signer(None, Some(b), None).ok(), Some(b));
        assert!(renewal_signer(Some(a), Some(b), None).is_err());
        assert!(renewal_signer(None, None, None).is_err());
    }

    #[test]
    fn conflicts_map_to_the_faults_windows_shows() {
        let f = conflict_fault(EnrollConflict::DeviceCapReached, Some("m"));
        assert_eq!(f.subcode, FaultSubcode::Authorization);
        assert_eq!(f.error_type, Some("DeviceCapReached"));
        assert_eq!(f.relates_to.as_deref(), Some("m"));
        let f = conflict_fault(EnrollConflict::KeyHeldByOtherDevice, None);
        assert_eq!(f.subcode, FaultSubcode::CertificateRequest);
        assert_eq!(client_store(Some("Device")), "System");
        assert_eq!(client_store(None), "User");
    }
}
