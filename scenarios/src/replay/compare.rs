//! Same-server replay: a capture this harness recorded is re-sent to a (fresh) server
//! and each response compared with the recorded one structurally (see
//! [`crate::report::canon`]).
//!
//! What must change between runs is substituted: the server origin in URLs and bodies,
//! the enroll secret (when the recorded enroll succeeded), every run-specific value the
//! replayed responses hand out in place of the recorded one (the Orbit node key, command
//! ids; also as base64, as in the SOAP BinarySecurityToken), and the WSTEP CSR, which is
//! rebuilt over a new RSA key because a server refuses a key it certified before.
//! Management requests use mTLS with the certificate the replayed enrollment issued.
//! DeviceIDs and MessageIDs are kept.

use base64::Engine;
use fake_windows_client::http::ClientIdentity;
use fake_windows_client::{csr, http, provisioning, verify, wstep};
use rsa::pkcs8::EncodePrivateKey;
use rsa::RsaPrivateKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{ExchangeResult, ReplayError, ReplayReport};
use crate::har::{Entry, Har};
use crate::report::canon::{self, Difference, Origins};
use crate::target::Target;

/// `scheme://authority` of a URL.
fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let auth = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            format!("{scheme}://{auth}")
        }
        None => String::new(),
    }
}

struct Subs(Vec<(String, String)>);

impl Subs {
    fn add(&mut self, old: &str, new: &str) {
        if old.is_empty() || old == new || self.0.iter().any(|(o, _)| o == old) {
            return;
        }
        self.0.push((old.to_string(), new.to_string()));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let (ob, nb) = (b64(old), b64(new));
        if !self.0.iter().any(|(o, _)| *o == ob) {
            self.0.push((ob, nb));
        }
    }
    fn apply(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (o, n) in &self.0 {
            if out.contains(o.as_str()) {
                out = out.replace(o.as_str(), n);
            }
        }
        out
    }
}

fn step_of(e: &Entry) -> String {
    e.step
        .clone()
        .unwrap_or_else(|| crate::dump::step_for(&e.request.method, &e.request.url).to_string())
}

/// Text of the first element with this local name.
fn element_text(xml: &str, local: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == local)
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
}

/// The old CSR (base64) and the DeviceID context item of a WSTEP request.
fn wstep_parts(xml: &str) -> Option<(String, String)> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let csr = doc
        .descendants()
        .find(|n| {
            n.is_element()
                && n.tag_name().name() == "BinarySecurityToken"
                && n.attribute("ValueType")
                    .is_some_and(|v| v.ends_with("#PKCS10"))
        })?
        .text()?
        .trim()
        .to_string();
    let device_id = doc
        .descendants()
        .find(|n| {
            n.is_element()
                && n.tag_name().name() == "ContextItem"
                && n.attribute("Name") == Some("DeviceID")
        })
        .and_then(|n| n.children().find(|c| c.is_element()))
        .and_then(|v| v.text())
        .unwrap_or("")
        .trim()
        .to_string();
    Some((csr, device_id))
}

/// The hash the recorded CSR was signed with (OIW sha1WithRSA or SHA-256).
fn csr_hash(old_b64: &str) -> csr::HashAlg {
    let compact: String = old_b64.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .unwrap_or_default();
    const SHA1_OIW: [u8; 7] = [0x06, 0x05, 0x2B, 0x0E, 0x03, 0x02, 0x1D];
    if der.windows(SHA1_OIW.len()).any(|w| w == SHA1_OIW) {
        csr::HashAlg::Sha1
    } else {
        csr::HashAlg::Sha256
    }
}

fn min_key_bits(policy_xml: Option<&str>) -> usize {
    policy_xml
        .and_then(|x| element_text(x, "minimalKeyLength"))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2048)
        .clamp(2048, 4096)
}

/// A certificate the replayed server issued, its key, and an mTLS client presenting it.
#[derive(Clone)]
struct Identity {
    client: reqwest::Client,
    cert_der: Vec<u8>,
    key: RsaPrivateKey,
}

