//! What the store keeps and hands back, as plain data.

use serde::Serialize;

use super::{CommandState, EnrollmentState, ResponseKind, Verb};

/// A host known through the Orbit agent (or standing for an enrollment user).
#[derive(Debug, Clone)]
pub struct Host {
    pub host_uuid: String,
    pub hardware_uuid: String,
    pub hostname: String,
    /// When the host's current node key was issued (unix seconds).
    pub node_key_issued_unix: i64,
}

/// What Orbit enroll records about a host.
#[derive(Debug, Clone, Copy)]
pub struct HostRegistration<'a> {
    pub hardware_uuid: &'a str,
    pub hardware_serial: &'a str,
    pub hostname: &'a str,
    pub platform: &'a str,
    /// SHA-256 (hex) of the node key issued now.
    pub node_key_hash: &'a str,
}

/// A new MDM enrollment to record.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub device_id: String,
    pub host_uuid: Option<String>,
    pub hardware_uuid: String,
    pub device_name: String,
    pub os_version: String,
    pub enrollment_type: String,
    pub upn: String,
    pub cert_serial: String,
    pub cert_thumbprint: String,
    pub cert_not_after: String,
    /// SHA-256 (hex) of the certificate's RSA public key.
    pub public_key_sha256: String,
}

/// A certificate the identity CA signed, as recorded.
#[derive(Debug, Clone, Copy)]
pub struct SignedCert<'a> {
    /// Serial number, lowercase hex.
    pub serial: &'a str,
    pub thumbprint: &'a str,
    /// notAfter, RFC 3339.
    pub not_after: &'a str,
}

/// A renewed certificate to record.
#[derive(Debug, Clone, Copy)]
pub struct RenewedCert<'a> {
    pub serial: &'a str,
    pub thumbprint: &'a str,
    pub not_after: &'a str,
    /// How long the replaced certificate still authenticates, unless the new one is used.
    pub grace_secs: i64,
}

/// An enrollment as the admin API and the management route see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Enrollment {
    pub device_id: String,
    pub host_uuid: Option<String>,
    pub hardware_uuid: String,
    pub device_name: String,
    pub os_version: String,
    pub enrollment_type: String,
    pub cert_serial: String,
    pub cert_thumbprint: String,
    pub state: EnrollmentState,
    pub enrolled_at: String,
    pub last_checkin_at: Option<String>,
}

/// The enrollment a certificate authenticates.
#[derive(Debug, Clone)]
pub struct CertEnrollment {
    pub enrollment: Enrollment,
    /// False for a certificate replaced by a renewal and still in its grace period.
    pub current: bool,
}

/// Who a client certificate authenticates.
#[derive(Debug, Clone)]
pub struct CertIdentity {
    pub device_id: String,
    pub enrollment_state: EnrollmentState,
    /// False for a certificate replaced by a renewal and still in its grace period.
    pub current: bool,
}

/// What the one-device rules look at.
#[derive(Debug, Clone)]
pub struct EnrollClaim {
    pub host_uuid: Option<String>,
    /// The requesting host's hardware UUID (`user:NAME` for an enrollment user): what
    /// stays the same when a host enrolls through Orbit again and gets a new node key.
    pub hardware_uuid: String,
    pub device_id: String,
    /// SHA-256 (hex) of the CSR's RSA public key.
    pub public_key_sha256: String,
    /// Enrollment users may enroll several devices with one account.
    pub multi_device: bool,
}

/// Why an enrollment is refused by the one-device rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollConflict {
    /// The enrollment token already enrolled another device (MS-MDE2 DeviceCapReached).
    DeviceCapReached,
    /// The DeviceID is enrolled, and not unenrolled or released, for another host or
    /// enrollment user: enrolling it again would move its enrollment, certificates and
    /// command queue to the requester.
    DeviceHeldByOtherHost,
    /// The CSR's public key is certified for another device.
    KeyHeldByOtherDevice,
}

/// A queued command ready for delivery.
#[derive(Debug, Clone)]
pub struct QueuedCommand {
    pub command_uuid: String,
    pub verb: Verb,
    pub body_xml: String,
}

/// A command to queue: normalised XML without CmdID (see `syncml::normalise_command`).
#[derive(Debug, Clone, Copy)]
pub struct NewCommand<'a> {
    pub verb: Verb,
    pub target: &'a str,
    pub body_xml: &'a str,
}

/// A command that was sent to a device: what its answers are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCommand {
    /// The first Target LocURI.
    pub target: String,
    pub body_xml: String,
}

/// The queued command a device's Status or Results answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredCommand {
    pub verb: Verb,
    pub target: String,
}

/// One Status or Results element the device returned.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommandResult {
    pub kind: ResponseKind,
    pub status_code: Option<String>,
    pub body_xml: String,
    pub received_at: String,
}

/// A command and, per device, its delivery state and what the device answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommandView {
    pub command_id: String,
    pub verb: Verb,
    pub target: String,
    pub created_at: String,
    pub devices: Vec<DeviceCommand>,
}

/// One device's delivery of a command.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceCommand {
    pub device_id: String,
    pub state: CommandState,
    pub status_code: Option<String>,
    pub results: Vec<CommandResult>,
}
