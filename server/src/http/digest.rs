//! Management messages authenticated by OMA-DM MD5 digest instead of a client
//! certificate (`--management-auth digest | mtls-or-digest`; OMA-DM 1.2 Security,
//! `syncml:auth-md5`). The device is the SyncHdr Source, proven by the digest of the
//! credentials provisioned for that DeviceID; the decisions are
//! [`crate::protocol::digest`], the nonces [`crate::service::digest`].

use axum::http::StatusCode;
use axum::response::Response;

use super::management::{answer, Cert};
use super::respond::{refuse, syncml_response};
use crate::codec::digest::{chal_xml, parse_cred};
use crate::paths::MANAGEMENT_PATH;
use crate::protocol::digest::challenge;
use crate::protocol::management::{check_header, Refusal};
use crate::protocol::replay::{self, Replay};
use crate::service::digest::{authenticate, Outcome};
use crate::state::AppState;
use crate::syncml;

/// Handles one management message of a connection without a client certificate.
pub async fn session(state: &AppState, body: &str) -> Response {
    let doc = match crate::soap::parse_xml(body) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e),
    };
    let msg = match syncml::parse_client_message(&doc) {
        Ok(m) => m,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("invalid SyncML: {e}")),
    };
    let device_id = msg.hdr.source.clone();
    match check_header(&msg.hdr, &device_id) {
        Ok(()) => {}
        Err(Refusal::Forbidden(why)) => return refuse(StatusCode::FORBIDDEN, why),
        Err(Refusal::BadRequest(why)) => return refuse(StatusCode::BAD_REQUEST, why),
    }
    // A resend of a message already answered (same session, MsgID and bytes) gets that
    // answer again: its nonce is used up, and the answer carries the next one.
    let stamp = replay::stamp(&device_id, &msg.hdr.session_id, &msg.hdr.msg_id, body);
    let record = match state.store.replay_record(&stamp).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "management: storage failure");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "storage failure");
        }
    };
    match replay::judge(record, &stamp) {
        Replay::Repeat(xml) => {
            tracing::info!(%device_id, msg = %msg.hdr.msg_id, "resent message answered from the session record");
            return syncml_response(axum::body::Bytes::from(xml));
        }
        Replay::Conflict => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "MsgID already used in this session for a different message",
            )
        }
        Replay::New | Replay::Unanswered => {}
    }
    let cred = parse_cred(&doc);
    let outcome = match authenticate(&state.store, &device_id, cred.as_ref()).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "management: storage failure");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "storage failure");
        }
    };
    match outcome {
        Outcome::Accepted { next_nonce } => {
            answer(
                state,
                &msg,
                stamp,
                Cert::Checked(false),
                &chal_xml(&next_nonce),
            )
            .await
        }
        Outcome::Challenge { code, next_nonce } => {
            tracing::info!(%device_id, code, "management message challenged (digest)");
            let xml = challenge(
                &msg,
                &state.url(MANAGEMENT_PATH),
                state.config.max_msg_size,
                code,
                &next_nonce,
            );
            syncml_response(axum::body::Bytes::from(xml))
        }
    }
}
