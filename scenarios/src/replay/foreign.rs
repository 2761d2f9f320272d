//! Replay by role: a real device's capture, recorded against any server, as a test of
//! the target.
//!
//! Each request goes where the target says its role lives: discovery at
//! `--discovery-url`, else the one Orbit announces, else the standard
//! `/EnrollmentServer/Discovery.svc` ([MS-MDE2] §3.1.5); policy and enrollment at the
//! URLs of the target's own DiscoverResponse; management at the `ADDR` of the
//! provisioning document the target issued; renewal at the enrollment URL.
//!
//! Adapted: `a:To`; the captured `wsse:Security` (UsernameToken, a token the other
//! server issued) becomes what the target accepts (`--token`, `--username/--password`,
//! its federated login, or an Orbit node key obtained on the fly); the CSR is rebuilt
//! over a key the harness holds with the real CSR's subject and attributes copied as
//! encoded; SyncML goes over mTLS with the certificate the target issued, its SyncHdr
//! Source set to the enrolled DeviceID and its SessionIDs renumbered per session. Kept:
//! everything else (AdditionalContext, MessageIDs, the SyncML bodies).
//!
//! Each response is judged by the checks the emulated client applies to the same
//! response in a run (fail-level checks fail the exchange, warn-level ones are listed).

mod access;
mod manage;

use fake_windows_client::http::{self, ClientIdentity};
use fake_windows_client::provisioning::CertSearchCriteria;
use fake_windows_client::{
    cms, csr, discovery, provisioning, soap, verify, wstep, xcep, ClientError, DiscoverResult,
    EnrollmentPolicy, TlsOptions,
};
use rsa::pkcs8::EncodePrivateKey;
use rsa::RsaPrivateKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::adapt::{self, SoapEdits, TokenKind};
use super::role::{role_of, Role};
use super::{ExchangeResult, ReplayError, ReplayReport};
use crate::capability::Capability;
use crate::har::{Entry, Har};
use crate::target::Target;

/// The discovery path Windows derives from a user's domain ([MS-MDE2] §3.1.5).
const STANDARD_DISCOVERY_PATH: &str = "/EnrollmentServer/Discovery.svc";

/// The enrollment the target gave the replayed device.
struct Enrolled {
    client: reqwest::Client,
    cert_der: Vec<u8>,
    key: RsaPrivateKey,
    device_id: String,
    addr: String,
    provider_id: String,
    criteria: CertSearchCriteria,
}

struct Foreign<'a> {
    target: &'a Target,
    tls: TlsOptions,
    plain: reqwest::Client,
    /// An emulated device for what a capture cannot give: an Orbit node key, a
    /// federated login, a Discover when the capture has none.
    helper: Option<fake_windows_client::Device>,
    node_key: Option<String>,
    federated_token: Option<String>,
    announced_discovery: Option<String>,
    discover_tried: bool,
    discovered: Option<DiscoverResult>,
    policy: Option<EnrollmentPolicy>,
    upn: String,
    enrolled: Option<Enrolled>,
    /// Recorded SessionID → the replay's, for the session in progress.
    session: Option<(String, String)>,
    sessions: u32,
}

/// Replays `har` by role against `target`.
pub(super) async fn replay(har: &Har, target: &Target) -> Result<ReplayReport, ReplayError> {
    let tls = target.tls();
    let mut f = Foreign {
        target,
        plain: http::client(&tls, None)?,
        tls,
        helper: None,
        node_key: None,
        federated_token: None,
        announced_discovery: None,
        discover_tried: false,
        discovered: None,
        policy: None,
        upn: "user@example.org".into(),
        enrolled: None,
        session: None,
        sessions: 0,
    };
    let mut report = ReplayReport {
        by_role: true,
        ..ReplayReport::default()
    };
    for (index, e) in har.log.entries.iter().enumerate() {
        let body = e
            .request
            .post_data
            .as_ref()
            .map(|p| p.text.as_str())
            .unwrap_or("");
        let role = role_of(&e.request.method, &e.request.url, body);
        let mut r = ExchangeResult::new(index, role.step(), e);
        r.recorded = Some(adapt::describe(e.response.status, &e.response.content.text));
        f.exchange(role, e, body, &mut r).await;
        report.results.push(r);
    }
    Ok(report)
}

