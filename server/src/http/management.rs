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

use super::respond::{refuse, syncml_response};
use crate::error::ServerError;
use crate::model::EnrollmentState;
use crate::model::ReplayStamp;
use crate::paths::MANAGEMENT_PATH;
use crate::protocol::management::{check_header, not_active, Answered, Exchange, Read, Refusal};
use crate::protocol::reassembly::{self, sends_chunks, Snapshot};
use crate::protocol::replay;
use crate::state::{AppState, PeerCertificate};
use crate::store::session::Recorded;
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
    let msg = crate::soap::parse_xml(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
        .and_then(|doc| {
            syncml::parse_client_message(&doc)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid SyncML: {e}")))
        });
    // A well-formed message that sends no large-object chunk (nothing to read before it
    // is stored) has its certificate's enrollment checked in its own transaction: one
    // trip to the store. Any other is checked first, as the refusals come in this
    // order: certificate, then body, then header.
    if let Ok(msg) = &msg {
        if check_header(&msg.hdr, &msg.hdr.source).is_ok() && !sends_chunks(msg) {
            let stamp = replay::stamp(&msg.hdr.source, &msg.hdr.session_id, &msg.hdr.msg_id, &body);
            return answer(&state, msg, stamp, Cert::Unchecked(serial.to_string()), "").await;
        }
    }
    let identity = match state.store.cert_identity(serial).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "management: storage failure");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "storage failure");
        }
    };
    let Some(identity) = identity.filter(|i| i.enrollment_state.is_active()) else {
        return refused(not_active());
    };
    let msg = match msg {
        Ok(m) => m,
        Err((status, why)) => return refuse(status, &why),
    };
    if let Err(r) = check_header(&msg.hdr, &identity.device_id) {
        return refused(r);
    }
    let stamp = replay::stamp(
        &identity.device_id,
        &msg.hdr.session_id,
        &msg.hdr.msg_id,
        &body,
    );
    answer(&state, &msg, stamp, Cert::Checked(identity.current), "").await
}

/// The HTTP answer to a refusal.
fn refused(r: Refusal) -> Response {
    match r {
        Refusal::Forbidden(why) => refuse(StatusCode::FORBIDDEN, why),
        Refusal::BadRequest(why) => refuse(StatusCode::BAD_REQUEST, why),
    }
}

/// The client certificate of a message: checked already (whether it is the device's
/// current one), or its serial, to check in the message's transaction.
pub(super) enum Cert {
    Checked(bool),
    Unchecked(String),
}

/// Processes an authenticated device's message and answers it (`chal`: the SyncHdr
/// Status's digest challenge, or empty), recording the answer for a resend. A message
/// its session's replay record shows answered gets that answer again (on whichever
/// replica it reaches): it is not processed twice.
pub(super) async fn answer(
    state: &AppState,
    msg: &syncml::ClientMessage,
    stamp: ReplayStamp,
    cert: Cert,
    chal: &str,
) -> Response {
    let device_id = stamp.device_id.clone();
    // A message that could not be stored is answered 500 and not recorded: the device
    // sends the package again instead of dropping its answers.
    match process(state, msg, stamp, cert, chal).await {
        Ok(Recorded::Stored(xml)) => {
            metrics::counter!(crate::telemetry::OMADM_MESSAGES, "outcome" => "answered")
                .increment(1);
            // OMA-DM 1.2 (DM protocol §8.1): a session's first message has MsgID 1.
            if msg.hdr.msg_id == "1" {
                metrics::counter!(crate::telemetry::OMADM_SESSIONS).increment(1);
            }
            syncml_response(axum::body::Bytes::from(xml))
        }
        Ok(Recorded::Repeat(xml)) => {
            metrics::counter!(crate::telemetry::OMADM_MESSAGES, "outcome" => "replayed")
                .increment(1);
            tracing::info!(%device_id, msg = %msg.hdr.msg_id, "resent message answered from the session record");
            syncml_response(axum::body::Bytes::from(xml))
        }
        Ok(Recorded::Conflict) => refuse(
            StatusCode::BAD_REQUEST,
            "MsgID already used in this session for a different message",
        ),
        // Read twice and still racing another replica's chunk changes: sent again, it
        // is read afresh.
        Ok(Recorded::Unread) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "large objects changed while the message was read; send it again",
        ),
        Ok(Recorded::Refused(r)) => refused(r),
        Err(e) => {
            metrics::counter!(crate::telemetry::OMADM_MESSAGES, "outcome" => "failed").increment(1);
            tracing::error!(%device_id, error = %e, "could not store the device's message");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage failure: the message was not stored; send it again",
            )
        }
    }
}

