//! Certificate renewal (MS-WSTEP RequestType Renew; Microsoft's "certificate renewal for
//! Windows MDM"): a new key and PKCS#10, wrapped in a CMS SignedData signed with the
//! current key, POSTed to the enrollment service over TLS presenting the current
//! certificate. The answer is a renewal provisioning document; the new certificate and key
//! replace the old ones in `My`.
//!
//! Registry bookkeeping. Windows does not document the values of `RenewStatus`; the
//! emulation writes [`RENEW_STATUS_OK`] (0, as at enrollment) after a successful renewal
//! and [`RENEW_STATUS_FAILED`] (2) after a failed one. `RenewErrorCode` gets the HRESULT
//! Windows reports for the failure: MENROLL_E_* for SOAP faults ([MS-MDE2] §2.2.10 and the
//! DeviceEnrollmentServiceError types), 0x8019xxxx with the HTTP status in the low bits for
//! unexpected HTTP answers (e.g. 0x801900C8 from the protocol reference), WinINet
//! HRESULTs for transport and TLS failures.

use crate::cms;
use crate::csr::{self, HashAlg};
use crate::device::Device;
use crate::error::ClientError;
use crate::http;
use crate::provisioning::{self, CertSearchCriteria, ProvisioningDoc};
use crate::registry::StoredCert;
use crate::soap::{self, HttpReply};
use crate::verify;
use crate::wstep;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

const STEP: &str = "renew";
pub const RENEW_STATUS_OK: u32 = 0;
pub const RENEW_STATUS_FAILED: u32 = 2;
const DEVICE_TYPE: &str = "CIMClient_Windows";

/// The HRESULT Windows records for a failed renewal.
pub fn hresult_for(e: &ClientError) -> u32 {
    match e {
        ClientError::SoapFault(f) => {
            let by_type = match f.error_type.as_deref() {
                Some("DeviceCapReached") => Some(0x8018_0013),
                Some("DeviceNotSupported") => Some(0x8018_0014),
                Some("NotSupported") => Some(0x8018_0015),
                Some("NotEligibleToRenew") => Some(0x8018_0016),
                Some("InMaintenance") => Some(0x8018_0017),
                Some("UserLicense") => Some(0x8018_0018),
                Some("InvalidEnrollmentData") => Some(0x8018_0019),
                _ => None,
            };
            let sub = f.subcode.rsplit(':').next().unwrap_or("");
            by_type.unwrap_or(match sub {
                "MessageFormat" => 0x8018_0001,
                "Authentication" => 0x8018_0002,
                "Authorization" => 0x8018_0003,
                "CertificateRequest" => 0x8018_0004,
                "EnrollmentServer" => 0x8018_0005,
                "InternalServiceFault" => 0x8018_0006,
                "InvalidSecurity" => 0x8018_0007,
                _ => 0x8018_0008,
            })
        }
        ClientError::Http { status, .. } => 0x8019_0000 | u32::from(*status),
        ClientError::Throttled { .. } => 0x8019_0000 | 429,
        // HRESULT_FROM_WIN32(ERROR_INTERNET_CANNOT_CONNECT / ERROR_INTERNET_SECURE_FAILURE).
        ClientError::Transport { .. } => 0x8007_2EFD,
        ClientError::Tls(_) => 0x8007_2F8F,
        ClientError::Missing { .. } | ClientError::Invalid { .. } | ClientError::Xml { .. } => {
            0x8018_0001
        }
        _ => 0x8018_0008,
    }
}

impl Device {
    /// Whether the client certificate is inside its renewal window:
    /// now ≥ notAfter − RenewPeriod days (device clock).
    pub fn renewal_due(&self) -> bool {
        let Some(e) = self.state.enrollment.as_ref() else {
            return false;
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&e.client_cert_der) else {
            return false;
        };
        let not_after = cert.validity().not_after.timestamp();
        let period = i64::from(e.renew.renew_period_days.unwrap_or(0)) * 86_400;
        self.state.clock.now().unix_timestamp() >= not_after - period
    }

    /// Renews the client certificate now, whatever the clock says. On failure the old
    /// certificate stays and `RenewErrorCode` / `RenewStatus` record the failure.
    pub async fn renew(&mut self) -> Result<(), ClientError> {
        let result = self.try_renew().await;
        if let Err(err) = &result {
            if let Some(ek) = self.enrollment_key() {
                let reg = &mut self.state.registry;
                reg.set_dword(&ek, "RenewStatus", RENEW_STATUS_FAILED);
                reg.set_dword(&ek, "RenewErrorCode", hresult_for(err));
            }
        }
        result
    }

    fn enrollment_key(&self) -> Option<String> {
        self.state.enrollment.as_ref().map(|e| {
            format!(
                "HKLM\\SOFTWARE\\Microsoft\\Enrollments\\{}",
                e.enrollment_guid
            )
        })
    }