struct State {
    subs: Subs,
    origins: Origins,
    plain: reqwest::Client,
    tls: fake_windows_client::TlsOptions,
    /// The device's current certificate (from the replayed enrollment or renewal).
    enrolled: Option<Identity>,
    /// The certificate a replayed renewal replaced.
    previous: Option<Identity>,
    pending_key: Option<(RsaPrivateKey, String)>,
    last_policy: Option<String>,
}

/// Replays the capture's requests in order against `target`.
pub(super) async fn replay(har: &Har, target: &Target) -> Result<ReplayReport, ReplayError> {
    if har.log.entries.is_empty() {
        return Err(ReplayError::Empty);
    }
    let tls = target.tls();
    let mut st = State {
        subs: Subs(Vec::new()),
        origins: Origins(vec![target.server_url.clone()]),
        plain: http::client(&tls, None)?,
        tls,
        enrolled: None,
        previous: None,
        pending_key: None,
        last_policy: None,
    };
    let mut report = ReplayReport::default();
    let mut scenario = None;
    for (index, e) in har.log.entries.iter().enumerate() {
        // Each scenario of a capture is its own device: its own enrollment.
        if e.scenario.is_some() && e.scenario != scenario {
            scenario = e.scenario.clone();
            st.enrolled = None;
            st.previous = None;
            st.pending_key = None;
            st.last_policy = None;
        }
        // Every server origin of the capture (a scenario may start its own server)
        // maps to the target.
        let o = origin(&e.request.url);
        if !o.is_empty() && !st.subs.0.iter().any(|(old, _)| *old == o) {
            st.subs.0.insert(
                0,
                (o.clone(), target.server_url.trim_end_matches('/').into()),
            );
            st.origins.0.push(o);
        }
        let r = replay_one(&mut st, target, index, e).await;
        report.results.push(r);
    }
    Ok(report)
}

