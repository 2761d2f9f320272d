//! OMA-DM MD5 digest authentication of the device (OMA-DM 1.2 Security,
//! `syncml:auth-md5`): package 1 without credentials, a challenge answered once with
//! package 1 again, every later message with credentials from the latest NextNonce, and
//! refusals. The session is a state machine without I/O, so the server's messages are
//! written here by hand.

use fake_windows_client::csp::NodeStore;
use fake_windows_client::digest::{self, DigestAuth};
use fake_windows_client::profile::DeviceProfile;
use fake_windows_client::session::ManagementSession;

const DEVICE_ID: &str = "1E08C6E95D8BB843B1278FF45BC60CC6";

fn credentials() -> DigestAuth {
    DigestAuth {
        name: "dev1".into(),
        secret: "secret".into(),
        nonce: Vec::new(),
    }
}

fn session() -> ManagementSession {
    ManagementSession::new("7", "https://mdm.example.org/m", DEVICE_ID)
        .with_digest(Some(credentials()))
}

/// The element text of the first `name` in `xml`.
fn text_of(xml: &str, name: &str) -> Option<String> {
    let d = roxmltree::Document::parse(xml).expect("device XML");
    let n = d.descendants().find(|n| n.has_tag_name(name))?;
    Some(n.text().unwrap_or("").to_string())
}

/// `SyncHdr/Cred/Data` of a device message.
fn cred_data(xml: &str) -> Option<String> {
    let d = roxmltree::Document::parse(xml).expect("device XML");
    let cred = d.descendants().find(|n| n.has_tag_name("Cred"))?;
    let data = cred.children().find(|n| n.has_tag_name("Data"))?;
    Some(data.text().unwrap_or("").to_string())
}

/// A server message answering device message `req`: SyncHdr status `code` with a
/// challenge carrying `next_nonce`, then `commands`.
fn reply(req: &str, code: u16, next_nonce: Option<&str>, commands: &str) -> String {
    let mid = text_of(req, "MsgID").unwrap_or_default();
    let chal = next_nonce
        .map(|n| {
            format!(
                r#"<Chal><Meta><Type xmlns="syncml:metinf">syncml:auth-md5</Type><Format xmlns="syncml:metinf">b64</Format><NextNonce xmlns="syncml:metinf">{n}</NextNonce></Meta></Chal>"#
            )
        })
        .unwrap_or_default();
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>7</SessionID><MsgID>{mid}</MsgID><Target><LocURI>{DEVICE_ID}</LocURI></Target><Source><LocURI>https://mdm.example.org/m</LocURI></Source></SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>{mid}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd>{chal}<Data>{code}</Data></Status>{commands}<Final/></SyncBody></SyncML>"#
    )
}

const GET: &str =
    "<Get><CmdID>2</CmdID><Item><Target><LocURI>./DevInfo/DevId</LocURI></Target></Item></Get>";

#[test]
fn a_challenge_is_answered_with_package_one_and_every_later_message_carries_credentials() {
    let builtins = DeviceProfile::random().builtins(DEVICE_ID);
    let mut store = NodeStore::default();
    let mut s = session();
    let pkg1 = s.first_message(&builtins, "user");
    assert_eq!(cred_data(&pkg1), None, "package 1 goes without credentials");

    // 407: credentials missing, hash with "nonce-1".
    let again = s
        .handle(
            &reply(&pkg1, 407, Some("bm9uY2UtMQ=="), ""),
            &mut store,
            &builtins,
        )
        .expect("challenge answered")
        .expect("package 1 again");
    assert_eq!(text_of(&again, "MsgID").as_deref(), Some("2"));
    assert_eq!(
        cred_data(&again).as_deref(),
        Some("Mn2bScWUVyRvTB9HhUt69w=="),
        "the published vector: dev1/secret with nonce-1"
    );
    assert!(
        again.contains("<Data>1201</Data>"),
        "package 1's alerts again"
    );
    assert!(
        again.contains("./DevInfo/DevId"),
        "package 1's DevInfo again"
    );

    // Accepted with the next nonce and a command: the answer carries credentials hashed
    // with that nonce.
    let next = s
        .handle(
            &reply(&again, 212, Some("bm9uY2UtMg=="), GET),
            &mut store,
            &builtins,
        )
        .expect("accepted")
        .expect("status and results");
    assert_eq!(
        cred_data(&next).as_deref(),
        Some(digest::digest("dev1", "secret", b"nonce-2").as_str())
    );
    assert_eq!(
        s.digest().map(|d| d.nonce.clone()),
        Some(b"nonce-2".to_vec())
    );

    // The last reply's nonce is kept for the next session.
    let end = s
        .handle(
            &reply(&next, 200, Some("bm9uY2UtMw=="), ""),
            &mut store,
            &builtins,
        )
        .expect("end");
    assert!(end.is_none());
    assert_eq!(
        s.digest().map(|d| d.nonce.clone()),
        Some(b"nonce-3".to_vec())
    );
}

#[test]
fn refused_credentials_end_the_session() {
    let builtins = DeviceProfile::random().builtins(DEVICE_ID);
    let mut store = NodeStore::default();
    let mut s = session();
    let pkg1 = s.first_message(&builtins, "user");
    let again = s
        .handle(
            &reply(&pkg1, 407, Some("bm9uY2UtMQ=="), ""),
            &mut store,
            &builtins,
        )
        .expect("challenge answered")
        .expect("package 1 again");
    let refused = s.handle(
        &reply(&again, 401, Some("bm9uY2UtMg=="), ""),
        &mut store,
        &builtins,
    );
    let e = refused.expect_err("401 to credentials is a refusal");
    assert!(
        e.to_string().contains("refused our digest credentials"),
        "{e}"
    );
}

#[test]
fn a_challenge_without_a_nonce_cannot_be_answered() {
    let builtins = DeviceProfile::random().builtins(DEVICE_ID);
    let mut s = session();
    let pkg1 = s.first_message(&builtins, "user");
    let e = s
        .handle(
            &reply(&pkg1, 407, None, ""),
            &mut NodeStore::default(),
            &builtins,
        )
        .expect_err("no NextNonce");
    assert!(e.to_string().contains("NextNonce"), "{e}");
}

#[test]
fn without_digest_credentials_a_challenge_fails_as_before() {
    let builtins = DeviceProfile::random().builtins(DEVICE_ID);
    let mut s = ManagementSession::new("7", "https://mdm.example.org/m", DEVICE_ID);
    let pkg1 = s.first_message(&builtins, "user");
    let e = s
        .handle(
            &reply(&pkg1, 407, Some("bm9uY2UtMQ=="), ""),
            &mut NodeStore::default(),
            &builtins,
        )
        .expect_err("no credentials to answer with");
    assert!(e.to_string().contains("407"), "{e}");
}

#[test]
fn a_nonce_that_is_not_base64_is_a_warning_outside_a_challenge() {
    let builtins = DeviceProfile::random().builtins(DEVICE_ID);
    let mut s = session();
    let pkg1 = s.first_message(&builtins, "user");
    let end = s
        .handle(
            &reply(&pkg1, 200, Some("not base64!"), ""),
            &mut NodeStore::default(),
            &builtins,
        )
        .expect("accepted");
    assert!(end.is_none());
    assert!(s
        .take_warnings()
        .iter()
        .any(|w| w.check == "syncml.next_nonce"));
}
