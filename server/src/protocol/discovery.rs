//! MS-MDE2 §3.1 discovery decisions: which authentication policy and enrollment
//! version to answer a Discover request with.

use crate::discovery::DiscoverRequest;
use crate::soap::{Fault, FaultSubcode};

/// What the DiscoverResponse offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverAnswer {
    /// Federated (through the login page) rather than OnPremise.
    pub federated: bool,
    pub enrollment_version: &'static str,
}

/// OnPremise (node key or user name and password) when the device offers it;
/// Federated, through the login page, for devices that only offer that and when
/// enrollment users are configured (`federated_offered`).
pub fn answer(
    d: &DiscoverRequest,
    federated_offered: bool,
    mid: Option<&str>,
) -> Result<DiscoverAnswer, Fault> {
    let offers = |p: &str| d.auth_policies.iter().any(|a| a == p);
    let federated = !d.auth_policies.is_empty()
        && !offers("OnPremise")
        && offers("Federated")
        && federated_offered;
    if !d.auth_policies.is_empty() && !offers("OnPremise") && !federated {
        return Err(Fault::new(
            FaultSubcode::MessageFormat,
            "this server only offers the OnPremise authentication policy",
        )
        .with_error_type("NotSupported")
        .relating_to(mid));
    }
    Ok(DiscoverAnswer {
        federated,
        enrollment_version: enrollment_version(&d.request_version),
    })
}

/// The EnrollmentVersion to answer with: the device's RequestVersion capped at 5.0
/// (the highest version whose wire format this server implements).
fn enrollment_version(requested: &str) -> &'static str {
    match requested.parse::<f32>() {
        Ok(v) if v < 4.0 => "3.0",
        Ok(v) if v < 5.0 => "4.0",
        _ => "5.0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(policies: &[&str], version: &str) -> DiscoverRequest {
        DiscoverRequest {
            auth_policies: policies.iter().map(|p| p.to_string()).collect(),
            request_version: version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn on_premise_first_federated_only_when_offered_on_both_sides() {
        let a = answer(&request(&["OnPremise", "Federated"], "4.0"), true, None).ok();
        assert_eq!(
            a,
            Some(DiscoverAnswer {
                federated: false,
                enrollment_version: "4.0"
            })
        );
        let a = answer(&request(&["Federated"], "6.0"), true, None).ok();
        assert_eq!(
            a,
            Some(DiscoverAnswer {
                federated: true,
                enrollment_version: "5.0"
            })
        );
        assert!(answer(&request(&["Federated"], "5.0"), false, None).is_err());
        assert!(
            answer(&request(&[], "3.0"), false, None).is_ok_and(|a| a.enrollment_version == "3.0")
        );
    }
}
