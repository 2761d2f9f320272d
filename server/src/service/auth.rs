//! Authentication of enrollment requests: the node key (DeviceEnrollmentUserToken) or
//! an `--enroll-user` account, resolved to the host it stands for.

use crate::model::{Host, HostRegistration};
use crate::soap::{Fault, FaultSubcode, Request};
use crate::state::AppState;

impl AppState {
    /// The host standing for an enrollment user (no Orbit agent): created on first use,
    /// with a fresh node key, which is returned (the federated page hands it out).
    pub async fn user_host(
        &self,
        username: &str,
    ) -> Result<(Host, String), crate::error::ServerError> {
        let node_key = crate::secret::new_node_key();
        let hash = crate::secret::hash_node_key(&node_key);
        let hardware_uuid = format!(
            "{}{username}",
            crate::protocol::enrollment::USER_HOST_PREFIX
        );
        self.store
            .upsert_host(HostRegistration {
                hardware_uuid: &hardware_uuid,
                hardware_serial: "",
                hostname: username,
                platform: "user",
                node_key_hash: &hash,
            })
            .await?;
        let host = self
            .store
            .host_by_node_key_hash(&hash)
            .await?
            .ok_or_else(|| crate::error::ServerError::Config("user host vanished".into()))?;
        Ok((host, node_key))
    }

    /// Resolves the DeviceEnrollmentUserToken of a policy or enroll request to the host
    /// whose node key it is (MS-MDE2 §3.2.4.1); anything else is an Authentication fault.
    pub async fn authenticate_token(&self, req: &Request<'_, '_>) -> Result<Host, Fault> {
        let mid = req.message_id.as_deref();
        if let Some((username, password)) = crate::soap::username_token(req) {
            if self.config.enroll_users.is_empty() {
                return Err(Fault::new(
                    FaultSubcode::Authentication,
                    "UsernameToken authentication is not offered by this server; use the DeviceEnrollmentUserToken",
                )
                .relating_to(mid));
            }
            if !self.user_password_ok(&username, &password) {
                return Err(Fault::new(
                    FaultSubcode::Authentication,
                    "invalid user name or password",
                )
                .relating_to(mid));
            }
            return self
                .user_host(&username)
                .await
                .map(|(h, _)| h)
                .map_err(|e| {
                    tracing::error!(error = %e, "user host");
                    Fault::new(FaultSubcode::EnrollmentServer, "storage failure").relating_to(mid)
                });
        }
        let token = crate::soap::user_token(req)?;
        match self
            .store
            .host_by_node_key_hash(&crate::secret::hash_node_key(&token))
            .await
        {
            Ok(Some(host)) if self.node_key_expired(&host) => Err(Fault::new(
                FaultSubcode::Authentication,
                "the DeviceEnrollmentUserToken (node key) has expired; the agent must enroll again",
            )
            .relating_to(mid)),
            Ok(Some(host)) => Ok(host),
            Ok(None) => Err(Fault::new(
                FaultSubcode::Authentication,
                "the DeviceEnrollmentUserToken is not a node key issued by this server",
            )
            .relating_to(mid)),
            Err(e) => {
                tracing::error!(error = %e, "token lookup failed");
                Err(Fault::new(FaultSubcode::EnrollmentServer, "storage failure").relating_to(mid))
            }
        }
    }
}
