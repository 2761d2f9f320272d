//! Writing a verified enrollment into the emulated machine: certificate stores, the
//! registry keys Windows creates, and the DMClient CSP nodes the document configured.

use crate::csp::NodeValue;
use crate::device::{Device, EnrollmentInfo};
use crate::error::ClientError;
use crate::provisioning::ProvisioningDoc;
use crate::registry::StoredCert;
use crate::verify;

const KSP: &str = "Microsoft Software Key Storage Provider";

impl Device {
    /// Verifies the provisioning document and writes cert stores and registry as Windows does.
    pub fn apply_provisioning(
        &mut self,
        discovery_url: &str,
        upn: &str,
        doc: &ProvisioningDoc,
    ) -> Result<(), ClientError> {
        let key = self
            .key
            .clone()
            .ok_or_else(|| ClientError::State("no key pair generated".into()))?;
        let mut v = verify::verify(doc, &key)?;
        self.warnings.append(&mut v.warnings);
        let guid = uuid::Uuid::new_v4().to_string().to_uppercase();
        let container = uuid::Uuid::new_v4().to_string().to_uppercase();
        // The PEM written when the key was made; encoding it again costs a modular inverse.
        let key_pem = match self.state.key_pem.clone() {
            Some(p) => p,
            None => crate::foreign::key_pem(&key)?,
        };
        let client_store = format!("My\\{}", v.client_scope);
        // A document without a root certificate installs none (provisioning.root_cert_missing).
        if !v.root_der.is_empty() {
            self.state.certs.put(
                "Root/System",
                StoredCert {
                    thumbprint: v.root_thumbprint.clone(),
                    der: v.root_der.clone(),
                    private_key_pem: None,
                    key_container: None,
                },
            );
        }
        self.state.certs.put(
            &client_store,
            StoredCert {
                thumbprint: v.client_thumbprint.clone(),
                der: v.client_der.clone(),
                private_key_pem: Some(key_pem),
                key_container: Some(container.clone()),
            },
        );
        let app = doc.application.clone().unwrap_or_default();
        let renew = doc.renew.clone().unwrap_or_default();
        let reg = &mut self.state.registry;
        let ek = format!("HKLM\\SOFTWARE\\Microsoft\\Enrollments\\{guid}");
        reg.set_sz(&ek, "ProviderID", v.provider_id.clone());
        reg.set_dword(&ek, "EnrollmentState", 1);
        // 6 = MDM enrollment without Entra join (the "MDMFull" type an agent-driven enrollment gets).
        reg.set_dword(&ek, "EnrollmentType", 6);
        reg.set_sz(&ek, "DiscoveryServiceFullURL", discovery_url);
        reg.set_sz(&ek, "DMPCertThumbPrint", v.client_thumbprint.clone());
        reg.set_sz(&ek, "RootCertThumbPrint", v.root_thumbprint.clone());
        reg.set_sz(&ek, "CurCryptoProvider", KSP);
        reg.set_sz(&ek, "CurKeyContainer", container);
        reg.set_dword(&ek, "RenewalPeriod", renew.renew_period_days.unwrap_or(0));
        reg.set_dword(
            &ek,
            "RenewROBOSupport",
            u32::from(renew.robo_support.unwrap_or(false)),
        );
        reg.set_dword(&ek, "RenewStatus", 0);
        // Windows stores a FILETIME here; the emulation writes the device clock as text.
        reg.set_sz(&ek, "RenewTimestamp", self.state.clock.now_rfc3339());
        reg.set_dword(&ek, "RenewErrorCode", 0);
        // Set when the endpoints came from a discovery service rather than manual entry.
        reg.set_dword(&ek, "isFederated", 1);
        reg.set_sz(&ek, "UPN", upn);
        reg.set_sz(&ek, "SID", self.state.profile.user_sid.clone());
        reg.set_dword(&ek, "EnrollmentFlags", 0);
        for p in &doc.dmclient {
            let dk = format!("{ek}\\DMClient\\{}", p.provider_id);
            for (n, val) in p.parms.iter().chain(p.poll.iter()) {
                reg.set_sz(&dk, n, val.clone());
            }
        }
        let ak = format!("HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\Accounts\\{guid}");
        reg.set_sz(&ak, "Addr", v.addr.clone());
        reg.set_sz(&ak, "AddrType", "URI");
        reg.set_sz(&ak, "AppID", app.get("APPID").cloned().unwrap_or_default());
        reg.set_sz(&ak, "Name", app.get("NAME").cloned().unwrap_or_default());
        reg.set_sz(&ak, "ServerID", v.provider_id.clone());
        reg.set_sz(&ak, "ProviderID", v.provider_id.clone());
        reg.set_sz(&ak, "ProtoVer", "1.2");
        reg.set_sz(
            &ak,
            "DefaultEncoding",
            app.get("DEFAULTENCODING").cloned().unwrap_or_default(),
        );
        reg.set_sz(
            &ak,
            "SslClientCertReference",
            format!("MY;{};{}", v.client_scope, v.client_thumbprint),
        );
        for (name, value) in [
            ("ConnRetryFreq", "CONNRETRYFREQ"),
            ("InitialBackOffTime", "INITIALBACKOFFTIME"),
            ("MaxBackOffTime", "MAXBACKOFFTIME"),
        ] {
            if let Some(x) = app.get(value) {
                reg.set_sz(&ak, name, x.clone());
            }
        }
        reg.set_sz(
            "HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\MDMDeviceID",
            "DeviceClientId",
            self.state.device_id.clone(),
        );
        // DMClient CSP nodes the provisioning document configured.
        for p in &doc.dmclient {
            let base = format!("./Vendor/MSFT/DMClient/Provider/{}", p.provider_id);
            for (n, val) in &p.parms {
                self.state.nodes.put(
                    &format!("{base}/{n}"),
                    NodeValue {
                        format: "chr".into(),
                        mime: None,
                        data: Some(val.clone()),
                    },
                );
            }
            for (n, val) in &p.poll {
                self.state.nodes.put(
                    &format!("{base}/Poll/{n}"),
                    NodeValue {
                        format: "chr".into(),
                        mime: None,
                        data: Some(val.clone()),
                    },
                );
            }
        }
        let (wstep_url, hash) = self
            .state
            .pending_wstep
            .take()
            .map(|(u, h)| (u, Some(h)))
            .unwrap_or_default();
        self.state.enrollment = Some(EnrollmentInfo {
            enrollment_service_url: wstep_url,
            csr_hash: hash,
            renew: doc.renew.clone().unwrap_or_default(),
            enrolled_at: self.state.clock.now().unix_timestamp(),
            enrollment_guid: guid,
            provider_id: v.provider_id,
            management_url: v.addr,
            discovery_url: discovery_url.to_string(),
            upn: upn.to_string(),
            client_cert_der: v.client_der,
            client_thumbprint: v.client_thumbprint,
            client_store,
            root_cert_der: v.root_der,
            root_thumbprint: v.root_thumbprint,
            cert_search_criteria: app
                .get("SSLCLIENTCERTSEARCHCRITERIA")
                .cloned()
                .unwrap_or_default(),
            digest: crate::digest::DigestAuth::from_app_auth(&doc.app_auth),
        });
        Ok(())
    }
}