    async fn try_renew(&mut self) -> Result<(), ClientError> {
        let e = self
            .state
            .enrollment
            .clone()
            .ok_or_else(|| ClientError::State("device is not enrolled".into()))?;
        if e.enrollment_service_url.is_empty() {
            return Err(ClientError::State(
                "the enrollment service URL was not recorded at enrollment".into(),
            ));
        }
        let current = self.select_store_pem()?;
        let current_key = RsaPrivateKey::from_pkcs8_pem(&current.key_pem)
            .map_err(|err| ClientError::Crypto(format!("stored client key: {err}")))?;
        let bits = (current_key.size() * 8).max(2048);
        let new_key = RsaPrivateKey::new(&mut rand::thread_rng(), bits)
            .map_err(|err| ClientError::Crypto(format!("RSA key generation: {err}")))?;
        let device_id = self.state.device_id.clone();
        let csr_der = csr::build(
            &new_key,
            &csr::windows_subject_cn(&device_id),
            &device_id,
            e.csr_hash.unwrap_or(HashAlg::Sha256),
        )?;
        let p7 = cms::sign(&csr_der, &current.cert_der, &current_key)?;
        let now = self.state.clock.now();
        let ts = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let mid = soap::new_message_id();
        let context = [
            ("DeviceType", DEVICE_TYPE.to_string()),
            ("ApplicationVersion", self.state.profile.os_version.clone()),
        ];
        let body = wstep::build_renew_request(&wstep::RenewRequest {
            message_id: &mid,
            to: &e.enrollment_service_url,
            upn: &e.upn,
            created: &ts(now),
            expires: &ts(now + time::Duration::minutes(5)),
            pkcs7_der: &p7,
            context: &context,
        });
        let identity = self.session_identity()?;
        let client = http::client_resuming(&self.tls, identity.as_ref(), &self.tls_sessions)?;
        let r = self
            .send_retrying(
                &client,
                STEP,
                reqwest::Method::POST,
                &e.enrollment_service_url,
                &[
                    ("Content-Type", soap::CONTENT_TYPE),
                    ("User-Agent", soap::USER_AGENT),
                ],
                Some(body),
            )
            .await?;
        soap::check_reply_with(
            STEP,
            &HttpReply {
                status: r.status,
                content_type: r.content_type.as_deref(),
                retry_after: r.retry_after.as_deref(),
                body: &r.body,
            },
            &mut self.warnings,
        )?;
        wstep::check_not_chunked(STEP, r.chunked)?;
        let xml = wstep::parse_response_with(&r.body, &mid, &mut self.warnings)?;
        let doc = provisioning::parse(&xml)?;
        self.apply_renewal(&doc, new_key)
    }

    /// Verifies a renewal provisioning document against `new_key` and the enrollment, then
    /// replaces the client certificate and key (the old pair becomes the previous
    /// identity) and updates registry and enrollment state.
    pub fn apply_renewal(
        &mut self,
        doc: &ProvisioningDoc,
        new_key: RsaPrivateKey,
    ) -> Result<(), ClientError> {
        let e = self
            .state
            .enrollment
            .as_ref()
            .ok_or_else(|| ClientError::State("device is not enrolled".into()))?;
        let criteria = CertSearchCriteria::parse(&e.cert_search_criteria);
        let mut v = verify::verify_renewal(doc, &new_key, &e.provider_id, &criteria)?;
        let mut warnings = std::mem::take(&mut v.warnings);
        let old = self.select_store_pem()?;
        let renew = doc.renew.clone();
        let key_pem = crate::foreign::key_pem(&new_key)?;
        let container = uuid::Uuid::new_v4().to_string().to_uppercase();
        let now = self.state.clock.now_rfc3339();
        let Some(e) = self.state.enrollment.as_mut() else {
            return Err(ClientError::State("device is not enrolled".into()));
        };
        let old_thumb = verify::thumbprint(&old.cert_der);
        if let Some(store) = self.state.certs.store_mut(&e.client_store) {
            store.retain(|c| c.thumbprint != old_thumb);
        }
        let client_store = format!("My\\{}", v.client_scope);
        self.state.certs.put(
            &client_store,
            StoredCert {
                thumbprint: v.client_thumbprint.clone(),
                der: v.client_der.clone(),
                private_key_pem: Some(key_pem.clone()),
                key_container: Some(container.clone()),
            },
        );
        // A renewal document may leave the root out ("only needed here if it is not in the
        // device already", Microsoft's renewal sample): the enrolled root stays.
        let (root_der, root_thumbprint) = if v.root_der.is_empty() {
            (e.root_cert_der.clone(), e.root_thumbprint.clone())
        } else {
            (v.root_der, v.root_thumbprint)
        };
        if !root_der.is_empty() && root_thumbprint != e.root_thumbprint {
            self.state.certs.put(
                "Root/System",
                StoredCert {
                    thumbprint: root_thumbprint.clone(),
                    der: root_der.clone(),
                    private_key_pem: None,
                    key_container: None,
                },
            );
        }
        e.client_cert_der = v.client_der;
        e.client_thumbprint = v.client_thumbprint.clone();
        e.client_store = client_store;
        e.root_cert_der = root_der;
        e.root_thumbprint = root_thumbprint.clone();
        if let Some(r) = renew {
            e.renew = r;
        }
        let ek = format!(
            "HKLM\\SOFTWARE\\Microsoft\\Enrollments\\{}",
            e.enrollment_guid
        );
        let ak = format!(
            "HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\Accounts\\{}",
            e.enrollment_guid
        );
        let period = e.renew.renew_period_days;
        let reg = &mut self.state.registry;
        reg.set_sz(&ek, "DMPCertThumbPrint", v.client_thumbprint.clone());
        reg.set_sz(&ek, "RootCertThumbPrint", root_thumbprint);
        reg.set_sz(&ek, "CurKeyContainer", container);
        reg.set_sz(&ek, "RenewTimestamp", now);
        reg.set_dword(&ek, "RenewStatus", RENEW_STATUS_OK);
        reg.set_dword(&ek, "RenewErrorCode", 0);
        if let Some(p) = period {
            reg.set_dword(&ek, "RenewalPeriod", p);
        }
        reg.set_sz(
            &ak,
            "SslClientCertReference",
            format!("MY;{};{}", v.client_scope, v.client_thumbprint),
        );
        self.state.key_pem = Some(key_pem);
        self.key = Some(new_key);
        self.state.previous_identity = Some(old);
        self.warnings.append(&mut warnings);
        Ok(())
    }
}
