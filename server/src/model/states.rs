//! The states stored rows move through, defined once. Each is stored as its lowercase
//! name (the `state` columns of the schema); [`std::str::FromStr`] reads it back.

/// Defines a state enum stored as text: its variants with their stored names, `as_str`,
/// `FromStr`, `Display`, comparison with `&str` and `Deref` to the stored name.
macro_rules! stored_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database and shown by the admin API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::UnknownValue;
            fn from_str(s: &str) -> Result<Self, $crate::model::UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::UnknownValue { kind: stringify!($name), value: s.to_string() }),
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::model::UnknownValue;
            fn try_from(s: &str) -> Result<Self, $crate::model::UnknownValue> {
                s.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Reads as its stored name (`state.as_deref()` on an `Option` gives the text).
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

pub(crate) use stored_enum;

/// A text value that names no variant of the enum it was read as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

stored_enum! {
    /// Where an MDM enrollment stands.
    EnrollmentState {
        /// Managed: the device's certificate authenticates management sessions.
        Enrolled = "enrolled",
        /// An administrator asked the device to leave; it is managed until it acknowledges.
        UnenrollPending = "unenroll_pending",
        /// Ended: by the device, by its acknowledgement, or released by an administrator.
        Unenrolled = "unenrolled",
    }
}

impl EnrollmentState {
    /// Whether the device is still managed (its certificate opens management sessions).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            EnrollmentState::Enrolled | EnrollmentState::UnenrollPending
        )
    }
}

stored_enum! {
    /// Where a device certificate stands.
    CertState {
        /// The device's current certificate.
        Active = "active",
        /// Replaced by a renewal; accepted until its `retire_after` or the new one's first use.
        Retiring = "retiring",
        /// Authenticates nothing.
        Retired = "retired",
    }
}

stored_enum! {
    /// One device's delivery of a queued command.
    CommandState {
        /// Queued, not sent yet.
        Pending = "pending",
        /// Sent, no Status yet (sent again after `--redeliver-after-secs`).
        Sent = "sent",
        /// The device returned the command's Status.
        Acknowledged = "acknowledged",
        /// Withdrawn before it was sent.
        Cancelled = "cancelled",
    }
}

stored_enum! {
    /// One device's progress through a profile assignment.
    AssignmentState {
        /// Its commands are queued or sent.
        Pending = "pending",
        /// All acknowledged; the read-back Gets are out.
        Verifying = "verifying",
        /// Every node reads back the value set.
        Verified = "verified",
        /// A command failed or a node read back another value (see the detail).
        Failed = "failed",
    }
}

impl AssignmentState {
    /// Whether the assignment still moves (the device's answers may advance it).
    pub fn is_open(self) -> bool {
        matches!(self, AssignmentState::Pending | AssignmentState::Verifying)
    }
}

stored_enum! {
    /// Which half of an assignment a queued command belongs to.
    ProfilePhase {
        /// The profile's own Replace/Add commands.
        Apply = "apply",
        /// The Gets that read the applied values back.
        Verify = "verify",
    }
}

stored_enum! {
    /// What a stored device answer is.
    ResponseKind {
        Status = "Status",
        Results = "Results",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_stored_name() {
        for s in EnrollmentState::ALL {
            assert_eq!(s.as_str().parse::<EnrollmentState>(), Ok(*s));
        }
        for s in CertState::ALL {
            assert_eq!(s.as_str().parse::<CertState>(), Ok(*s));
        }
        for s in CommandState::ALL {
            assert_eq!(s.as_str().parse::<CommandState>(), Ok(*s));
        }
        for s in AssignmentState::ALL {
            assert_eq!(s.as_str().parse::<AssignmentState>(), Ok(*s));
        }
        assert!("Enrolled".parse::<EnrollmentState>().is_err());
        assert_eq!(
            serde_json::to_string(&EnrollmentState::UnenrollPending).ok(),
            Some("\"unenroll_pending\"".to_string())
        );
    }
}
