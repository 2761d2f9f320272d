//! What a target can do. A scenario lists the capabilities it is about (`requires`);
//! each step needs at most one. A step needing a capability the target lacks is
//! skipped with the reason, and so is the rest of a scenario that requires it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// One thing a server (or the harness's hold on it) may or may not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// The Orbit agent endpoints (`/api/fleet/orbit/...`); detected: a 404 or 405 on
    /// the Orbit enroll means the server has none.
    Orbit,
    /// The admin API (queue commands, profiles, server-side unenrollment); lacking
    /// without an admin token.
    AdminApi,
    /// Federated enrollment (an AuthenticationServiceUrl login page).
    Federated,
    /// WSTEP certificate renewal.
    Renewal,
    /// The harness can restart the server on the same data (embedded server only).
    Restart,
    /// The harness can SIGKILL the server process (embedded server only).
    Kill,
    /// Several server processes on one database (embedded server with Postgres only).
    Replicas,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::Orbit,
        Capability::AdminApi,
        Capability::Federated,
        Capability::Renewal,
        Capability::Restart,
        Capability::Kill,
        Capability::Replicas,
    ];

    /// The name used in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Orbit => "orbit",
            Capability::AdminApi => "admin_api",
            Capability::Federated => "federated",
            Capability::Renewal => "renewal",
            Capability::Restart => "restart",
            Capability::Kill => "kill",
            Capability::Replicas => "replicas",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().replace('-', "_");
        Capability::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Capability::ALL.iter().map(|c| c.name()).collect();
                format!("unknown capability {s:?} (one of {})", names.join(", "))
            })
    }
}

/// The capabilities a target lacks, each with why; shared by every scenario of a run,
/// so what one scenario detects (no Orbit endpoints) holds for the following ones.
#[derive(Debug, Clone, Default)]
pub struct Lacking(Arc<Mutex<BTreeMap<Capability, String>>>);

impl Lacking {
    /// Why the target lacks `c`, or None when it has it (as far as is known).
    pub fn why(&self, c: Capability) -> Option<String> {
        self.0.lock().ok()?.get(&c).cloned()
    }

    /// Records that the target lacks `c` (the first reason stays).
    pub fn mark(&self, c: Capability, why: impl Into<String>) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(c).or_insert_with(|| why.into());
        }
    }

    /// The first of `required` the target lacks, with why.
    pub fn first_of(&self, required: &[Capability]) -> Option<(Capability, String)> {
        required.iter().find_map(|&c| self.why(c).map(|w| (c, w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_spellings() {
        assert_eq!("admin_api".parse(), Ok(Capability::AdminApi));
        assert_eq!("admin-api".parse(), Ok(Capability::AdminApi));
        assert!("teleport".parse::<Capability>().is_err());
    }

    #[test]
    fn a_detection_is_shared_and_the_first_reason_stays() {
        let l = Lacking::default();
        let shared = l.clone();
        l.mark(Capability::Orbit, "HTTP 404");
        l.mark(Capability::Orbit, "HTTP 405");
        assert_eq!(shared.why(Capability::Orbit).as_deref(), Some("HTTP 404"));
        assert_eq!(
            shared.first_of(&[Capability::Kill, Capability::Orbit]),
            Some((Capability::Orbit, "HTTP 404".into()))
        );
    }
}
