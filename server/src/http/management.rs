//! `POST /api/mdm/microsoft/management`: OMA-DM sessions over mTLS (MS-MDM §3.1, OMA-DM 1.2).
//!
//! Each request is authenticated by the client certificate presented in the TLS
//! handshake: it must be issued by the identity CA, valid now, belong to an active
//! enrollment, and that enrollment's DeviceID must be the SyncHdr Source. What the
//! message means and what to answer is [`crate::protocol::management`]; this handler
//! parses, loads, stores and answers. With `--management-auth` allowing digest, a
//! connection without a certificate (any, under `digest`) is handled by
//! [`super::digest`] instead.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use sha2::{Digest, Sha256};

use super::respond::{refuse, syncml_response};
use crate::error::ServerError;
use crate::model::EnrollmentState;
use crate::paths::MANAGEMENT_PATH;
use crate::protocol::management::{check_header, Exchange, Next, Read, Refusal};
use crate::sessions::{Replay, SessionKey};
use crate::state::{AppState, PeerCertificate};
use crate::syncml;

/// Handles one message of a management session.
pub async fn session(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<PeerCertificate>,
    body: String,
) -> Response {
    if state
        .config
        .management_auth
        .uses_digest(peer.der().is_some())
    {
        return super::digest::session(&state, &body).await;
    }
    let serial = match peer.verify(&state.ca) {
        None => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "a client certificate issued at enrollment is required",
            )
        }
        Some(Err(e)) => return refuse(StatusCode::FORBIDDEN, &e.to_string()),
        Some(Ok(c)) => c.serial.as_str(),
    };
    let identity = match state.store.cert_identity(serial).await {
        Ok(Some(i)) if i.enrollment_state.is_active() => i,
        Ok(_) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "client certificate does not belong to an active enrollment",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "management: storage failure");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "storage failure");
        }
    };
    let doc = match crate::soap::parse_xml(&body) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e),
    };
    let msg = match syncml::parse_client_message(&doc) {
        Ok(m) => m,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("invalid SyncML: {e}")),
    };
    match check_header(&msg.hdr, &identity.device_id) {
        Ok(()) => {}
        Err(Refusal::Forbidden(why)) => return refuse(StatusCode::FORBIDDEN, why),
        Err(Refusal::BadRequest(why)) => return refuse(StatusCode::BAD_REQUEST, why),
    }
    let device_id = &identity.device_id;
    let replay = match check_replay(&state, &msg, device_id, &body) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    answer(&state, &msg, replay, identity.current, "").await
}

/// A message's place in its session's replay record (see [`check_replay`]).
pub(super) struct ReplayKey {
    key: SessionKey,
    digest: [u8; 32],
}

/// A message resent after a dropped connection gets the answer it got the first time
/// (the Err); it is not processed twice.
pub(super) fn check_replay(
    state: &AppState,
    msg: &syncml::ClientMessage,
    device_id: &str,
    body: &str,
) -> Result<ReplayKey, Response> {
    let key = SessionKey {
        device_id: device_id.to_string(),
        session_id: msg.hdr.session_id.clone(),
    };
    let digest: [u8; 32] = Sha256::digest(body.as_bytes()).into();
    match state.sessions.check_replay(&key, &msg.hdr.msg_id, &digest) {
        Replay::New => Ok(ReplayKey { key, digest }),
        Replay::Repeat(xml) => {
            metrics::counter!(crate::telemetry::OMADM_MESSAGES, "outcome" => "replayed")
                .increment(1);
            tracing::info!(%device_id, msg = %msg.hdr.msg_id, "resent message answered from the session record");
            Err(syncml_response(xml))
        }
        Replay::Conflict => Err(refuse(
            StatusCode::BAD_REQUEST,
            "MsgID already used in this session for a different message",
        )),
    }
}

