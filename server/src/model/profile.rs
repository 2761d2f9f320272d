//! Configuration profiles as data: their items, and where each device's assignment stands.

use serde::{Deserialize, Serialize};

use super::{AssignmentState, CommandState, ProfilePhase, Verb};

/// One setting of a profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileItem {
    /// `Replace` or `Add` (checked when the profile is saved).
    pub verb: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub data: String,
}

impl ProfileItem {
    /// The item's verb, when it names an OMA-DM command.
    pub fn verb(&self) -> Option<Verb> {
        self.verb.parse().ok()
    }

    /// Where the applied value is read back: Policy CSP reports applied policies under
    /// `Policy/Result/<Area>/<Policy>` (Policy CSP DDF); other nodes are read directly.
    pub fn readback_target(&self) -> String {
        self.target
            .replacen("/Policy/Config/", "/Policy/Result/", 1)
    }
}

/// Per-device state of an assignment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AssignmentView {
    pub device_id: String,
    pub state: AssignmentState,
    pub detail: String,
    pub updated_at: String,
}

/// A profile and its assignments.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    pub name: String,
    pub items: Vec<ProfileItem>,
    pub devices: Vec<AssignmentView>,
}

/// A profile's command for one item, ready to queue.
#[derive(Debug, Clone)]
pub struct ItemCommand {
    pub verb: Verb,
    pub target: String,
    pub body_xml: String,
}

/// One device's open assignment with everything needed to move it on.
#[derive(Debug, Clone)]
pub struct OpenAssignment {
    pub profile: String,
    pub state: AssignmentState,
    pub items: Vec<ProfileItem>,
    pub tracked: Vec<TrackedCommand>,
}

/// One queued command of an assignment and what the device answered.
#[derive(Debug, Clone)]
pub struct TrackedCommand {
    pub phase: ProfilePhase,
    pub index: usize,
    pub state: CommandState,
    pub status: Option<String>,
    /// The latest Results element the device returned for it.
    pub results: Option<String>,
}

/// A read-back Get of an assignment and the item it reads.
#[derive(Debug, Clone)]
pub struct ReadBack {
    /// Index of the item in the profile.
    pub item: usize,
    pub command: ItemCommand,
}

/// The next step of an open assignment, decided by `core::profiles::advance`.
#[derive(Debug, Clone)]
pub enum AssignmentStep {
    /// Nothing to do yet: commands are still unanswered.
    Wait,
    /// Every apply command succeeded: queue these read-back Gets and move to `verifying`.
    Verify(Vec<ReadBack>),
    /// Done: `verified`, or `failed` with what went wrong.
    Finish(AssignmentState, String),
}