async fn replay_one(st: &mut State, target: &Target, index: usize, e: &Entry) -> ExchangeResult {
    let step = step_of(e);
    let mut result = ExchangeResult::new(index, &step, e);
    let mut body = e
        .request
        .post_data
        .as_ref()
        .map(|p| p.text.clone())
        .unwrap_or_default();

    // The enroll secret, unless the capture shows a deliberately wrong one.
    if step == "orbit_enroll" && (200..300).contains(&e.response.status) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            if let Some(old) = v["enroll_secret"].as_str() {
                if !target.enroll_secret.is_empty() {
                    st.subs.add(old, &target.enroll_secret);
                }
            }
        }
    }
    body = st.subs.apply(&body);
    let url = st.subs.apply(&e.request.url);

    // A fresh key and CSR for the certificate request; for a renewal, signed (PKCS#7)
    // with the certificate the replayed server issued.
    let mut message_id = None;
    let mut renewal = false;
    if let Some(token) = wstep_token(&body) {
        match fresh_request_token(st, &token) {
            Ok((key, new_token)) => {
                renewal = token.renewal;
                body = body.replace(&token.old_b64, &new_token);
                message_id = element_text(&body, "MessageID");
                st.pending_key = Some((key, message_id.clone().unwrap_or_default()));
            }
            Err(err) => {
                result.error = Some(err);
                return result;
            }
        }
    }

    // The certificate the recorded request presented, mapped to the replay's.
    let client = match e.client_certificate.as_deref() {
        None => st.plain.clone(),
        Some(c) if c.starts_with("foreign") => match foreign_client(&st.tls, &body) {
            Ok(c) => c,
            Err(err) => {
                result.error = Some(err);
                return result;
            }
        },
        Some(c) if c.starts_with("previous") => match &st.previous {
            Some(p) => p.client.clone(),
            None => {
                result.error = Some(
                    "the capture presented a previous certificate, but the replay has renewed none"
                        .into(),
                );
                return result;
            }
        },
        Some(_) => match &st.enrolled {
            Some(i) => i.client.clone(),
            None => {
                result.error = Some(
                    "the capture presented the enrolled certificate, but the replay has no enrollment yet (no successful request_security_token before)".into(),
                );
                return result;
            }
        },
    };

    let method = match reqwest::Method::from_bytes(e.request.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            result.error = Some(format!("invalid method {:?}", e.request.method));
            return result;
        }
    };
    let headers: Vec<(String, String)> = e
        .request
        .headers
        .iter()
        .filter(|h| super::resendable_header(&h.name))
        .map(|h| {
            let value = match (
                &target.admin_token,
                h.name.eq_ignore_ascii_case("authorization"),
            ) {
                (Some(t), true) if h.value.starts_with("Bearer ") => format!("Bearer {t}"),
                _ => st.subs.apply(&h.value),
            };
            (h.name.clone(), value)
        })
        .collect();
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let send_body = (e.request.post_data.is_some() || !body.is_empty()).then_some(body);
    let mut log = Vec::new();
    let sent = http::send(
        &mut log,
        &client,
        "replay",
        method,
        &url,
        &header_refs,
        send_body,
    )
    .await;
    let resp = match sent {
        Ok(r) => r,
        Err(err) => {
            if e.response.status == 0 {
                // Recorded without a response either.
                return result;
            }
            result.error = Some(format!("request failed: {err}"));
            return result;
        }
    };
    result.replayed_status = Some(resp.status);
    if e.response.status == 0 && e.error.is_some() {
        // Nothing recorded to compare with (request-only import).
        return result;
    }
    if resp.status != e.response.status {
        result.differences.push(Difference {
            path: "HTTP status".into(),
            recorded: Some(e.response.status.to_string()),
            replayed: Some(resp.status.to_string()),
        });
    }
    let recorded = canon::flatten(&e.response.content.text);
    let replayed = canon::flatten(&resp.body);
    result
        .differences
        .extend(canon::compare_leaves(&recorded, &replayed, &st.origins));
    for (old, new) in canon::volatile_pairs(&recorded, &replayed, &st.origins) {
        st.subs.add(&old, &new);
    }
    if step == "get_policies" {
        st.last_policy = Some(resp.body.clone());
    }
    if message_id.is_some() && (200..300).contains(&resp.status) {
        if let Some((key, mid)) = st.pending_key.take() {
            match enrolled_identity(&st.tls, &resp.body, &mid, key) {
                Ok(i) => {
                    let replaced = st.enrolled.replace(i);
                    if renewal {
                        st.previous = replaced;
                    }
                }
                Err(err) => {
                    result.error = Some(format!(
                        "the replayed enrollment response is unusable for mTLS: {err}"
                    ))
                }
            }
        }
    }
    result
}

/// The certificate a WSTEP response issued for `key`, with an mTLS client presenting it.
fn enrolled_identity(
    tls: &fake_windows_client::TlsOptions,
    rstrc: &str,
    message_id: &str,
    key: RsaPrivateKey,
) -> Result<Identity, String> {
    let xml = wstep::parse_response(rstrc, message_id).map_err(|e| e.to_string())?;
    let doc = provisioning::parse(&xml).map_err(|e| e.to_string())?;
    let cert_der = issued_certificate(&doc, &key)?;
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| format!("encoding the key: {e}"))?;
    let identity = ClientIdentity {
        cert_der: cert_der.clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec())),
    };
    let client = http::client(tls, Some(&identity)).map_err(|e| e.to_string())?;
    Ok(Identity {
        client,
        cert_der,
        key,
    })
}

/// The client certificate of a provisioning document: verified against its Root for an
/// enrollment; a renewal's document may carry only the new certificate (MS-WSTEP
/// renewal), whose public key must then be `key`'s.
fn issued_certificate(
    doc: &provisioning::ProvisioningDoc,
    key: &RsaPrivateKey,
) -> Result<Vec<u8>, String> {
    if let Ok(verified) = verify::verify(doc, key) {
        return Ok(verified.client_der);
    }
    let spki = csr::spki_der(key).map_err(|e| e.to_string())?;
    doc.client_certs
        .iter()
        .filter_map(|c| {
            let compact: String = c.encoded.chars().filter(|ch| !ch.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .ok()
        })
        .find(|der| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, cert)| cert.public_key().raw == spki.as_slice())
                .unwrap_or(false)
        })
        .ok_or_else(|| "no certificate for the replay's key in the provisioning document".into())
}

