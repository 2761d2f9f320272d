//! Plain data shared by the protocol core, the HTTP layer and the store: the states
//! stored rows move through, the OMA-DM verbs, and the records the store keeps. No I/O.

mod auth;
mod message;
mod profile;
mod records;
mod states;
mod verb;

pub use auth::{ManagementAuth, StoredDigest};
pub use message::{
    Delivery, MessageOutcome, MessageWork, ReplayStamp, ResponseRecord, StoredReplay,
};
pub use profile::{
    AssignmentStep, AssignmentView, ItemCommand, OpenAssignment, ProfileItem, ProfileView,
    ReadBack, TrackedCommand,
};
pub use records::{
    AnsweredCommand, CertEnrollment, CertIdentity, CommandResult, CommandView, DeviceCommand,
    EnrollClaim, EnrollConflict, Enrollment, Host, HostRegistration, NewCommand, NewEnrollment,
    QueuedCommand, RenewedCert, SentCommand, SignedCert,
};
pub use states::{
    AssignmentState, CertState, CommandState, EnrollmentState, ProfilePhase, ResponseKind,
    UnknownValue,
};
pub use verb::Verb;
