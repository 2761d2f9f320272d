//! Configuration profiles over the store: saving, assigning, and moving assignments on
//! after a device's answers (the decisions are [`crate::protocol::profiles`]).

use crate::error::ServerError;
use crate::model::{AssignmentStep, ProfileItem};
use crate::store::Store;

/// What saving a profile came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// The profile is invalid; the message says why.
    Refused(String),
}

/// What assigning a profile came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOutcome {
    Assigned,
    NoSuchProfile,
}

/// Creates or replaces a profile after checking every item builds a valid command.
pub async fn save(
    store: &Store,
    name: &str,
    items: &[ProfileItem],
) -> Result<SaveOutcome, ServerError> {
    if let Err(why) = crate::protocol::profiles::check(name, items) {
        return Ok(SaveOutcome::Refused(why));
    }
    store.save_profile(name, items).await?;
    Ok(SaveOutcome::Saved)
}

/// Assigns a profile to devices: queues its commands and starts each assignment over,
/// in one transaction.
pub async fn assign(
    store: &Store,
    name: &str,
    device_ids: &[String],
) -> Result<AssignOutcome, ServerError> {
    // Nothing to assign (as before the profile was looked up per device).
    if device_ids.is_empty() {
        return Ok(AssignOutcome::Assigned);
    }
    let Some(items) = store.profile_items(name).await? else {
        return Ok(AssignOutcome::NoSuchProfile);
    };
    let commands =
        crate::protocol::profiles::assignment_commands(&items).map_err(ServerError::Config)?;
    store.assign_profile(name, device_ids, &commands).await?;
    Ok(AssignOutcome::Assigned)
}

/// Moves the device's open assignments forward after a management message.
pub async fn advance(store: &Store, device_id: &str) -> Result<(), ServerError> {
    for a in store.open_assignments(device_id).await? {
        match crate::protocol::profiles::advance(&a).map_err(ServerError::Config)? {
            AssignmentStep::Wait => {}
            AssignmentStep::Verify(gets) => {
                store
                    .verify_assignment(&a.profile, device_id, &gets)
                    .await?
            }
            AssignmentStep::Finish(state, detail) => {
                store
                    .finish_assignment(&a.profile, device_id, state, &detail)
                    .await?
            }
        }
    }
    Ok(())
}
