//! The Orbit agent's two calls: enroll with the enroll secret, then poll for configuration.

use crate::device::Device;
use crate::error::ClientError;
use crate::http::{self, Response};
use serde::{Deserialize, Serialize};

/// `POST /api/fleet/orbit/enroll` body.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollRequest<'a> {
    pub enroll_secret: &'a str,
    pub hardware_uuid: &'a str,
    pub hardware_serial: &'a str,
    pub hostname: &'a str,
    pub computer_name: &'a str,
    pub platform: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnrollResponse {
    pub orbit_node_key: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigRequest<'a> {
    pub orbit_node_key: &'a str,
}

/// `notifications` of the config response; absent fields mean false / none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrbitNotifications {
    #[serde(default)]
    pub needs_programmatic_windows_mdm_enrollment: bool,
    #[serde(default)]
    pub windows_mdm_discovery_endpoint: Option<String>,
    #[serde(default)]
    pub needs_programmatic_windows_mdm_unenrollment: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConfigResponse {
    #[serde(default)]
    pub notifications: OrbitNotifications,
}

pub const ENROLL_PATH: &str = "/api/fleet/orbit/enroll";
pub const CONFIG_PATH: &str = "/api/fleet/orbit/config";

fn json_error(step: &'static str, r: &Response) -> ClientError {
    if r.status == 429 {
        return ClientError::Throttled {
            step,
            retry_after: r.retry_after.clone(),
        };
    }
    ClientError::Http {
        step,
        status: r.status,
        body: r.body.chars().take(2000).collect(),
    }
}

impl Device {
    async fn post_json(
        &mut self,
        step: &'static str,
        url: &str,
        body: String,
    ) -> Result<Response, ClientError> {
        let client = self.plain_client()?;
        http::send(
            &mut self.exchanges,
            &client,
            step,
            reqwest::Method::POST,
            url,
            &[
                ("Content-Type", "application/json"),
                ("User-Agent", "orbit/1.0"),
            ],
            Some(body),
        )
        .await
    }

    /// Orbit enrollment with the enroll secret; stores and returns the node key.
    pub async fn orbit_enroll(
        &mut self,
        server_url: &str,
        enroll_secret: &str,
    ) -> Result<String, ClientError> {
        const STEP: &str = "orbit_enroll";
        let base = server_url.trim_end_matches('/').to_string();
        let p = self.state.profile.clone();
        let body = serde_json::to_string(&EnrollRequest {
            enroll_secret,
            hardware_uuid: &p.hardware_uuid,
            hardware_serial: &p.hardware_serial,
            hostname: &p.hostname,
            computer_name: &p.device_name,
            platform: "windows",
        })?;
        let r = self
            .post_json(STEP, &format!("{base}{}", ENROLL_PATH), body)
            .await?;
        if r.status != 200 {
            return Err(json_error(STEP, &r));
        }
        let parsed: EnrollResponse = serde_json::from_str(&r.body)?;
        let key = parsed
            .orbit_node_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ClientError::missing(STEP, "orbit_node_key"))?;
        self.state.server_url = Some(base);
        self.state.node_key = Some(key.clone());
        Ok(key)
    }

    /// One Orbit config poll.
    pub async fn orbit_config(&mut self) -> Result<OrbitNotifications, ClientError> {
        const STEP: &str = "orbit_config";
        let base = self
            .state
            .server_url
            .clone()
            .ok_or_else(|| ClientError::State("orbit is not enrolled".into()))?;
        let key = self
            .state
            .node_key
            .clone()
            .ok_or_else(|| ClientError::State("no orbit node key".into()))?;
        let body = serde_json::to_string(&ConfigRequest {
            orbit_node_key: &key,
        })?;
        let r = self
            .post_json(STEP, &format!("{base}{}", CONFIG_PATH), body)
            .await?;
        if r.status != 200 {
            return Err(json_error(STEP, &r));
        }
        let parsed: ConfigResponse = serde_json::from_str(&r.body)?;
        Ok(parsed.notifications)
    }
}
