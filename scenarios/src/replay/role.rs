//! What a captured request is, read from its method and content rather than its path
//! (every server names its endpoints differently): the discovery GET probe, the SOAP
//! operations by their WS-Addressing Action ([MS-MDE2] §3.1.4.1 Discover, [MS-XCEP]
//! §3.1.4.1 GetPolicies, [MS-WSTEP] §3.1.4.1 RequestSecurityToken with RequestType Issue
//! or Renew), OMA-DM by its SyncML root, Orbit by its JSON fields.

/// The role of a request in a Windows device's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    DiscoveryProbe,
    Discover,
    GetPolicies,
    Enroll,
    Renew,
    Management,
    OrbitEnroll,
    OrbitConfig,
    /// Nothing a Windows MDM client sends (a browser's asset, an admin call).
    Unknown,
}

impl Role {
    /// The scenario step name the role corresponds to.
    pub fn step(self) -> &'static str {
        match self {
            Role::DiscoveryProbe => "discovery_probe",
            Role::Discover => "discover",
            Role::GetPolicies => "get_policies",
            Role::Enroll => "request_security_token",
            Role::Renew => "renew_certificate",
            Role::Management => "management_session",
            Role::OrbitEnroll => "orbit_enroll",
            Role::OrbitConfig => "orbit_config",
            Role::Unknown => "unknown",
        }
    }
}

const ACTION_DISCOVER_SUFFIX: &str = "/IDiscoveryService/Discover";
const ACTION_GET_POLICIES_SUFFIX: &str = "/IPolicy/GetPolicies";
const ACTION_RST_SUFFIX: &str = "/RST/wstep";

fn local_text<'a>(doc: &'a roxmltree::Document, name: &str) -> Option<&'a str> {
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(str::trim)
}

fn soap_role(doc: &roxmltree::Document) -> Role {
    let action = local_text(doc, "Action").unwrap_or_default();
    let has = |name: &str| {
        doc.descendants()
            .any(|n| n.is_element() && n.tag_name().name() == name)
    };
    if action.ends_with(ACTION_DISCOVER_SUFFIX) || has("Discover") {
        Role::Discover
    } else if action.ends_with(ACTION_GET_POLICIES_SUFFIX) || has("GetPolicies") {
        Role::GetPolicies
    } else if action.ends_with(ACTION_RST_SUFFIX) || has("RequestSecurityToken") {
        // RequestType Renew (MS-WSTEP §3.1.4.1.2; certificate renewal for Windows MDM).
        let renew = local_text(doc, "RequestType").is_some_and(|t| t.ends_with("/Renew"));
        if renew {
            Role::Renew
        } else {
            Role::Enroll
        }
    } else {
        Role::Unknown
    }
}

/// The role of a request.
pub fn role_of(method: &str, url: &str, body: &str) -> Role {
    let trimmed = body.trim_start();
    if trimmed.starts_with('<') {
        let Ok(doc) = roxmltree::Document::parse(trimmed) else {
            return Role::Unknown;
        };
        return match doc.root_element().tag_name().name() {
            "Envelope" => soap_role(&doc),
            "SyncML" => Role::Management,
            _ => Role::Unknown,
        };
    }
    if trimmed.starts_with('{') {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(trimmed) else {
            return Role::Unknown;
        };
        if v.get("enroll_secret").is_some() {
            return Role::OrbitEnroll;
        }
        let path = url.split('?').next().unwrap_or(url).to_ascii_lowercase();
        if v.get("orbit_node_key").is_some() && path.ends_with("/config") {
            return Role::OrbitConfig;
        }
        return Role::Unknown;
    }
    // The probe: a body-less GET of the discovery URL before the Discover POST
    // ([MS-MDE2] §3.1.5.1). Windows derives that URL (…/EnrollmentServer/Discovery.svc)
    // or is given it; either way it names discovery.
    let path = url.split('?').next().unwrap_or(url).to_ascii_lowercase();
    if method.eq_ignore_ascii_case("GET") && trimmed.is_empty() && path.contains("discovery") {
        return Role::DiscoveryProbe;
    }
    Role::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_content_not_paths() {
        let v = |f: &str| {
            std::fs::read_to_string(format!(
                "{}/../testdata/vectors/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let u = "https://a.example/whatever";
        assert_eq!(
            role_of("POST", u, &v("mde2-discover-request.xml")),
            Role::Discover
        );
        assert_eq!(
            role_of("POST", u, &v("xcep-getpolicies-request.xml")),
            Role::GetPolicies
        );
        assert_eq!(
            role_of("POST", u, &v("wstep-renew-request.xml")),
            Role::Renew
        );
        assert_eq!(
            role_of("POST", u, &v("omadm-pkg2-server.xml")),
            Role::Management
        );
        assert_eq!(
            role_of("POST", u, r#"{"enroll_secret":"x","hardware_uuid":"y"}"#),
            Role::OrbitEnroll
        );
        assert_eq!(
            role_of(
                "POST",
                "https://a/api/fleet/orbit/config",
                r#"{"orbit_node_key":"k"}"#
            ),
            Role::OrbitConfig
        );
        assert_eq!(
            role_of("GET", "https://a/EnrollmentServer/Discovery.svc", ""),
            Role::DiscoveryProbe
        );
        assert_eq!(role_of("GET", "https://a/favicon.ico", ""), Role::Unknown);
    }
}
