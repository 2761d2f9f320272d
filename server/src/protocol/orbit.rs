//! The Orbit agent's decisions (seed diagram, first two arrows): which hardware UUIDs
//! may enroll, and what a host is told to do next.

use crate::model::EnrollmentState;

use super::enrollment::USER_HOST_PREFIX;

/// Checks the hardware UUID of an Orbit enroll request; returns it trimmed, or the
/// refusal's message.
pub fn check_hardware_uuid(hardware_uuid: &str) -> Result<&str, &'static str> {
    let hardware_uuid = hardware_uuid.trim();
    if hardware_uuid.is_empty() || hardware_uuid.len() > 128 {
        return Err("hardware_uuid is required (at most 128 characters)");
    }
    // Enrollment users' hosts are keyed `user:<name>`: an agent claiming such a key would
    // get a node key for that user's host and, with it, the user's devices.
    if hardware_uuid.starts_with(USER_HOST_PREFIX) {
        return Err("hardware_uuid may not start with \"user:\" (reserved for enrollment users)");
    }
    Ok(hardware_uuid)
}

/// What Orbit config tells a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// Managed: nothing to do.
    Nothing,
    /// Enroll in MDM, through the discovery endpoint.
    Enroll,
    /// The server wants the host out: unenroll programmatically.
    Unenroll,
}

/// A host without an active MDM enrollment is asked to enroll; one the server wants out
/// is asked to unenroll.
pub fn notification(mdm_state: Option<EnrollmentState>) -> Notification {
    match mdm_state {
        Some(EnrollmentState::Enrolled) => Notification::Nothing,
        Some(EnrollmentState::UnenrollPending) => Notification::Unenroll,
        _ => Notification::Enroll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_told_what_their_enrollment_needs() {
        assert_eq!(notification(None), Notification::Enroll);
        assert_eq!(
            notification(Some(EnrollmentState::Unenrolled)),
            Notification::Enroll
        );
        assert_eq!(
            notification(Some(EnrollmentState::Enrolled)),
            Notification::Nothing
        );
        assert_eq!(
            notification(Some(EnrollmentState::UnenrollPending)),
            Notification::Unenroll
        );
    }

    #[test]
    fn reserved_and_empty_hardware_uuids_are_refused() {
        assert_eq!(check_hardware_uuid(" abc "), Ok("abc"));
        assert!(check_hardware_uuid("  ").is_err());
        assert!(check_hardware_uuid("user:alice").is_err());
        assert!(check_hardware_uuid(&"x".repeat(129)).is_err());
    }
}