/// The request token of a WSTEP request: a PKCS#10 CSR (enrollment) or a PKCS#7
/// SignedData around one (renewal, MS-WSTEP §3.1.4.1.1).
struct RequestToken {
    old_b64: String,
    device_id: String,
    renewal: bool,
}

fn wstep_token(xml: &str) -> Option<RequestToken> {
    if let Some((old_b64, device_id)) = wstep_parts(xml) {
        return Some(RequestToken {
            old_b64,
            device_id,
            renewal: false,
        });
    }
    let doc = roxmltree::Document::parse(xml).ok()?;
    let p7 = doc.descendants().find(|n| {
        n.is_element()
            && n.tag_name().name() == "BinarySecurityToken"
            && n.attribute("ValueType")
                .is_some_and(|v| v.ends_with("#PKCS7"))
    })?;
    let old_b64 = p7.text()?.trim().to_string();
    // The DeviceID is the CSR subject's; a renewal carries it in the signed CSR.
    let compact: String = old_b64.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()?;
    let inner = fake_windows_client::cms::parse(&der).ok()?.econtent;
    use x509_parser::prelude::FromDer;
    let device_id = x509_parser::certification_request::X509CertificationRequest::from_der(&inner)
        .ok()
        .and_then(|(_, req)| {
            req.certification_request_info
                .subject
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string))
                .next()
        })
        .map(|cn| {
            let cn = cn.trim_end_matches('\0');
            cn.rsplit('!').next().unwrap_or(cn).to_string()
        })
        .unwrap_or_default();
    Some(RequestToken {
        old_b64,
        device_id,
        renewal: true,
    })
}

/// A new key and the base64 token to send instead of the recorded one.
fn fresh_request_token(
    st: &State,
    token: &RequestToken,
) -> Result<(RsaPrivateKey, String), String> {
    let bits = min_key_bits(st.last_policy.as_deref());
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), bits)
        .map_err(|err| format!("RSA key generation: {err}"))?;
    let hash = if token.renewal {
        csr::HashAlg::Sha256
    } else {
        csr_hash(&token.old_b64)
    };
    let der = csr::build(
        &key,
        &csr::windows_subject_cn(&token.device_id),
        &token.device_id,
        hash,
    )
    .map_err(|err| format!("building the CSR: {err}"))?;
    let der = if token.renewal {
        let current = st
            .enrolled
            .as_ref()
            .ok_or("the capture renews a certificate, but the replay has no enrollment yet")?;
        fake_windows_client::cms::sign(&der, &current.cert_der, &current.key)
            .map_err(|err| format!("signing the renewal: {err}"))?
    } else {
        der
    };
    Ok((key, base64::engine::general_purpose::STANDARD.encode(der)))
}

/// An mTLS client with a certificate from a CA the server never saw.
fn foreign_client(
    tls: &fake_windows_client::TlsOptions,
    syncml: &str,
) -> Result<reqwest::Client, String> {
    let device_id = roxmltree::Document::parse(syncml)
        .ok()
        .and_then(|d| {
            d.descendants()
                .find(|n| n.is_element() && n.tag_name().name() == "SyncHdr")
                .and_then(|h| h.children().find(|c| c.tag_name().name() == "Source"))
                .and_then(|s| s.children().find(|c| c.tag_name().name() == "LocURI"))
                .and_then(|l| l.text())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let (cert_pem, key_pem) =
        fake_windows_client::foreign_identity(&device_id).map_err(|e| e.to_string())?;
    use rustls_pki_types::pem::PemObject;
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| format!("foreign certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("foreign key: {e}"))?;
    let identity = ClientIdentity {
        cert_der: cert.to_vec(),
        key,
    };
    http::client(tls, Some(&identity)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_substitutions() {
        assert_eq!(origin("https://h:8443/a?b"), "https://h:8443");
        let mut s = Subs(Vec::new());
        s.add("abc", "xyz");
        assert_eq!(s.apply("abc YWJj"), "xyz eHl6");
    }
}
