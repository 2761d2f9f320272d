//! Management sessions and Orbit requests of a capture, replayed by role.

use fake_windows_client::session::ManagementSession;
use fake_windows_client::{syncml, ClientError, Warning};

use super::super::adapt;
use super::super::role::Role;
use super::super::ExchangeResult;
use super::{judged, Foreign};
use crate::har::Entry;

/// `path?query` of a URL.
fn path_and_query(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.find('/').map(|i| &rest[i..]).unwrap_or("/")
}

impl Foreign<'_> {
    pub(super) async fn management(
        &mut self,
        e: &Entry,
        body: &str,
        r: &mut ExchangeResult,
    ) -> Result<(), String> {
        let Some(enrolled) = &self.enrolled else {
            r.skipped = Some(
                "a management session needs the certificate the target issues, and no enrollment above got one: not sent"
                    .into(),
            );
            return Ok(());
        };
        // Windows appends its query (mode=Maintenance&Platform=WoA) to ADDR.
        let url = match e.request.url.split_once('?') {
            Some((_, q)) if !enrolled.addr.contains('?') => format!("{}?{q}", enrolled.addr),
            _ => enrolled.addr.clone(),
        };
        let first =
            adapt::syncml_request(body, &enrolled.addr, &enrolled.device_id, |s| s.to_string())?;
        // A session starts at MsgID 1: a new SessionID, kept for its later messages.
        let ours = match &self.session {
            Some((recorded, ours)) if *recorded == first.session_id && first.msg_id != 1 => {
                ours.clone()
            }
            _ => {
                self.sessions += 1;
                let ours = format!("{:X}", self.sessions);
                self.session = Some((first.session_id.clone(), ours.clone()));
                ours
            }
        };
        let msg =
            adapt::syncml_request(body, &enrolled.addr, &enrolled.device_id, |_| ours.clone())?;
        let client = enrolled.client.clone();
        let resp = self.send(&client, e, &url, Some(msg.xml), r).await?;
        let mut w = Vec::new();
        const STEP: &str = "sync";
        // http.throttled, http.status (fail) as in a session (manage.rs).
        let outcome = match resp.status {
            429 => Err(ClientError::Throttled {
                step: STEP,
                retry_after: resp.retry_after.clone(),
            }),
            200 => Ok(()),
            s => Err(ClientError::Http {
                step: STEP,
                status: s,
                body: resp.body.chars().take(2000).collect(),
            }),
        }
        .and_then(|()| {
            let ct = resp.content_type.as_deref().unwrap_or("");
            if !resp.body.trim().is_empty() && !syncml::is_syncml_xml(ct) {
                w.push(Warning {
                    check: "syncml.content_type",
                    detail: format!("Content-Type is {ct:?}, expected {}", syncml::CONTENT_TYPE),
                });
            }
            ManagementSession::judge_reply(&resp.body, &ours, msg.msg_id, msg.awaiting, &mut w)
        });
        judged(r, outcome);
        r.warnings.append(&mut w);
        Ok(())
    }

    pub(super) async fn orbit(
        &mut self,
        role: Role,
        e: &Entry,
        body: &str,
        r: &mut ExchangeResult,
    ) -> Result<(), String> {
        let mut json: serde_json::Value = serde_json::from_str(body)
            .map_err(|err| format!("the captured Orbit request is not JSON: {err}"))?;
        if role == Role::OrbitEnroll {
            if !self.target.enroll_secret.is_empty() {
                json["enroll_secret"] = self.target.enroll_secret.clone().into();
            }
        } else {
            let key = self.orbit_key().await?;
            json["orbit_node_key"] = key.into();
        }
        let url = format!(
            "{}{}",
            self.target.server_url,
            path_and_query(&e.request.url)
        );
        let resp = self
            .send(&self.plain.clone(), e, &url, Some(json.to_string()), r)
            .await?;
        let parsed: Option<serde_json::Value> = serde_json::from_str(&resp.body).ok();
        if resp.status != 200 || parsed.is_none() {
            r.failure = Some(format!(
                "{}: HTTP {}: {}",
                role.step(),
                resp.status,
                resp.body.chars().take(200).collect::<String>()
            ));
            return Ok(());
        }
        let v = parsed.unwrap_or_default();
        if role == Role::OrbitEnroll {
            match v["orbit_node_key"].as_str().filter(|k| !k.is_empty()) {
                Some(k) => self.node_key = Some(k.to_string()),
                None => r.failure = Some("orbit_enroll: missing orbit_node_key".into()),
            }
        } else if let Some(u) = v["notifications"]["windows_mdm_discovery_endpoint"].as_str() {
            self.announced_discovery = Some(u.to_string());
        }
        Ok(())
    }
}
