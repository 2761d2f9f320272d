//! Leaving MDM (Microsoft's "disconnecting from MDM"): the device sends the generic
//! Alert 1226 (`com.microsoft:mdm.unenrollment.userrequest`) in a management session and
//! deletes its enrollment: the `Enrollments\<GUID>` and `OMADM\Accounts\<GUID>` keys, the
//! provisioned certificates and key, the DMClient provider nodes and the policies the MDM
//! set. The DeviceID survives, so the same machine can enroll again.

use crate::device::{Device, PreviousIdentity};
use crate::error::ClientError;
use crate::manage::SyncReport;
use serde::{Deserialize, Serialize};

const ENROLLMENTS: &str = "HKLM\\SOFTWARE\\Microsoft\\Enrollments";
const ACCOUNTS: &str = "HKLM\\SOFTWARE\\Microsoft\\Provisioning\\OMADM\\Accounts";
/// Node subtrees owned by the management authority, removed with the enrollment.
const MDM_SUBTREES: &[&str] = &["./Vendor/MSFT/Policy", "./User/Vendor/MSFT/Policy"];

/// What [`Device::handle_orbit_notifications`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrbitAction {
    None,
    Enrolled,
    Unenrolled,
}

impl Device {
    /// Device-initiated unenrollment: a session whose package 1 carries Alert 1226, then
    /// local removal. Like Windows, the enrollment is removed even when the session fails;
    /// the session's error is still returned.
    pub async fn unenroll(&mut self) -> Result<SyncReport, ClientError> {
        if !self.is_enrolled() {
            return Err(ClientError::State("device is not enrolled".into()));
        }
        let result = self.run_session(true).await;
        self.remove_enrollment();
        result.map(|mut r| {
            r.unenrolled = true;
            r
        })
    }

    /// Deletes the enrollment locally. The client certificate and key are kept as the
    /// "previous identity" for negative tests.
    pub fn remove_enrollment(&mut self) {
        if let Ok(id) = self.select_store_pem() {
            self.state.previous_identity = Some(id);
        }
        let Some(e) = self.state.enrollment.take() else {
            return;
        };
        let reg = &mut self.state.registry;
        for key in [
            format!("{ENROLLMENTS}\\{}", e.enrollment_guid),
            format!("{ACCOUNTS}\\{}", e.enrollment_guid),
        ] {
            let sub = format!("{key}\\");
            reg.keys.retain(|k, _| *k != key && !k.starts_with(&sub));
        }
        if let Some(store) = self.state.certs.store_mut(&e.client_store) {
            store.retain(|c| c.thumbprint != e.client_thumbprint);
        }
        self.state
            .certs
            .root_system
            .retain(|c| c.thumbprint != e.root_thumbprint);
        let provider = format!("./Vendor/MSFT/DMClient/Provider/{}", e.provider_id);
        let mut subtrees: Vec<String> = MDM_SUBTREES.iter().map(|s| s.to_string()).collect();
        subtrees.push(provider);
        self.state.nodes.nodes.retain(|k, _| {
            !subtrees
                .iter()
                .any(|s| k == s || k.starts_with(&format!("{s}/")))
        });
        self.key = None;
        self.state.key_pem = None;
        self.state.pending_wstep = None;
    }

    /// The store certificate the device authenticates with, as DER and PEM key.
    pub(crate) fn select_store_pem(&self) -> Result<PreviousIdentity, ClientError> {
        let id = self.select_store_cert()?;
        Ok(PreviousIdentity {
            cert_der: id.der.clone(),
            key_pem: id.private_key_pem.clone().unwrap_or_default(),
        })
    }

    /// One Orbit config poll, acted on as the agent does: RegisterDeviceWithManagement
    /// when asked to enroll, UnregisterDeviceWithManagement (the device-initiated flow)
    /// when asked to unenroll.
    pub async fn handle_orbit_notifications(&mut self) -> Result<OrbitAction, ClientError> {
        let n = self.orbit_config().await?;
        if n.needs_programmatic_windows_mdm_unenrollment && self.is_enrolled() {
            self.unenroll().await?;
            return Ok(OrbitAction::Unenrolled);
        }
        if n.needs_programmatic_windows_mdm_enrollment && !self.is_enrolled() {
            let url = n
                .windows_mdm_discovery_endpoint
                .filter(|u| !u.is_empty())
                .ok_or_else(|| {
                    ClientError::missing(
                        "orbit_config",
                        "notifications.windows_mdm_discovery_endpoint",
                    )
                })?;
            let token = self
                .state
                .node_key
                .clone()
                .ok_or_else(|| ClientError::State("no orbit node key".into()))?;
            let upn = self.state.profile.upn.clone();
            self.register_device_with_management(&upn, &url, &token)
                .await?;
            return Ok(OrbitAction::Enrolled);
        }
        Ok(OrbitAction::None)
    }
}
