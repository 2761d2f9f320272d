//! Compact state of an enrolled device and one management session run from it, for
//! load tests that keep many idle devices: no registry, stores or exchange log, only
//! what a check-in needs. The session is the one [`crate::Device::sync`] runs.

use std::time::{Duration, Instant};

use rustls::pki_types::PrivateKeyDer;

use crate::csp::NodeStore;
use crate::error::ClientError;
use crate::http::ClientIdentity;
use crate::profile::DeviceProfile;
use crate::session::ManagementSession;
use crate::syncml;

const STEP: &str = "sync";
const MAX_ROUND_TRIPS: u32 = 64;

/// What a load test keeps per enrolled device (the key is kept elsewhere, e.g. in a
/// pool shared by index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckinState {
    pub device_id: Box<str>,
    /// DER client certificate issued at enrollment.
    pub cert_der: Box<[u8]>,
    /// Sessions started so far (the SessionID of the next one is this plus one).
    pub session_counter: u32,
}

/// The outcome of one check-in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckinReport {
    /// Time of each request/response round trip.
    pub latencies: Vec<Duration>,
    /// Server commands the device answered.
    pub commands: usize,
}

impl crate::device::Device {
    /// The compact state a load test keeps per enrolled device: DeviceID, client
    /// certificate and session counter.
    pub fn checkin_state(&self) -> Option<CheckinState> {
        let e = self.state.enrollment.as_ref()?;
        Some(CheckinState {
            device_id: self.state.device_id.clone().into_boxed_str(),
            cert_der: e.client_cert_der.clone().into_boxed_slice(),
            session_counter: u32::try_from(self.state.session_counter).unwrap_or(u32::MAX),
        })
    }
}

impl CheckinState {
    /// Heap and inline bytes this state occupies.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>() + self.device_id.len() + self.cert_der.len()
    }

    /// The TLS identity: this certificate with `key_pkcs8_der`, the device's key.
    pub fn identity(&self, key_pkcs8_der: &[u8]) -> ClientIdentity {
        ClientIdentity {
            cert_der: self.cert_der.to_vec(),
            key: PrivateKeyDer::Pkcs8(key_pkcs8_der.to_vec().into()),
        }
    }

    /// One client-initiated management session (Alert 1201) over `client`, which must
    /// present this device's certificate; server commands are answered against an
    /// empty CSP tree and the profile's built-in nodes.
    pub async fn check_in(
        &mut self,
        client: &reqwest::Client,
        management_url: &str,
        profile: &DeviceProfile,
    ) -> Result<CheckinReport, ClientError> {
        self.session_counter = self.session_counter.saturating_add(1);
        let session_id = self.session_counter.to_string();
        // Parsed once per session, not per message.
        let url = reqwest::Url::parse(&syncml::with_management_query(management_url))
            .map_err(|e| ClientError::invalid(STEP, format!("management URL: {e}")))?;
        let builtins = profile.builtins(&self.device_id);
        let mut nodes = NodeStore::default();
        let mut session = ManagementSession::new(&session_id, management_url, &self.device_id);
        let mut report = CheckinReport::default();
        let mut out = session.first_message(&builtins, "user");
        let result = loop {
            if report.latencies.len() >= MAX_ROUND_TRIPS as usize {
                break Err(ClientError::invalid(
                    STEP,
                    format!("session did not end after {MAX_ROUND_TRIPS} round trips"),
                ));
            }
            let started = Instant::now();
            let resp = client
                .post(url.clone())
                .header("Content-Type", syncml::CONTENT_TYPE)
                .header("User-Agent", syncml::USER_AGENT)
                .header("Accept-Charset", "UTF-8")
                .header("Client-Request-Id", "0")
                .body(out)
                .send()
                .await
                .map_err(|source| ClientError::Transport { step: STEP, source })?;
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp
                .text()
                .await
                .map_err(|source| ClientError::Transport { step: STEP, source })?;
            report.latencies.push(started.elapsed());
            if status == 429 {
                break Err(ClientError::Throttled {
                    step: STEP,
                    retry_after,
                });
            }
            if status != 200 {
                break Err(ClientError::Http {
                    step: STEP,
                    status,
                    body: body.chars().take(2000).collect(),
                });
            }
            if body.trim().is_empty() {
                break session.handle_empty();
            }
            if !ct.starts_with(syncml::CONTENT_TYPE) {
                break Err(ClientError::invalid(
                    STEP,
                    format!("Content-Type is {ct:?}, expected {}", syncml::CONTENT_TYPE),
                ));
            }
            match session.handle(&body, &mut nodes, &builtins) {
                Ok(Some(next)) => out = next,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        report.commands = session.records.len();
        result.map(|()| report)
    }
}
