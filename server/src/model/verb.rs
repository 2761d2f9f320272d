//! The OMA-DM 1.2 command elements (OMA-DM representation protocol §6.6), defined once,
//! with the subsets the server acts on.

use super::states::stored_enum;

stored_enum! {
    /// An OMA-DM command element, by its element name.
    Verb {
        Add = "Add",
        Alert = "Alert",
        Atomic = "Atomic",
        Copy = "Copy",
        Delete = "Delete",
        Exec = "Exec",
        Get = "Get",
        Map = "Map",
        Replace = "Replace",
        Results = "Results",
        Search = "Search",
        Sequence = "Sequence",
        Status = "Status",
    }
}

impl Verb {
    /// Commands built from parts (`verb`, `target`, `format`, `type`, `data`).
    pub const BUILDABLE: &'static [Verb] = &[
        Verb::Get,
        Verb::Add,
        Verb::Replace,
        Verb::Delete,
        Verb::Exec,
    ];

    /// Whether the server may queue this command for a device.
    pub fn queueable(self) -> bool {
        Self::BUILDABLE.contains(&self) || matches!(self, Verb::Atomic | Verb::Sequence)
    }

    /// Whether the command may appear inside Atomic or Sequence (and gets its own CmdID).
    pub fn nestable(self) -> bool {
        self.queueable() || self == Verb::Copy
    }

    /// Whether a profile item may use the command: profiles set values.
    pub fn sets_value(self) -> bool {
        matches!(self, Verb::Replace | Verb::Add)
    }

    /// The Status a server answers a client command with when it takes no further
    /// action: Alert, Replace (DevInfo) and Results are accepted; clients send no other
    /// commands to a server in OMA-DM 1.2 DM sessions (406 "Optional feature not
    /// supported").
    pub fn client_status(verb: Option<Verb>) -> u16 {
        match verb {
            Some(Verb::Alert | Verb::Replace | Verb::Results) => 200,
            _ => 406,
        }
    }

    /// `Get, Add, ...` for messages naming a subset.
    pub fn list(verbs: &[Verb]) -> String {
        verbs
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets() {
        assert!(Verb::Atomic.queueable() && !Verb::Copy.queueable() && Verb::Copy.nestable());
        assert!(!Verb::Status.queueable() && !Verb::Alert.nestable());
        assert!(Verb::Replace.sets_value() && !Verb::Get.sets_value());
        assert_eq!(Verb::client_status(Some(Verb::Results)), 200);
        assert_eq!(Verb::client_status(Some(Verb::Get)), 406);
        assert_eq!(Verb::client_status(None), 406);
        assert_eq!(
            Verb::list(Verb::BUILDABLE),
            "Get, Add, Replace, Delete, Exec"
        );
    }
}
