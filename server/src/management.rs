//! `POST /api/mdm/microsoft/management`: OMA-DM sessions over mTLS (MS-MDM §3.1, OMA-DM 1.2).
//!
//! Each request is authenticated by the client certificate presented in the TLS
//! handshake: it must be issued by the identity CA, valid now, belong to an active
//! enrollment, and that enrollment's DeviceID must be the SyncHdr Source.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use sha2::{Digest, Sha256};

use crate::app::{AppState, PeerCertificate};
use crate::error::ServerError;
use crate::message_store::{Delivery, MessageWork, ResponseRecord};
use crate::reassembly::{self, ChunkOp, Pending};
use crate::sessions::Replay;
use crate::syncml::{self, ServerMessage, CONTENT_TYPE};

pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    tracing::info!(%status, message, "management request refused");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Status code for a client command the server does not act on further.
fn status_for(cmd: &syncml::ClientCommand) -> u16 {
    match cmd.verb.as_str() {
        "Alert" | "Replace" | "Results" => 200,
        // Clients do not send other commands to a server in OMA-DM 1.2 DM sessions.
        _ => 406,
    }
}

/// Handles one message of a management session.
pub async fn session(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<PeerCertificate>,
    body: String,
) -> Response {
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
        Ok(Some(i))
            if i.enrollment_state == "enrolled" || i.enrollment_state == "unenroll_pending" =>
        {
            i
        }
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
    if msg.hdr.source != identity.device_id {
        return refuse(
            StatusCode::FORBIDDEN,
            "SyncHdr Source LocURI does not match the DeviceID the client certificate was issued to",
        );
    }
    if msg.hdr.ver_proto != "DM/1.2" || msg.hdr.ver_dtd != "1.2" {
        return refuse(
            StatusCode::BAD_REQUEST,
            "only SyncML 1.2 / DM/1.2 is supported",
        );
    }
    let device_id = &identity.device_id;
    // A message resent after a dropped connection gets the answer it got the first
    // time; it is not processed twice.
    let session_key = (device_id.clone(), msg.hdr.session_id.clone());
    let digest: [u8; 32] = Sha256::digest(body.as_bytes()).into();
    match state
        .sessions
        .check_replay(&session_key, &msg.hdr.msg_id, &digest)
    {
        Replay::New => {}
        Replay::Repeat(xml) => {
            tracing::info!(%device_id, msg = %msg.hdr.msg_id, "resent message answered from the session record");
            return syncml_response(xml);
        }
        Replay::Conflict => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "MsgID already used in this session for a different message",
            )
        }
    }
    // A message that could not be stored is answered 500 and not remembered: the device
    // sends the package again instead of dropping its answers.
    let xml = match process(&state, &msg, device_id, identity.current).await {
        Ok(xml) => axum::body::Bytes::from(xml),
        Err(e) => {
            tracing::error!(%device_id, error = %e, "could not store the device's message");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage failure: the message was not stored; send it again",
            );
        }
    };
    state
        .sessions
        .remember(session_key, &msg.hdr.msg_id, digest, xml.clone());
    syncml_response(xml)
}