/// Processes an authenticated device's message and answers it (`chal`: the SyncHdr
/// Status's digest challenge, or empty), remembering the answer for a resend.
pub(super) async fn answer(
    state: &AppState,
    msg: &syncml::ClientMessage,
    replay: ReplayKey,
    current_cert: bool,
    chal: &str,
) -> Response {
    let device_id = &replay.key.device_id;
    // A message that could not be stored is answered 500 and not remembered: the device
    // sends the package again instead of dropping its answers.
    let xml = match process(state, msg, device_id, current_cert, chal).await {
        Ok(xml) => axum::body::Bytes::from(xml),
        Err(e) => {
            metrics::counter!(crate::telemetry::OMADM_MESSAGES, "outcome" => "failed").increment(1);
            tracing::error!(%device_id, error = %e, "could not store the device's message");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage failure: the message was not stored; send it again",
            );
        }
    };
    metrics::counter!(crate::telemetry::OMADM_MESSAGES, "outcome" => "answered").increment(1);
    // OMA-DM 1.2 (DM protocol §8.1): a session's first message has MsgID 1.
    if msg.hdr.msg_id == "1" {
        metrics::counter!(crate::telemetry::OMADM_SESSIONS).increment(1);
    }
    state
        .sessions
        .remember(replay.key, &msg.hdr.msg_id, replay.digest, xml.clone());
    syncml_response(xml)
}

/// Processes a message from an authenticated device and returns the server's answer;
/// an error when the device's Status and Results could not be stored (none of them is).
async fn process(
    state: &AppState,
    msg: &syncml::ClientMessage,
    device_id: &str,
    current_cert: bool,
    chal: &str,
) -> Result<String, ServerError> {
    let chunks = &state.sessions.chunks;
    let mut exchange = Exchange::with_chal(
        msg,
        &state.url(MANAGEMENT_PATH),
        state.config.max_msg_size,
        chal,
    );
    for cmd in &msg.commands {
        if let Read::NeedsSentCommand(command_uuid) = exchange.read(cmd, device_id, chunks, None) {
            let sent = state.store.sent_command(device_id, command_uuid).await?;
            exchange.read(cmd, device_id, chunks, Some(sent.as_ref()));
        }
    }
    let work = exchange.work(
        device_id,
        current_cert,
        i64::from(state.config.redeliver_after_secs),
    );
    let delivery = work.delivery;
    let work = commit_after_answer(state, work);
    // Nothing of the message is stored when this fails (one transaction).
    crate::crash::point("management.before_store");
    let outcome = state.store.record_message(work).await?;
    crate::crash::point("management.after_store");
    chunks.apply(exchange.take_chunk_ops());
    if outcome.answered.iter().any(Option::is_none) {
        tracing::debug!(%device_id, "response to a command not from the queue");
    }
    let commands = match exchange.next(delivery, outcome) {
        Next::Unenrolled => {
            tracing::info!(%device_id, "device unenrolled");
            if let Err(e) = state
                .store
                .set_enrollment_state(device_id, EnrollmentState::Unenrolled)
                .await
            {
                tracing::error!(error = %e, "could not record unenrollment");
            }
            return Ok(exchange.finish());
        }
        Next::AskForMore => return Ok(exchange.ask_for_more()),
        Next::Send(commands) => commands,
        Next::AdvanceProfiles(delivery) => {
            if let Err(e) = crate::service::profiles::advance(&state.store, device_id).await {
                tracing::error!(error = %e, "could not advance profile assignments");
            }
            state
                .store
                .deliver(device_id, delivery)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "management: could not claim commands");
                    Vec::new()
                })
        }
    };
    tracing::debug!(%device_id, session = %msg.hdr.session_id, msg = %msg.hdr.msg_id, commands = commands.len(), "management message");
    Ok(exchange.finish_with(&commands))
}

/// The test-only deliberate bug `commit_after_answer` ([`crate::crash::FAULTS`]): the
/// message's Statuses and Results are taken out of `work` and stored 3 s later in the
/// background, after the answer went out. Without the fault, `work` is returned as is.
fn commit_after_answer(
    state: &AppState,
    mut work: crate::model::MessageWork,
) -> crate::model::MessageWork {
    if work.responses.is_empty() || !crate::crash::fault("commit_after_answer") {
        return work;
    }
    let later = crate::model::MessageWork {
        first_in_session: false,
        delivery: None,
        responses: std::mem::take(&mut work.responses),
        ..work.clone()
    };
    let store = state.store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let _ = store.record_message(later).await;
    });
    work
}