/// Reads the message's commands (against its device's large objects when `snapshot`)
/// and stores what it found with the answer, in one transaction.
async fn record(
    state: &AppState,
    msg: &syncml::ClientMessage,
    stamp: &ReplayStamp,
    cert: &Cert,
    chal: &str,
    snapshot: bool,
) -> Result<Recorded<(Answered, bool)>, ServerError> {
    let device_id = stamp.device_id.as_str();
    let keys = reassembly::keys_to_read(msg, device_id).unwrap_or_default();
    let (chunks, unread) = if snapshot {
        (
            state.store.chunk_snapshot(device_id, keys).await?,
            Vec::new(),
        )
    } else {
        (Snapshot::default(), keys)
    };
    let mut exchange = Exchange::with_chal(
        msg,
        &state.url(MANAGEMENT_PATH),
        state.config.max_msg_size,
        chal,
    );
    for cmd in &msg.commands {
        if let Read::NeedsSentCommand(command_uuid) = exchange.read(cmd, device_id, &chunks, None) {
            let sent = state.store.sent_command(device_id, command_uuid).await?;
            exchange.read(cmd, device_id, &chunks, Some(sent.as_ref()));
        }
    }
    // An unchecked certificate's currency is set where it is checked, in the store.
    let (current_cert, cert_serial) = match cert {
        Cert::Checked(current) => (*current, None),
        Cert::Unchecked(serial) => (false, Some(serial.clone())),
    };
    let work = exchange.work(
        device_id,
        current_cert,
        i64::from(state.config.redeliver_after_secs),
    );
    let delivery = work.delivery;
    let work = commit_after_answer(state, work);
    let ops = exchange.take_chunk_ops();
    let reply = exchange.into_reply();
    // Nothing of the message is stored when this fails (one transaction), its replay
    // record and large-object changes included.
    crate::crash::point("management.before_store");
    let recorded = state
        .store
        .record_session_message(
            work,
            (ops, unread),
            stamp.clone(),
            cert_serial,
            move |outcome| {
                let foreign = outcome.answered.iter().any(Option::is_none);
                let answered = reply.answer(delivery, outcome);
                let xml = match &answered {
                    Answered::Done { xml, .. } => Some(xml.clone()),
                    Answered::AdvanceProfiles(..) => None,
                };
                ((answered, foreign), xml)
            },
        )
        .await?;
    crate::crash::point("management.after_store");
    Ok(recorded)
}

/// Processes a message from an authenticated device and returns the server's answer;
/// an error when the device's Status and Results could not be stored (none of them is).
async fn process(
    state: &AppState,
    msg: &syncml::ClientMessage,
    stamp: ReplayStamp,
    cert: Cert,
    chal: &str,
) -> Result<Recorded<String>, ServerError> {
    let device_id = stamp.device_id.as_str();
    // Large objects are read first only for a message sending chunks; plain Results
    // are checked to complete none in the message's transaction (no extra round trip),
    // and read again against the objects in the rare case one does.
    let mut recorded = record(state, msg, &stamp, &cert, chal, sends_chunks(msg)).await?;
    if let Recorded::Unread = recorded {
        recorded = record(state, msg, &stamp, &cert, chal, true).await?;
    }
    let (answered, foreign) = match recorded {
        Recorded::Stored(a) => a,
        Recorded::Repeat(xml) => return Ok(Recorded::Repeat(xml)),
        Recorded::Conflict => return Ok(Recorded::Conflict),
        Recorded::Unread => return Ok(Recorded::Unread),
        Recorded::Refused(r) => return Ok(Recorded::Refused(r)),
    };
    if foreign {
        tracing::debug!(%device_id, "response to a command not from the queue");
    }
    let xml = match answered {
        Answered::Done { xml, unenrolled } => {
            if unenrolled {
                tracing::info!(%device_id, "device unenrolled");
                if let Err(e) = state
                    .store
                    .set_enrollment_state(device_id, EnrollmentState::Unenrolled)
                    .await
                {
                    tracing::error!(error = %e, "could not record unenrollment");
                }
            }
            xml
        }
        Answered::AdvanceProfiles(reply, delivery) => {
            if let Err(e) = crate::service::profiles::advance(&state.store, device_id).await {
                tracing::error!(error = %e, "could not advance profile assignments");
            }
            let commands = state
                .store
                .deliver(device_id, delivery)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "management: could not claim commands");
                    Vec::new()
                });
            tracing::debug!(%device_id, session = %msg.hdr.session_id, msg = %msg.hdr.msg_id, commands = commands.len(), "management message");
            let xml = reply.finish_with(&commands);
            // Without it, a resend finds the message stored but unanswered and gets
            // an answer built again (its effects are not stored twice).
            if let Err(e) = state.store.record_answer(stamp, xml.clone()).await {
                tracing::error!(error = %e, "could not record the answer");
            }
            xml
        }
    };
    Ok(Recorded::Stored(xml))
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
