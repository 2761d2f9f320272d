//! The management core without database or socket: messages in, answers and
//! [`MessageWork`] out.

use super::*;
use crate::model::AnsweredCommand;
use crate::protocol::reassembly::Reassembly;

const DEVICE: &str = "DEV1";

fn message(body: &str, is_final: bool) -> ClientMessage {
    let xml = format!(
        "<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>2</MsgID><Target><LocURI>https://s/m</LocURI></Target><Source><LocURI>{DEVICE}</LocURI></Source></SyncHdr><SyncBody>{body}{}</SyncBody></SyncML>",
        if is_final { "<Final/>" } else { "" }
    );
    let doc = roxmltree::Document::parse(&xml).expect("xml");
    syncml::parse_client_message(&doc).expect("message")
}

/// Reads every command, answering lookups with `sent`.
fn read_all(
    ex: &mut Exchange<'_>,
    msg: &ClientMessage,
    chunks: &Reassembly,
    sent: Option<&SentCommand>,
) -> usize {
    let mut lookups = 0;
    for cmd in &msg.commands {
        if let Read::NeedsSentCommand(_) = ex.read(cmd, DEVICE, chunks, None) {
            lookups += 1;
            assert_eq!(ex.read(cmd, DEVICE, chunks, Some(sent)), Read::Done);
        }
    }
    lookups
}

#[test]
fn the_header_must_name_the_certificates_device_in_dm_1_2() {
    let msg = message("", true);
    assert_eq!(check_header(&msg.hdr, DEVICE), Ok(()));
    assert!(matches!(
        check_header(&msg.hdr, "OTHER"),
        Err(Refusal::Forbidden(_))
    ));
    let mut old = msg.hdr.clone();
    old.ver_proto = "DM/1.1".into();
    assert!(matches!(
        check_header(&old, DEVICE),
        Err(Refusal::BadRequest(_))
    ));
}

#[test]
fn only_an_active_enrollment_of_the_messages_device_authorises_it() {
    use crate::model::{CertIdentity, EnrollmentState};
    let identity = |state, current| CertIdentity {
        device_id: DEVICE.into(),
        enrollment_state: state,
        current,
    };
    let enrolled = identity(EnrollmentState::Enrolled, true);
    assert_eq!(authorise(Some(&enrolled), DEVICE), Ok(true));
    let retiring = identity(EnrollmentState::UnenrollPending, false);
    assert_eq!(authorise(Some(&retiring), DEVICE), Ok(false));
    assert_eq!(
        authorise(Some(&enrolled), "OTHER").err(),
        check_header(&message("", true).hdr, "OTHER").err(),
        "the same refusal as a header naming another device"
    );
    let gone = identity(EnrollmentState::Unenrolled, true);
    assert_eq!(authorise(Some(&gone), DEVICE), Err(not_active()));
    assert_eq!(authorise(None, DEVICE), Err(not_active()));
}

#[test]
fn statuses_are_stored_and_client_commands_answered() {
    let msg = message(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>abc</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>\
         <Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>\
         <Replace><CmdID>3</CmdID></Replace><Get><CmdID>4</CmdID></Get>",
        true,
    );
    let chunks = Reassembly::default();
    let mut ex = Exchange::new(&msg, "https://s/m", 65536);
    assert_eq!(read_all(&mut ex, &msg, &chunks, None), 0);
    let work = ex.work(DEVICE, true, 60);
    assert_eq!(work.responses.len(), 1, "the SyncHdr status is not stored");
    assert_eq!(work.responses[0].status_code.as_deref(), Some("200"));
    assert!(work.responses[0].acknowledges());
    assert!(!work.first_in_session);
    let delivery = work.delivery.expect("Final: commands may go out");
    assert_eq!(delivery.limit, usize::MAX);
    let reply = ex.finish_with(&[]);
    assert!(
        reply.contains("<CmdRef>3</CmdRef><Cmd>Replace</Cmd><Data>200</Data>"),
        "{reply}"
    );
    assert!(
        reply.contains("<CmdRef>4</CmdRef><Cmd>Get</Cmd><Data>406</Data>"),
        "{reply}"
    );
}

#[test]
fn an_unfinished_package_asks_for_more_and_gets_no_commands() {
    let msg = message("<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>", false);
    let mut ex = Exchange::new(&msg, "https://s/m", 65536);
    read_all(&mut ex, &msg, &Reassembly::default(), None);
    let work = ex.work(DEVICE, true, 60);
    assert!(work.delivery.is_none());
    assert!(matches!(
        ex.next(work.delivery, MessageOutcome::default()),
        Next::AskForMore
    ));
    assert!(ex.ask_for_more().contains("<Data>1222</Data></Alert>"));
}

