//! Configuration profiles, decided without I/O: a named set of Replace/Add commands on
//! CSP nodes (typically Policy CSP, `./Device/Vendor/MSFT/Policy/Config/...`). Assigning
//! a profile queues its commands; once the device acknowledges them all, the server
//! reads each node back (Policy CSP: the matching `Policy/Result` node) and compares
//! with what it set. Per device an assignment is `pending`, `verifying`, `verified` or
//! `failed` ([`AssignmentState`]).

use crate::model::{
    AssignmentState, AssignmentStep, CommandState, ItemCommand, OpenAssignment, ProfileItem,
    ProfilePhase, ReadBack, Verb,
};
use crate::syncml;

/// Checks a profile before it is saved: a name of 1 to 128 characters and at least one
/// item, every item building a valid command. The refusal names what is wrong.
pub fn check(name: &str, items: &[ProfileItem]) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("profile name must be 1 to 128 characters".into());
    }
    if items.is_empty() {
        return Err("a profile needs at least one item".into());
    }
    for item in items {
        if let Err(e) = item_command(item) {
            return Err(format!("{}: {e}", item.target));
        }
    }
    Ok(())
}

/// The command that applies an item (Replace or Add).
pub fn item_command(item: &ProfileItem) -> Result<ItemCommand, String> {
    let verb = item
        .verb()
        .filter(|v| v.sets_value())
        .ok_or_else(|| format!("profile items are Replace or Add, not {:?}", item.verb))?;
    let raw = syncml::build_command(
        verb.as_str(),
        &item.target,
        item.format.as_deref(),
        item.mime_type.as_deref(),
        Some(&item.data),
    )?;
    let (_, _, body_xml) = syncml::normalise_command(&raw)?;
    Ok(ItemCommand {
        verb,
        target: item.target.clone(),
        body_xml,
    })
}

/// The Get that reads an item's applied value back.
pub fn readback_command(item: &ProfileItem) -> Result<ItemCommand, String> {
    let raw = syncml::build_command(
        Verb::Get.as_str(),
        &item.readback_target(),
        None,
        None,
        None,
    )?;
    let (verb, target, body_xml) = syncml::normalise_command(&raw)?;
    Ok(ItemCommand {
        verb,
        target,
        body_xml,
    })
}

/// The commands assigning a profile queues, one per item, in item order.
pub fn assignment_commands(items: &[ProfileItem]) -> Result<Vec<ItemCommand>, String> {
    items.iter().map(item_command).collect()
}

fn is_success(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..300).contains(&c))
}

