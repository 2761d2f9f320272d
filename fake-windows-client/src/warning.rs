//! Deviations from the protocol documents that Windows tolerates.
//!
//! Every check the device makes on a server response has a level (see
//! `docs/conformance.md`): a **fail** check refuses the response (a [`ClientError`]), as
//! Windows does; a **warn** check records a [`Warning`] and carries on, because Windows is
//! known (or, absent evidence of a refusal, assumed) to accept the deviation. Parsers take a
//! `&mut Vec<Warning>`; [`crate::Device`] collects them until [`crate::Device::take_warnings`].
//!
//! [`ClientError`]: crate::ClientError

use serde::Serialize;

/// A tolerated deviation in a server response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The check's identifier, as listed in [`CHECKS`] and `docs/conformance.md`.
    pub check: &'static str,
    /// What the server sent and what the documents ask for.
    pub detail: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

/// Records a warning for `check`.
pub(crate) fn warn(out: &mut Vec<Warning>, check: &'static str, detail: impl Into<String>) {
    out.push(Warning {
        check,
        detail: detail.into(),
    });
}

/// How a check reacts to a deviation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    /// The response is refused, as Windows refuses it.
    Fail,
    /// A [`Warning`] is recorded and the flow goes on.
    Warn,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Fail => "fail",
            Level::Warn => "warn",
        }
    }
}

/// Every check on server responses and its level (the table of `docs/conformance.md`).
pub const CHECKS: &[(&str, Level)] = &[
    // HTTP and SOAP envelope (soap.rs, enroll.rs, renew.rs).
    ("http.discovery_probe_status", Level::Fail),
    ("http.throttled", Level::Fail),
    ("http.status", Level::Fail),
    ("soap.fault", Level::Fail),
    ("soap.content_type", Level::Warn),
    ("soap.envelope_root", Level::Fail),
    ("soap.envelope_namespace", Level::Fail),
    ("soap.header", Level::Fail),
    ("soap.action", Level::Fail),
    ("soap.relates_to_missing", Level::Fail),
    ("soap.relates_to_mismatch", Level::Warn),
    ("soap.body", Level::Fail),
    // MS-MDE2 discovery (discovery.rs).
    ("discovery.response_element", Level::Fail),
    ("discovery.auth_policy", Level::Fail),
    ("discovery.enrollment_service_url", Level::Fail),
    ("discovery.enrollment_policy_service_url", Level::Warn),
    ("discovery.https_url", Level::Fail),
    ("discovery.authentication_service_url", Level::Fail),
    // MS-XCEP (xcep.rs).
    ("xcep.policy_element", Level::Fail),
    ("xcep.policy_schema", Level::Fail),
    ("xcep.minimal_key_length", Level::Fail),
    ("xcep.hash_algorithm", Level::Fail),
    ("xcep.validity_period", Level::Fail),
    // MS-WSTEP (wstep.rs).
    ("wstep.chunked_response", Level::Fail),
    ("wstep.security_timestamp", Level::Warn),
    ("wstep.response_element", Level::Fail),
    ("wstep.token_type", Level::Fail),
    ("wstep.value_type", Level::Fail),
    ("wstep.encoding_type", Level::Fail),
    ("wstep.token_content", Level::Fail),
    // Provisioning document (provisioning.rs, verify.rs, apply.rs).
    ("provisioning.root_element", Level::Fail),
    ("provisioning.version", Level::Warn),
    ("provisioning.root_cert_missing", Level::Warn),
    ("provisioning.cert_encoding", Level::Fail),
    ("provisioning.cert_thumbprint", Level::Fail),
    ("provisioning.client_cert_count", Level::Fail),
    ("provisioning.client_key", Level::Fail),
    ("provisioning.client_issuer", Level::Warn),
    ("provisioning.client_eku", Level::Warn),
    ("provisioning.intermediate_count", Level::Warn),
    ("provisioning.private_key_container", Level::Fail),
    ("provisioning.application", Level::Fail),
    ("provisioning.appid", Level::Fail),
    ("provisioning.provider_id", Level::Fail),
    ("provisioning.addr", Level::Fail),
    ("provisioning.cert_search_criteria_missing", Level::Warn),
    ("provisioning.cert_search_criteria_match", Level::Fail),
    ("provisioning.dmclient_provider_missing", Level::Warn),
    ("provisioning.dmclient_provider_match", Level::Fail),
    ("provisioning.renewal_provider_id", Level::Fail),
    // OMA-DM / SyncML (syncml.rs, session.rs, manage.rs, unenroll.rs).
    ("syncml.content_type", Level::Warn),
    ("syncml.root", Level::Fail),
    ("syncml.namespace", Level::Warn),
    ("syncml.header_body", Level::Fail),
    ("syncml.version", Level::Fail),
    ("syncml.session_id", Level::Warn),
    ("syncml.msg_id", Level::Fail),
    ("syncml.synchdr_status_missing", Level::Fail),
    ("syncml.synchdr_status_order", Level::Warn),
    ("syncml.synchdr_status_refs", Level::Warn),
    ("syncml.synchdr_status_code", Level::Fail),
    ("syncml.command_status_missing", Level::Warn),
    ("syncml.chunk_status", Level::Fail),
    ("syncml.empty_body", Level::Fail),
    ("syncml.max_msg_size", Level::Fail),
    ("syncml.round_trips", Level::Fail),
    // OMA-DM digest authentication (digest.rs, session/challenge.rs).
    ("syncml.next_nonce", Level::Warn),
    ("syncml.digest_refused", Level::Fail),
    ("syncml.challenge_nonce", Level::Fail),
];

/// The level of `check`, if it is a known check.
pub fn level_of(check: &str) -> Option<Level> {
    CHECKS.iter().find(|(c, _)| *c == check).map(|(_, l)| *l)
}