#[test]
fn the_unenroll_alert_unenrolls_and_stops_delivery() {
    let msg = message(
        "<Alert><CmdID>1</CmdID><Data>1226</Data><Item><Meta><Type xmlns=\"syncml:metinf\">com.microsoft:mdm.unenrollment.userrequest</Type></Meta><Data>1</Data></Item></Alert>",
        true,
    );
    let mut ex = Exchange::new(&msg, "https://s/m", 65536);
    read_all(&mut ex, &msg, &Reassembly::default(), None);
    let work = ex.work(DEVICE, true, 60);
    assert!(
        work.delivery.is_none(),
        "nothing goes to a device that is leaving"
    );
    assert!(matches!(
        ex.next(None, MessageOutcome::default()),
        Next::Unenrolled
    ));
}

#[test]
fn an_acknowledged_unenroll_exec_unenrolls() {
    let msg = message("", true);
    let ex = Exchange::new(&msg, "https://s/m", 65536);
    let outcome = MessageOutcome {
        answered: vec![Some(AnsweredCommand {
            verb: Verb::Exec,
            target: "./Vendor/MSFT/DMClient/Provider/P/Unenroll".into(),
        })],
        unenroll_acknowledged: true,
        ..Default::default()
    };
    let d = Delivery {
        used: 0,
        limit: 1,
        redeliver_after_secs: 1,
    };
    assert!(matches!(ex.next(Some(d), outcome), Next::Unenrolled));
}

fn chunk(data: &str, more: bool) -> String {
    format!(
        "<Results><CmdID>5</CmdID><MsgRef>1</MsgRef><CmdRef>cmd-1</CmdRef><Item><Source><LocURI>./Vendor/MSFT/X/Big</LocURI></Source><Data>{data}</Data>{}</Item></Results>",
        if more { "<MoreData/>" } else { "" }
    )
}

#[test]
fn large_objects_are_reassembled_from_chunks_of_a_sent_command() {
    let chunks = Reassembly::default();
    let sent = SentCommand {
        target: "./Vendor/MSFT/X".into(),
        body_xml: String::new(),
    };
    // First chunk: the command is looked up, the chunk buffered once stored (213).
    let first = message(&chunk("abc", true), false);
    let mut ex = Exchange::new(&first, "https://s/m", 65536);
    assert_eq!(read_all(&mut ex, &first, &chunks, Some(&sent)), 1);
    let work = ex.work(DEVICE, true, 60);
    assert!(work.responses.is_empty(), "a chunk is not stored");
    chunks.apply(ex.take_chunk_ops());
    assert!(ex.finish().contains("<Cmd>Results</Cmd><Data>213</Data>"));
    // Last chunk: the whole object is stored, no lookup.
    let last = message(&chunk("def", false), true);
    let mut ex = Exchange::new(&last, "https://s/m", 65536);
    assert_eq!(read_all(&mut ex, &last, &chunks, None), 0);
    let work = ex.work(DEVICE, true, 60);
    assert_eq!(work.responses.len(), 1);
    assert!(work.responses[0].body_xml.contains("<Data>abcdef</Data>"));
    chunks.apply(ex.take_chunk_ops());
    assert_eq!(chunks.held(DEVICE), (0, 0));
}

#[test]
fn a_chunk_for_no_command_sent_is_refused() {
    let msg = message(&chunk("abc", true), false);
    let chunks = Reassembly::default();
    let mut ex = Exchange::new(&msg, "https://s/m", 65536);
    assert_eq!(read_all(&mut ex, &msg, &chunks, None), 1);
    assert!(ex.take_chunk_ops().is_empty());
    assert!(ex.finish().contains("<Data>404</Data>"));
    let elsewhere = SentCommand {
        target: "./Vendor/MSFT/Other".into(),
        body_xml: "<Get><Item><Target><LocURI>./Vendor/MSFT/Other</LocURI></Target></Item></Get>"
            .into(),
    };
    assert!(!answers_sent_command(&elsewhere, "./Vendor/MSFT/X/Big"));
    assert!(answers_sent_command(
        &elsewhere,
        "./Vendor/MSFT/Other/Child"
    ));
    assert!(!answers_sent_command(&elsewhere, "./Vendor/MSFT/OtherNode"));
}
