//! OMA-DM management sessions over mTLS ([MS-MDM] §2.1, §3.1.5).

use crate::device::{Device, RebootRecord};
use crate::error::ClientError;
use crate::http;
use crate::session::{ManagementSession, ServerCommandRecord};
use crate::syncml;
use serde::{Deserialize, Serialize};

const STEP: &str = "sync";
const MAX_ROUND_TRIPS: usize = 64;

/// The result of one management session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    pub session_id: String,
    pub round_trips: usize,
    pub server_commands: Vec<ServerCommandRecord>,
    /// (request XML, response XML) per round trip.
    pub transcript: Vec<(String, String)>,
    /// The session ended with the enrollment removed (DMClient Unenroll or Alert 1226).
    #[serde(default)]
    pub unenrolled: bool,
}

impl Device {
    /// One full client-initiated management session (Alert 1201).
    pub async fn sync(&mut self) -> Result<SyncReport, ClientError> {
        self.run_session(false).await
    }

    /// A management session; `unenroll` adds the generic Alert 1226 to package 1.
    /// Effects of the server's commands (RebootNow, DMClient Unenroll) are applied at the end.
    pub(crate) async fn run_session(&mut self, unenroll: bool) -> Result<SyncReport, ClientError> {
        let enrollment = self
            .state
            .enrollment
            .clone()
            .ok_or_else(|| ClientError::State("device is not enrolled".into()))?;
        let identity = self.session_identity()?;
        let client = http::client_resuming(&self.tls, identity.as_ref(), &self.tls_sessions)?;
        self.state.session_counter += 1;
        let session_id = self.state.session_counter.to_string();
        let url = syncml::with_management_query(&enrollment.management_url);
        let builtins = self.state.profile.builtins(&self.state.device_id);
        if self.state.management_auth == crate::device::ManagementAuth::Digest
            && enrollment.digest.is_none()
        {
            return Err(ClientError::State(
                "digest authentication: the provisioning document had no APPSRV digest credentials (w7 APPAUTH)".into(),
            ));
        }
        let mut session = ManagementSession::new(
            &session_id,
            &enrollment.management_url,
            &self.state.device_id,
        )
        .with_digest(enrollment.digest.clone());
        let mut report = SyncReport {
            session_id: session_id.clone(),
            ..SyncReport::default()
        };
        let mut out = if unenroll {
            session.first_message_unenroll(&builtins, "user")
        } else {
            session.first_message(&builtins, "user")
        };
        let result = loop {
            // syncml.round_trips (fail): an emulation guard, not a Windows rule: a server
            // that never sends a final Status-only message never ends the session.
            if report.round_trips >= MAX_ROUND_TRIPS {
                break Err(ClientError::invalid(
                    STEP,
                    format!("session did not end after {MAX_ROUND_TRIPS} round trips"),
                ));
            }
            report.round_trips += 1;
            let r = http::send(
                &mut self.exchanges,
                &client,
                STEP,
                reqwest::Method::POST,
                &url,
                &[
                    ("Content-Type", syncml::CONTENT_TYPE),
                    ("User-Agent", syncml::USER_AGENT),
                    ("Accept", "application/vnd.syncml.dm+xml, application/vnd.syncml.dm+wbxml, application/octet-stream"),
                    ("Accept-Charset", "UTF-8"),
                    ("Client-Request-Id", "0"),
                ],
                Some(out.clone()),
            )
            .await;
            let r = match r {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            report.transcript.push((out.clone(), r.body.clone()));
            // http.throttled (fail): a 429 ends the session; Windows retries at its next
            // scheduled session (DMClient CSP Poll schedule).
            if r.status == 429 {
                break Err(ClientError::Throttled {
                    step: STEP,
                    retry_after: r.retry_after,
                });
            }
            // http.status (fail): the DM client fails the session on any other status
            // (HTTP_E_STATUS_* in the DeviceManagement-Enterprise-Diagnostics log).
            if r.status != 200 {
                break Err(ClientError::Http {
                    step: STEP,
                    status: r.status,
                    body: r.body.chars().take(2000).collect(),
                });
            }
            if r.body.trim().is_empty() {
                break session.handle_empty();
            }
            // syncml.content_type (warn): [MS-MDM] §2.1 and Fleet's server use
            // application/vnd.syncml.dm+xml; parameters (charset) and case do not matter
            // (RFC 9110 §8.3.1), and no document says Windows refuses an XML body sent
            // under another type.
            let ct = r.content_type.as_deref().unwrap_or("");
            if !syncml::is_syncml_xml(ct) {
                crate::warning::warn(
                    &mut self.warnings,
                    "syncml.content_type",
                    format!("Content-Type is {ct:?}, expected {}", syncml::CONTENT_TYPE),
                );
            }
            match session.handle(&r.body, &mut self.state.nodes, &builtins) {
                Ok(Some(next)) => out = next,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        report.server_commands = std::mem::take(&mut session.records);
        // The latest nonce is kept for the next session, as Windows keeps it (DMAcc).
        if let (Some(e), Some(d)) = (self.state.enrollment.as_mut(), session.digest()) {
            e.digest = Some(d.clone());
        }
        self.warnings.append(&mut session.take_warnings());
        let effects = session.effects.clone();
        let now = self.state.clock.now_rfc3339();
        for _ in 0..effects.reboots {
            self.state.reboots.push(RebootRecord {
                at: now.clone(),
                session_id: session_id.clone(),
            });
        }
        // Our Status 200 for the Unenroll Exec was computed (and normally sent): Windows
        // removes the enrollment once the session is over (DMClient CSP).
        if effects.unenroll_provider.is_some() {
            self.remove_enrollment();
            report.unenrolled = true;
        }
        result?;
        self.state.last_session_at = Some(self.state.clock.now().unix_timestamp());
        Ok(report)
    }
}