/// Records a check's outcome on the exchange; `Some` when it passed.
fn judged<T>(r: &mut ExchangeResult, outcome: Result<T, ClientError>) -> Option<T> {
    match outcome {
        Ok(v) => Some(v),
        Err(e) => {
            r.failure = Some(e.to_string());
            None
        }
    }
}

fn reply(resp: &http::Response) -> soap::HttpReply<'_> {
    soap::HttpReply {
        status: resp.status,
        content_type: resp.content_type.as_deref(),
        retry_after: resp.retry_after.as_deref(),
        body: &resp.body,
    }
}

/// The captured request's headers worth sending again (not hop-by-hop ones, not the
/// other server's cookies or credentials, not HTTP/2 pseudo-headers).
fn headers_of(e: &Entry) -> Vec<(String, String)> {
    e.request
        .headers
        .iter()
        .filter(|h| {
            super::resendable_header(&h.name)
                && !matches!(
                    h.name.to_ascii_lowercase().as_str(),
                    "authorization" | "cookie" | "keep-alive" | "upgrade"
                )
        })
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect()
}

impl Foreign<'_> {
    async fn exchange(&mut self, role: Role, e: &Entry, body: &str, r: &mut ExchangeResult) {
        let outcome = match role {
            Role::DiscoveryProbe => self.probe(e, r).await,
            Role::Discover => self.discover(e, body, r).await,
            Role::GetPolicies => self.get_policies(e, body, r).await,
            Role::Enroll => self.enroll(e, body, r).await,
            Role::Renew => self.renew(e, body, r).await,
            Role::Management => self.management(e, body, r).await,
            Role::OrbitEnroll | Role::OrbitConfig => self.orbit(role, e, body, r).await,
            Role::Unknown => {
                r.step = e.step.clone().unwrap_or_else(|| "unknown".into());
                r.skipped =
                    Some("not a request of a Windows MDM client (no role): not sent".into());
                Ok(())
            }
        };
        if let Err(why) = outcome {
            r.error = Some(why);
        }
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        e: &Entry,
        url: &str,
        body: Option<String>,
        r: &mut ExchangeResult,
    ) -> Result<http::Response, String> {
        r.url = url.to_string();
        let method = reqwest::Method::from_bytes(e.request.method.as_bytes())
            .map_err(|_| format!("invalid method {:?}", e.request.method))?;
        let mut headers = headers_of(e);
        // A dump may leave Content-Type out; the target needs the one Windows sends.
        if let Some(b) = &body {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                let ct = match b.trim_start().chars().next() {
                    Some('{') => "application/json",
                    _ if b.contains("<SyncML") => fake_windows_client::syncml::CONTENT_TYPE,
                    _ => soap::CONTENT_TYPE,
                };
                headers.push(("Content-Type".into(), ct.into()));
            }
        }
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut log = Vec::new();
        let resp = http::send(&mut log, client, "replay", method, url, &refs, body)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        r.replayed_status = Some(resp.status);
        Ok(resp)
    }

    async fn probe(&mut self, e: &Entry, r: &mut ExchangeResult) -> Result<(), String> {
        let url = self.discovery_url().await?;
        let resp = self.send(&self.plain.clone(), e, &url, None, r).await?;
        // http.discovery_probe_status (fail): [MS-MDE2] §3.1.5.1, as in the client.
        let outcome = match resp.status {
            200 => Ok(()),
            429 => Err(ClientError::Throttled {
                step: "discovery_probe",
                retry_after: resp.retry_after,
            }),
            s => Err(ClientError::Http {
                step: "discovery_probe",
                status: s,
                body: resp.body.chars().take(200).collect(),
            }),
        };
        judged(r, outcome);
        Ok(())
    }

    async fn discover(
        &mut self,
        e: &Entry,
        body: &str,
        r: &mut ExchangeResult,
    ) -> Result<(), String> {
        self.discover_tried = true;
        let url = self.discovery_url().await?;
        if let Some(upn) = adapt::text_of(body, "EmailAddress").filter(|u| !u.is_empty()) {
            self.upn = upn;
        }
        let edits = SoapEdits {
            to: &url,
            security: None,
            token_b64: None,
            timestamp: None,
        };
        let sent = adapt::soap_request(body, &edits)?;
        let mid = adapt::text_of(body, "MessageID").unwrap_or_default();
        let resp = self
            .send(&self.plain.clone(), e, &url, Some(sent), r)
            .await?;
        let mut w = Vec::new();
        let outcome = soap::check_reply_with("discover", &reply(&resp), &mut w)
            .and_then(|()| discovery::parse_response_with(&resp.body, &mid, &mut w));
        r.warnings.append(&mut w);
        self.discovered = judged(r, outcome);
        Ok(())
    }

    async fn get_policies(
        &mut self,
        e: &Entry,
        body: &str,
        r: &mut ExchangeResult,
    ) -> Result<(), String> {
        let d = match self.discovered().await {
            Ok(d) => d,
            Err(why) => {
                r.skipped = Some(why);
                return Ok(());
            }
        };
        let cred = self.credential().await?;
        let url = d.enrollment_policy_service_url.clone();
        let sent = adapt::soap_request(
            body,
            &SoapEdits {
                to: &url,
                security: Some(cred.header()),
                token_b64: None,
                timestamp: None,
            },
        )?;
        let mid = adapt::text_of(body, "MessageID").unwrap_or_default();
        let resp = self
            .send(&self.plain.clone(), e, &url, Some(sent), r)
            .await?;
        let mut w = Vec::new();
        let outcome = soap::check_reply_with("get_policies", &reply(&resp), &mut w)
            .and_then(|()| xcep::parse_response_with(&resp.body, &mid, &mut w));
        r.warnings.append(&mut w);
        if let Some(p) = judged(r, outcome) {
            self.policy = Some(p);
        }
        Ok(())
    }

    fn new_key(&self) -> Result<RsaPrivateKey, String> {
        let bits = self
            .policy
            .as_ref()
            .map(|p| p.minimal_key_length)
            .unwrap_or(xcep::DEFAULT_KEY_BITS)
            .clamp(2048, 4096) as usize;
        RsaPrivateKey::new(&mut rand::thread_rng(), bits)
            .map_err(|e| format!("RSA key generation: {e}"))
    }

    async fn enroll(
        &mut self,
        e: &Entry,
        body: &str,
        r: &mut ExchangeResult,
    ) -> Result<(), String> {
        let Some((TokenKind::Pkcs10, old_csr)) = adapt::request_token(body) else {
            return Err(
                "the captured request carries no base64 PKCS#10 CSR to copy the subject from"
                    .into(),
            );
        };
        let device_id = adapt::context_item(body, "DeviceID")
            .ok_or("the captured request has no DeviceID context item")?;
        let d = match self.discovered().await {
            Ok(d) => d,
            Err(why) => {
                r.skipped = Some(why);
                return Ok(());
            }
        };
        let cred = self.credential().await?;
        let key = self.new_key()?;
        let hash = match &self.policy {
            Some(p) => p.hash,
            None => csr::hash_of(&old_csr).unwrap_or(csr::HashAlg::Sha1),
        };
        let new_csr = csr::rebuild(&old_csr, &key, hash).map_err(|e| e.to_string())?;
        let url = d.enrollment_service_url.clone();
        let sent = adapt::soap_request(
            body,
            &SoapEdits {
                to: &url,
                security: Some(cred.header()),
                token_b64: Some(b64(&new_csr)),
                timestamp: None,
            },
        )?;
        let mid = adapt::text_of(body, "MessageID").unwrap_or_default();
        let resp = self
            .send(&self.plain.clone(), e, &url, Some(sent), r)
            .await?;
        let mut w = Vec::new();
        const STEP: &str = "request_security_token";
        let outcome = soap::check_reply_with(STEP, &reply(&resp), &mut w)
            .and_then(|()| wstep::check_not_chunked(STEP, resp.chunked))
            .and_then(|()| wstep::parse_response_with(&resp.body, &mid, &mut w))
            .and_then(|xml| provisioning::parse(&xml))
            .and_then(|doc| verify::verify(&doc, &key));
        let verified = judged(r, outcome);
        r.warnings.append(&mut w);
        if let Some(mut v) = verified {
            r.warnings.append(&mut v.warnings);
            let client = self.mtls(&v.client_der, &key)?;
            self.enrolled = Some(Enrolled {
                client,
                cert_der: v.client_der,
                key,
                device_id,
                addr: v.addr,
                provider_id: v.provider_id,
                criteria: v.criteria,
            });
        }
        Ok(())
    }

    fn mtls(&self, cert_der: &[u8], key: &RsaPrivateKey) -> Result<reqwest::Client, String> {
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| format!("encoding the key: {e}"))?;
        let identity = ClientIdentity {
            cert_der: cert_der.to_vec(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec())),
        };
        http::client(&self.tls, Some(&identity)).map_err(|e| e.to_string())
    }

    async fn renew(&mut self, e: &Entry, body: &str, r: &mut ExchangeResult) -> Result<(), String> {
        if let Some(why) = self.target.lacking.why(Capability::Renewal) {
            r.skipped = Some(format!("the target does not renew certificates: {why}"));
            return Ok(());
        }
        if self.enrolled.is_none() {
            r.skipped =
                Some("renews a certificate the target did not issue above: not sent".into());
            return Ok(());
        }
        let d = match self.discovered().await {
            Ok(d) => d,
            Err(why) => {
                r.skipped = Some(why);
                return Ok(());
            }
        };
        let Some(enrolled) = &self.enrolled else {
            return Ok(());
        };
        let Some((TokenKind::Pkcs7, old_p7)) = adapt::request_token(body) else {
            return Err("the captured renewal carries no base64 PKCS#7 request".into());
        };
        let inner = cms::parse(&old_p7)
            .map_err(|e| format!("the captured renewal's PKCS#7: {e}"))?
            .econtent;
        let key = self.new_key()?;
        let hash = csr::hash_of(&inner).unwrap_or(csr::HashAlg::Sha256);
        let new_csr = csr::rebuild(&inner, &key, hash).map_err(|e| e.to_string())?;
        // Signed with the certificate being renewed (MS-WSTEP §3.1.4.1.1).
        let p7 =
            cms::sign(&new_csr, &enrolled.cert_der, &enrolled.key).map_err(|e| e.to_string())?;
        let url = d.enrollment_service_url.clone();
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let sent = adapt::soap_request(
            body,
            &SoapEdits {
                to: &url,
                security: None,
                token_b64: Some(b64(&p7)),
                timestamp: Some((fmt(now), fmt(now + time::Duration::minutes(5)))),
            },
        )?;
        let mid = adapt::text_of(body, "MessageID").unwrap_or_default();
        let client = enrolled.client.clone();
        let resp = self.send(&client, e, &url, Some(sent), r).await?;
        let mut w = Vec::new();
        const STEP: &str = "renew_certificate";
        let (provider_id, criteria) = (enrolled.provider_id.clone(), enrolled.criteria.clone());
        let outcome = soap::check_reply_with(STEP, &reply(&resp), &mut w)
            .and_then(|()| wstep::parse_response_with(&resp.body, &mid, &mut w))
            .and_then(|xml| provisioning::parse(&xml))
            .and_then(|doc| verify::verify_renewal(&doc, &key, &provider_id, &criteria));
        let verified = judged(r, outcome);
        r.warnings.append(&mut w);
        if let Some(mut v) = verified {
            r.warnings.append(&mut v.warnings);
            let client = self.mtls(&v.client_der, &key)?;
            if let Some(en) = self.enrolled.as_mut() {
                en.client = client;
                en.cert_der = v.client_der;
                en.key = key;
            }
        }
        Ok(())
    }
}

fn b64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}