/// Moves an open assignment forward after a management message: failed on an error
/// status, verifying once every command is acknowledged (with the read-back Gets to
/// queue), verified or failed once the read-backs are in. `Err` when a read-back
/// command cannot be built.
pub fn advance(a: &OpenAssignment) -> Result<AssignmentStep, String> {
    let phase = if a.state == AssignmentState::Pending {
        ProfilePhase::Apply
    } else {
        ProfilePhase::Verify
    };
    let current: Vec<_> = a.tracked.iter().filter(|t| t.phase == phase).collect();
    if let Some(bad) = current
        .iter()
        .find(|t| t.state == CommandState::Acknowledged && !is_success(t.status.as_deref()))
    {
        let item = a.items.get(bad.index);
        let (verb, node) = match phase {
            ProfilePhase::Apply => (
                item.map(|i| i.verb.as_str()).unwrap_or(""),
                item.map(|i| i.target.clone()),
            ),
            ProfilePhase::Verify => (Verb::Get.as_str(), item.map(|i| i.readback_target())),
        };
        let detail = format!(
            "{verb} {} returned status {}",
            node.unwrap_or_default(),
            bad.status.as_deref().unwrap_or("?")
        );
        return Ok(AssignmentStep::Finish(AssignmentState::Failed, detail));
    }
    if current
        .iter()
        .any(|t| t.state != CommandState::Acknowledged)
    {
        return Ok(AssignmentStep::Wait);
    }
    if phase == ProfilePhase::Apply {
        let gets = a
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok(ReadBack {
                    item: i,
                    command: readback_command(item)?,
                })
            })
            .collect::<Result<_, String>>()?;
        return Ok(AssignmentStep::Verify(gets));
    }
    let mismatch = current.iter().find_map(|t| {
        let item = a.items.get(t.index)?;
        let got = t
            .results
            .as_deref()
            .and_then(syncml::results_data)
            .unwrap_or_default();
        (got.trim() != item.data.trim()).then(|| {
            format!(
                "{} reads back {got:?}, expected {:?}",
                item.readback_target(),
                item.data
            )
        })
    });
    Ok(match mismatch {
        Some(detail) => AssignmentStep::Finish(AssignmentState::Failed, detail),
        None => AssignmentStep::Finish(AssignmentState::Verified, String::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TrackedCommand;

    fn item() -> ProfileItem {
        ProfileItem {
            verb: "Replace".into(),
            target: "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera".into(),
            format: Some("int".into()),
            mime_type: None,
            data: "0".into(),
        }
    }

    fn tracked(
        phase: ProfilePhase,
        state: CommandState,
        status: &str,
        results: Option<&str>,
    ) -> TrackedCommand {
        TrackedCommand {
            phase,
            index: 0,
            state,
            status: Some(status.into()),
            results: results.map(str::to_string),
        }
    }

    fn assignment(state: AssignmentState, tracked: Vec<TrackedCommand>) -> OpenAssignment {
        OpenAssignment {
            profile: "p".into(),
            state,
            items: vec![item()],
            tracked,
        }
    }

    #[test]
    fn profiles_are_checked_before_they_are_saved() {
        assert!(check("p", &[item()]).is_ok());
        assert!(check("", &[item()]).is_err());
        assert!(check("p", &[]).is_err());
        let get = ProfileItem {
            verb: "Get".into(),
            ..item()
        };
        assert_eq!(
            check("p", &[get]),
            Err("./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera: profile items are Replace or Add, not \"Get\"".into())
        );
    }

    #[test]
    fn an_assignment_waits_then_verifies_then_compares() {
        use AssignmentState::*;
        let sent = tracked(ProfilePhase::Apply, CommandState::Sent, "", None);
        assert!(matches!(
            advance(&assignment(Pending, vec![sent])),
            Ok(AssignmentStep::Wait)
        ));
        let ok = tracked(ProfilePhase::Apply, CommandState::Acknowledged, "200", None);
        match advance(&assignment(Pending, vec![ok.clone()])) {
            Ok(AssignmentStep::Verify(gets)) => {
                assert_eq!(gets.len(), 1);
                assert_eq!(gets[0].command.verb, Verb::Get);
                assert_eq!(
                    gets[0].command.target,
                    "./Device/Vendor/MSFT/Policy/Result/Camera/AllowCamera"
                );
            }
            other => panic!("{other:?}"),
        }
        let read = |data: &str| {
            let results =
                format!("<Results><CmdID>1</CmdID><Item><Data>{data}</Data></Item></Results>");
            tracked(
                ProfilePhase::Verify,
                CommandState::Acknowledged,
                "200",
                Some(&results),
            )
        };
        assert!(matches!(
            advance(&assignment(Verifying, vec![ok.clone(), read("0")])),
            Ok(AssignmentStep::Finish(Verified, _))
        ));
        match advance(&assignment(Verifying, vec![ok, read("1")])) {
            Ok(AssignmentStep::Finish(Failed, detail)) => {
                assert!(detail.contains("reads back \"1\""), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_error_status_fails_the_assignment_naming_the_command() {
        let bad = tracked(ProfilePhase::Apply, CommandState::Acknowledged, "405", None);
        match advance(&assignment(AssignmentState::Pending, vec![bad])) {
            Ok(AssignmentStep::Finish(AssignmentState::Failed, detail)) => assert_eq!(
                detail,
                "Replace ./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera returned status 405"
            ),
            other => panic!("{other:?}"),
        }
    }
}
