//! OMA-DM management of the double (OMA-DM 1.2 §6, MS-MDM §3.1.5): Status for the
//! SyncHdr and every device command, one `Get ./DevDetail/SwV` per session, nothing
//! else; device-initiated unenrollment (Alert 1226) forgets the device.

use super::{Defect, Hole, Request, Response, State};

/// The token the federated login page hands out.
pub(crate) const FEDERATED_TOKEN: &str = "double-federated-token";

const SYNCML: &str = "application/vnd.syncml.dm+xml";

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.tag_name().name() == name)
}

fn text<'a>(n: Option<roxmltree::Node<'a, '_>>) -> &'a str {
    n.and_then(|n| n.text()).map(str::trim).unwrap_or_default()
}

/// `POST /manage`.
pub(crate) fn manage(state: &State, req: &Request) -> Response {
    let insist_on_certificate = state.opts.defect != Some(Defect::CommandsBeforeAuthentication);
    if insist_on_certificate && req.peer_cert.is_none() {
        return Response::text(401, "client certificate required");
    }
    let xml = req.text();
    let Ok(doc) = roxmltree::Document::parse(&xml) else {
        return Response::text(400, "not XML");
    };
    let root = doc.root_element();
    let (Some(hdr), Some(body)) = (child(root, "SyncHdr"), child(root, "SyncBody")) else {
        return Response::text(400, "not SyncML");
    };
    let session = text(child(hdr, "SessionID")).to_string();
    let msg_id = text(child(hdr, "MsgID")).to_string();
    let device_id = text(child(hdr, "Source").and_then(|s| child(s, "LocURI"))).to_string();
    let target = text(child(hdr, "Target").and_then(|s| child(s, "LocURI"))).to_string();

    // The certificate must be the one issued for this DeviceID.
    if let Some(cert) = &req.peer_cert {
        let devices = state.devices.lock().expect("lock");
        let bound = devices.get(&device_id).is_some_and(|d| &d.cert_der == cert);
        let any = devices.values().any(|d| &d.cert_der == cert);
        let allowed = if state
            .opts
            .holes
            .contains(&Hole::CertificateNotBoundToDevice)
        {
            any
        } else {
            bound
        };
        if !allowed {
            return Response::text(403, "certificate not issued to this device");
        }
    }

    let mut out = String::new();
    let mut cmd_id = 1u32;
    let mut status = |cmd_ref: &str, cmd: &str, code: u16, out: &mut String| {
        out.push_str(&format!(
            "<Status><CmdID>{cmd_id}</CmdID><MsgRef>{msg_id}</MsgRef><CmdRef>{cmd_ref}</CmdRef><Cmd>{cmd}</Cmd><Data>{code}</Data></Status>"
        ));
        cmd_id += 1;
    };
    status("0", "SyncHdr", 200, &mut out);
    let mut session_start = false;
    let mut unenroll = false;
    for cmd in body.children().filter(|c| c.is_element()) {
        let name = cmd.tag_name().name();
        match name {
            "Final" | "Status" => continue,
            "Alert" => {
                let code = text(child(cmd, "Data"));
                if code == "1201" || code == "1200" {
                    session_start = true;
                }
                if code == "1226" {
                    unenroll = true;
                }
            }
            _ => {}
        }
        status(text(child(cmd, "CmdID")), name, 200, &mut out);
    }
    if unenroll {
        state.devices.lock().expect("lock").remove(&device_id);
    }
    let key = (device_id.clone(), session.clone());
    let mut sent = state.sent.lock().expect("lock");
    if session_start && !unenroll && !sent.contains_key(&key) {
        out.push_str(&format!(
            "<Get><CmdID>{cmd_id}</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>"
        ));
        sent.insert(key, cmd_id);
    }
    let reply_msg: u32 = msg_id.parse().unwrap_or(1);
    let xml = format!(
        "<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{reply_msg}</MsgID><Target><LocURI>{device_id}</LocURI></Target><Source><LocURI>{target}</LocURI></Source></SyncHdr><SyncBody>{out}<Final/></SyncBody></SyncML>"
    );
    Response::new(200, SYNCML, xml)
}
