//! Which queued commands go out in a reply, which certificates authenticate, and what
//! a stored message's answers mean (MS-MDM §3.1): decisions the store's backends share.

use crate::model::{
    AnsweredCommand, CertIdentity, CertState, Delivery, EnrollmentState, MessageOutcome,
    MessageWork, QueuedCommand, ResponseKind, Verb,
};

/// Most commands sent in one message, whatever the device's MaxMsgSize (also keeps the
/// claiming statement within the databases' parameter limits).
pub const MAX_COMMANDS_PER_MESSAGE: usize = 500;

/// Takes commands in order while they fit the reply; the first one always goes.
pub fn fitting(pending: &[QueuedCommand], d: Delivery) -> Vec<&QueuedCommand> {
    let mut size = d.used;
    let mut out = Vec::new();
    for c in pending.iter().take(MAX_COMMANDS_PER_MESSAGE) {
        size += c.body_xml.len() + 2 * c.command_uuid.len();
        if size > d.limit && !out.is_empty() {
            break;
        }
        out.push(c);
    }
    out
}

/// The server's own unenrollment command: Exec on `DMClient/Provider/<ID>/Unenroll`.
pub fn is_unenroll_exec(verb: Verb, target: &str) -> bool {
    verb == Verb::Exec && target.contains("/DMClient/Provider/") && target.ends_with("/Unenroll")
}

/// The server's unenrollment command for provider `provider_id`, ready to queue:
/// (verb, target, XML). An `Exec` on `./Vendor/MSFT/DMClient/Provider/<ProviderID>/Unenroll`
/// with the ProviderID as data (DMClient CSP).
pub fn unenroll_command(provider_id: &str) -> Result<(Verb, String, String), String> {
    let target = format!("./Vendor/MSFT/DMClient/Provider/{provider_id}/Unenroll");
    let raw = crate::syncml::build_command(
        Verb::Exec.as_str(),
        &target,
        Some("chr"),
        Some("text/plain"),
        Some(provider_id),
    )?;
    crate::syncml::normalise_command(&raw)
}

/// Whether the message's answers include a 200 Status for the server's Unenroll Exec.
pub fn acknowledges_unenroll(w: &MessageWork, answered: &[Option<AnsweredCommand>]) -> bool {
    w.responses.iter().zip(answered).any(|(r, known)| {
        r.kind == ResponseKind::Status
            && r.status_code.as_deref() == Some("200")
            && known
                .as_ref()
                .is_some_and(|c| is_unenroll_exec(c.verb, &c.target))
    })
}

/// The outcome once the message's responses are stored (`answered`, per response),
/// and the delivery still to attempt: none when the device acknowledged its
/// unenrollment or no delivery was asked for.
pub fn stored(
    w: &MessageWork,
    answered: Vec<Option<AnsweredCommand>>,
) -> (MessageOutcome, Option<Delivery>) {
    let out = MessageOutcome {
        unenroll_acknowledged: acknowledges_unenroll(w, &answered),
        answered,
        ..Default::default()
    };
    let delivery = w.delivery.filter(|_| !out.unenroll_acknowledged);
    (out, delivery)
}

/// Who a certificate row authenticates at `now` (Unix seconds): active certificates do;
/// retiring ones (replaced by a renewal) until `retire_after`; others, and rows whose
/// states name nothing known, do not.
pub fn cert_identity(
    device_id: String,
    cert_state: &str,
    retire_after: Option<i64>,
    enrollment_state: &str,
    now: i64,
) -> Option<CertIdentity> {
    let current = match cert_state.parse().ok()? {
        CertState::Active => true,
        CertState::Retiring if retire_after.is_some_and(|t| t > now) => false,
        _ => return None,
    };
    Some(CertIdentity {
        device_id,
        enrollment_state: enrollment_state.parse::<EnrollmentState>().ok()?,
        current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResponseRecord;

    fn cmd(id: &str, len: usize) -> QueuedCommand {
        QueuedCommand {
            command_uuid: id.into(),
            verb: Verb::Get,
            body_xml: "x".repeat(len),
        }
    }

    #[test]
    fn commands_go_out_while_they_fit_and_the_first_always() {
        let queue = [cmd("a", 100), cmd("b", 100), cmd("c", 100)];
        let d = |used, limit| Delivery {
            used,
            limit,
            redeliver_after_secs: 60,
        };
        assert_eq!(fitting(&queue, d(0, 210)).len(), 2);
        assert_eq!(fitting(&queue, d(0, usize::MAX)).len(), 3);
        assert_eq!(
            fitting(&queue, d(1000, 10)).len(),
            1,
            "the first always goes"
        );
        let many: Vec<_> = (0..600).map(|i| cmd(&i.to_string(), 1)).collect();
        assert_eq!(
            fitting(&many, d(0, usize::MAX)).len(),
            MAX_COMMANDS_PER_MESSAGE
        );
    }

    #[test]
    fn the_unenroll_command_is_recognised_as_ours() {
        let (verb, target, xml) = unenroll_command("winmdm").expect("command");
        assert!(is_unenroll_exec(verb, &target));
        assert!(xml.contains("<Data>winmdm</Data>"), "{xml}");
        assert!(!is_unenroll_exec(Verb::Get, &target));
        assert!(!is_unenroll_exec(
            verb,
            "./Vendor/MSFT/DMClient/Provider/winmdm/Other"
        ));
    }

    #[test]
    fn certificates_authenticate_while_active_or_in_grace() {
        let id =
            |state, retire, enrollment| cert_identity("D".into(), state, retire, enrollment, 100);
        assert!(id("active", None, "enrolled").is_some_and(|i| i.current));
        assert!(id("retiring", Some(101), "enrolled").is_some_and(|i| !i.current));
        assert!(id("retiring", Some(100), "enrolled").is_none());
        assert!(id("retired", None, "enrolled").is_none());
        assert!(id("active", None, "bogus").is_none());
    }

    #[test]
    fn only_a_200_for_the_unenroll_exec_acknowledges_unenrollment() {
        let status = |code: &str| ResponseRecord {
            cmd_ref: "u".into(),
            msg_ref: "1".into(),
            kind: ResponseKind::Status,
            status_code: Some(code.into()),
            body_xml: String::new(),
        };
        let work = |r| MessageWork {
            device_id: "D".into(),
            session_id: "1".into(),
            first_in_session: false,
            current_cert: true,
            responses: vec![r],
            delivery: None,
        };
        let exec = Some(AnsweredCommand {
            verb: Verb::Exec,
            target: "./Vendor/MSFT/DMClient/Provider/P/Unenroll".into(),
        });
        assert!(acknowledges_unenroll(
            &work(status("200")),
            std::slice::from_ref(&exec)
        ));
        assert!(!acknowledges_unenroll(&work(status("500")), &[exec]));
        let get = Some(AnsweredCommand {
            verb: Verb::Get,
            target: "./Vendor/MSFT/DMClient/Provider/P/Unenroll".into(),
        });
        assert!(!acknowledges_unenroll(&work(status("200")), &[get]));
    }
}