/// Processes a message from an authenticated device and returns the server's answer;
/// an error when the device's Status and Results could not be stored (none of them is).
async fn process(
    state: &AppState,
    msg: &syncml::ClientMessage,
    device_id: &str,
    current_cert: bool,
) -> Result<String, ServerError> {
    let mut reply = ServerMessage::reply_to(
        &msg.hdr,
        &state.url(crate::app::MANAGEMENT_PATH),
        state.config.max_msg_size,
    );
    reply.status(&msg.hdr.msg_id, "0", "SyncHdr", 200);
    let mut unenrolled = false;
    // Everything the device answered in this message, to store.
    let mut responses: Vec<ResponseRecord> = Vec::new();
    // Large-object changes, applied once the message is stored.
    let mut chunk_ops: Vec<ChunkOp> = Vec::new();
    for cmd in &msg.commands {
        match cmd.verb.as_str() {
            // Status answers one of our commands; it is not itself acknowledged.
            "Status" => {
                if let Some(cmd_ref) = cmd.cmd_ref.as_deref().filter(|r| *r != "0") {
                    responses.push(response_record(cmd_ref, cmd));
                }
            }
            "Alert" if is_unenroll_alert(cmd) => {
                unenrolled = true;
                reply.status(&msg.hdr.msg_id, &cmd.cmd_id, &cmd.verb, 200);
            }
            "Results" => {
                let (code, store) = results(state, device_id, cmd, &mut chunk_ops).await?;
                if let (Some(cmd_ref), Some(whole)) = (cmd.cmd_ref.as_deref(), store) {
                    responses.push(response_record(cmd_ref, &whole));
                }
                reply.status(&msg.hdr.msg_id, &cmd.cmd_id, &cmd.verb, code);
            }
            _ => reply.status(&msg.hdr.msg_id, &cmd.cmd_id, &cmd.verb, status_for(cmd)),
        }
    }
    // Commands go out once the device's package is complete (Final), never to a device
    // that is leaving; MaxMsgSize is honoured, commands that do not fit wait.
    let delivery = (msg.is_final && !unenrolled).then(|| Delivery {
        used: reply.len(),
        limit: msg.hdr.max_msg_size.unwrap_or(usize::MAX),
        redeliver_after_secs: i64::from(state.config.redeliver_after_secs),
    });
    let work = MessageWork {
        device_id: device_id.to_string(),
        session_id: msg.hdr.session_id.clone(),
        // Once per session (its first message): check-in time and certificate retirement.
        first_in_session: msg.hdr.msg_id == "1",
        current_cert,
        responses,
        delivery,
    };
    // Nothing of the message is stored when this fails (one transaction).
    let outcome = state.store.record_message(work).await?;
    state.sessions.chunks.apply(chunk_ops);
    if outcome.answered.iter().any(Option::is_none) {
        tracing::debug!(%device_id, "response to a command not from the queue");
    }

    if unenrolled || outcome.unenroll_acknowledged {
        tracing::info!(%device_id, "device unenrolled");
        if let Err(e) = state
            .store
            .set_enrollment_state(device_id, "unenrolled")
            .await
        {
            tracing::error!(error = %e, "could not record unenrollment");
        }
        return Ok(reply.finish());
    }

    // A message without Final is one of several in the device's package: ask for the
    // next one (Alert 1222) and hold new commands until the package is complete.
    let Some(delivery) = delivery else {
        reply.alert(1222);
        return Ok(reply.finish());
    };

    let commands = match outcome.commands {
        Some(c) => c,
        // Profiles in progress move first (they may queue read-back Gets for this reply).
        None => {
            if let Err(e) = crate::profiles::advance(&state.store, device_id).await {
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
    for c in &commands {
        reply.command(&c.command_uuid, &c.body_xml);
    }
    tracing::debug!(%device_id, session = %msg.hdr.session_id, msg = %msg.hdr.msg_id, commands = commands.len(), "management message");
    Ok(reply.finish())
}

fn response_record(cmd_ref: &str, cmd: &syncml::ClientCommand) -> ResponseRecord {
    ResponseRecord {
        cmd_ref: cmd_ref.to_string(),
        msg_ref: cmd.msg_ref.clone().unwrap_or_default(),
        kind: cmd.verb.clone(),
        status_code: if cmd.verb == "Status" {
            cmd.data.clone()
        } else {
            None
        },
        body_xml: cmd.xml.clone(),
    }
}

fn syncml_response(xml: axum::body::Bytes) -> Response {
    let mut resp = (StatusCode::OK, xml).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

/// Alert 1226 is OMA-DM's generic alert, which Windows sends "when the user triggers an
/// MDM unenrollment action from the device or when a CSP finishes some asynchronous
/// actions" (Microsoft Learn, OMA DM protocol support, DM protocol commands), so only the
/// unenrollment alert unenrolls:
/// - Type `com.microsoft:mdm.unenrollment.userrequest`, the only unenrollment type
///   Microsoft documents (Disconnecting from the management infrastructure, user-initiated
///   disconnection; vectors `omadm-alert-1226-unenroll.xml`,
///   `omadm-pkg1-client-unenroll-1226.xml`);
/// - the same alert with an empty Meta, which Windows 10 1803 to 2004 send
///   (MicrosoftDocs/windows-itpro-docs issues 8376 and 8849; protocol-reference §7): no
///   Type, no Source, Item Data `1`. Alerts of asynchronous CSP work name their Type and
///   the Source node, so they never match this.
fn is_unenroll_alert(cmd: &syncml::ClientCommand) -> bool {
    const UNENROLL_TYPE: &str = "com.microsoft:mdm.unenrollment.userrequest";
    if cmd.data.as_deref() != Some("1226") {
        return false;
    }
    let wrapped = wrap(&cmd.xml);
    let Ok(doc) = roxmltree::Document::parse(&wrapped) else {
        return false;
    };
    fn element<'a, 'i>(
        parent: roxmltree::Node<'a, 'i>,
        name: &str,
    ) -> Option<roxmltree::Node<'a, 'i>> {
        parent
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == name)
    }
    fn text<'a>(n: Option<roxmltree::Node<'a, 'a>>) -> Option<&'a str> {
        n.and_then(|n| n.text()).map(str::trim)
    }
    let Some(item) = element(doc.root_element(), "Item") else {
        return false;
    };
    match text(element(item, "Type")).unwrap_or("") {
        UNENROLL_TYPE => true,
        "" => {
            let item_data = item
                .children()
                .find(|n| n.is_element() && n.tag_name().name() == "Data");
            element(item, "Source").is_none() && text(item_data) == Some("1")
        }
        _ => false,
    }
}

/// The element text of a command re-rooted so that its default namespace resolves.
fn wrap(xml: &str) -> String {
    format!("<SyncBody xmlns=\"{}\">{xml}</SyncBody>", syncml::NS_SYNCML)
}

/// Whether a Results chunk answers a command sent to this device, about one of the
/// command's nodes (its target or below, or a LocURI of its XML).
async fn answers_sent_command(
    state: &AppState,
    device_id: &str,
    cmd_ref: &str,
    loc_uri: &str,
) -> Result<bool, ServerError> {
    let command_uuid = cmd_ref.split('.').next().unwrap_or(cmd_ref);
    let Some((target, body_xml)) = state.store.sent_command(device_id, command_uuid).await? else {
        return Ok(false);
    };
    let escaped = quick_xml::escape::escape(loc_uri);
    Ok(!loc_uri.is_empty()
        && (loc_uri == target
            || loc_uri
                .strip_prefix(target.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
            || body_xml.contains(&format!("<LocURI>{escaped}</LocURI>"))))
}

/// Handles a Results command, reassembling large objects sent in chunks with MoreData.
/// Returns the status code to answer it with (200; 213 chunk accepted; 404 a chunk for
/// no command sent to this device; 413 "Request entity too large", OMA-DM 1.2, for an
/// object over the reassembly bounds; 414 "URI too long" for a chunk's LocURI over
/// [`reassembly::MAX_KEY_PART`]) and the element to store, once complete. Changes
/// to the reassembly buffers go to `ops`, applied once the message is stored.
async fn results(
    state: &AppState,
    device_id: &str,
    cmd: &syncml::ClientCommand,
    ops: &mut Vec<ChunkOp>,
) -> Result<(u16, Option<syncml::ClientCommand>), ServerError> {
    let Some(cmd_ref) = cmd.cmd_ref.as_deref() else {
        return Ok((200, None));
    };
    let items = cmd.result_items();
    let key = |item: &syncml::ResultItem| {
        (
            device_id.to_string(),
            cmd_ref.to_string(),
            item.loc_uri.clone(),
        )
    };
    let chunks = &state.sessions.chunks;
    if let Some(item) = items.iter().find(|i| i.more_data) {
        // Keys are charged against the bounds, but refused outright when long: a
        // CmdRef we send is short (a command's ID, `.n` added when nested), so a longer one answers nothing we
        // sent (404); a LocURI over the bound gets 414 "URI too long" (OMA-DM 1.2
        // RepPro §10). Checked before any lookup, and nothing is buffered.
        if cmd_ref.len() > reassembly::MAX_KEY_PART {
            tracing::info!(%device_id, "large-object chunk with an over-long CmdRef refused");
            return Ok((404, None));
        }
        if item.loc_uri.len() > reassembly::MAX_KEY_PART {
            tracing::info!(%device_id, cmd_ref, "large-object chunk with an over-long LocURI refused");
            return Ok((414, None));
        }
        let k = key(item);
        match chunks.pending(&k) {
            Pending::Refused => return Ok((413, None)),
            // A first chunk opens a buffer only for a command really sent to the device.
            Pending::None
                if !answers_sent_command(state, device_id, cmd_ref, &item.loc_uri).await? =>
            {
                tracing::info!(%device_id, cmd_ref, loc_uri = %item.loc_uri, "large-object chunk for no command sent to this device refused");
                return Ok((404, None));
            }
            _ => {}
        }
        if !chunks.fits(&k, item.data.len()) {
            ops.push(ChunkOp::Refuse(k));
            return Ok((413, None));
        }
        ops.push(ChunkOp::Append(k, item.data.clone()));
        return Ok((213, None));
    }
    // The last chunk completes a buffered object; a plain Results is stored as sent.
    if let Some(item) = items.first() {
        let k = key(item);
        match chunks.pending(&k) {
            Pending::Buffered(held) if held + item.data.len() <= chunks.object_limit() => {
                let Some(data) = chunks.whole(&k, &item.data) else {
                    // Expired or evicted since `pending`, a moment ago.
                    ops.push(ChunkOp::Finish(k));
                    return Ok((413, None));
                };
                let mut whole = cmd.clone();
                whole.xml = syncml::reassembled_results(cmd, item, &data);
                ops.push(ChunkOp::Finish(k));
                return Ok((200, Some(whole)));
            }
            Pending::Buffered(_) | Pending::Refused => {
                ops.push(ChunkOp::Finish(k));
                return Ok((413, None));
            }
            Pending::None => {}
        }
    }
    Ok((200, Some(cmd.clone())))
}
