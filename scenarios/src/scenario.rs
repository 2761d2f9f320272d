//! Scenario files: TOML documents naming a sequence of steps, each an arrow or note of
//! the enrollment sequence diagram or a management action, with expectations.
//!
//! ```toml
//! name = "happy-path"
//! description = "..."
//!
//! [[steps]]
//! step = "orbit_enroll"
//!
//! [[steps]]
//! step = "get_policies"
//! token = "not-a-node-key"          # override the DeviceEnrollmentUserToken
//! expect_fault = "s:Authentication" # negative expectation
//! ```
//! See `scenarios/README.md` for every step and option.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::capability::Capability;

/// A parsed scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `process`: without `--server`, run this scenario against its own reference
    /// server in a child process (needed by `kill_server`).
    #[serde(default)]
    pub server: ServerKind,
    /// The management authentication the scenario is written for (`mtls`, `digest`,
    /// `mtls-or-digest`): without `--server` it gets its own embedded server in that
    /// mode; an external server runs it only when declared so (`--management-auth`),
    /// else it is skipped.
    pub management_auth: Option<crate::target::ManagementAuth>,
    /// Run the steps for this many emulated devices at once (each its own device).
    #[serde(default = "default_devices")]
    pub devices: usize,
    /// The capabilities this scenario is about: against a target lacking one, the
    /// scenario is skipped (whole, or from the step that needed it on).
    #[serde(default)]
    pub requires: Vec<Capability>,
    /// The emulated machine (`[device]`).
    #[serde(default)]
    pub device: DeviceSection,
    pub steps: Vec<Step>,
    /// The steps as written, for `${variable}` substitution at run time.
    #[serde(skip)]
    pub raw_steps: Vec<toml::Value>,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Longer than common servers' header timeouts (nginx's `client_header_timeout` is
/// 60 s), so that a server closing at its own deadline is not flagged.
fn default_attack_wait() -> u64 {
    120
}

fn default_devices() -> usize {
    1
}

/// The `[device]` table: which machine the scenario's devices are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// OS build and edition by name (`windows10-19045-pro`, `windows11-22631-pro`,
    /// `windows11-26100-enterprise`); the CSP tree follows its applicability. Without it, a
    /// Windows 11 23H2 Pro machine.
    pub profile: Option<String>,
}

impl Scenario {
    /// A fresh machine of the scenario's profile, random identifiers.
    pub fn device_profile(&self) -> fake_windows_client::DeviceProfile {
        self.device
            .profile
            .as_deref()
            .and_then(fake_windows_client::DeviceProfile::named)
            .unwrap_or_else(fake_windows_client::DeviceProfile::random)
    }
}

/// Which embedded server a scenario needs when no external server is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// The shared in-process server.
    #[default]
    Shared,
    /// A dedicated server in a child process.
    Process,
    /// Two server processes on one Postgres database behind one URL (needs
    /// `WINMDM_TEST_POSTGRES_URL`; skipped without it).
    Replicas,
}

/// Which identity the device presents on the management route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// The certificate issued at enrollment (as Windows does).
    #[default]
    Enrolled,
    /// No client certificate at all.
    None,
    /// A certificate from a CA the server never saw.
    Foreign,
    /// The certificate this device held before its last renewal or unenrollment.
    Previous,
    /// No certificate: OMA-DM digest from the provisioned APPSRV credentials (package 1
    /// without them, the server's challenge answered).
    Digest,
}

/// What the Orbit agent did after one config poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentAction {
    None,
    Enrolled,
    Unenrolled,
}

/// One step. Every step may carry expectations; a step with `expect_status` or
/// `expect_fault` passes only when the server refuses as stated.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Orbit: `POST /api/fleet/orbit/enroll` with the enroll secret and hardware UUID.
    OrbitEnroll {
        enroll_secret: Option<String>,
        expect_status: Option<u16>,
    },
    /// Orbit: `POST /api/fleet/orbit/config`, polled until the enrollment notification
    /// arrives (`expect_notification = true`) or checked to be absent (`false`).
    OrbitConfig {
        #[serde(default = "default_true")]
        expect_notification: bool,
        #[serde(default = "default_max_polls")]
        max_polls: u32,
        #[serde(default)]
        poll_interval_ms: u64,
    },
    /// Orbit calls `RegisterDeviceWithManagement(upn, discovery URL, node key)`.
    RegisterDeviceWithManagement {
        upn: Option<String>,
        /// Replace the access token handed to Windows.
        token: Option<String>,
    },
    /// MS-MDE2: `GET` on the discovery URL.
    DiscoveryProbe {},
    /// MS-MDE2: SOAP Discover.
    Discover { expect_fault: Option<String> },
    /// MS-XCEP GetPolicies with the access token.
    GetPolicies {
        token: Option<String>,
        expect_fault: Option<String>,
    },
    /// Windows generates its key pair as the policy demands.
    GenerateKeyPair {},
    /// MS-WSTEP RequestSecurityToken with the CSR.
    RequestSecurityToken {
        token: Option<String>,
        expect_fault: Option<String>,
    },
    /// The issued certificate chains to the root in the provisioning document
    /// (checked with `openssl verify` too when openssl is installed).
    VerifyCertificate {},
    /// Registry keys and certificate stores as Windows writes them.
    CheckDeviceState {},
    /// Queue a command for the device through the admin API: raw `syncml`, or `verb` +
    /// `target` (+ `format`, `type`, `data`). `name` labels it for later checks.
    QueueCommand {
        name: Option<String>,
        syncml: Option<String>,
        verb: Option<String>,
        target: Option<String>,
        format: Option<String>,
        #[serde(rename = "type")]
        mime_type: Option<String>,
        data: Option<String>,
        /// Repeat `data` this many times (large payloads).
        repeat: Option<usize>,
    },
    /// One OMA-DM session over mTLS.
    ManagementSession {
        #[serde(default)]
        identity: Identity,
        expect_status: Option<u16>,
        #[serde(default)]
        min_round_trips: usize,
        /// Commands the server must send, as "Verb target".
        #[serde(default)]
        expect_commands: Vec<String>,
        /// The server must send no command at all.
        #[serde(default)]
        expect_no_commands: bool,
        /// Put this DeviceID in the SyncHdr Source instead of the device's own (a
        /// certificate bound to one device used for another).
        source_device_id: Option<String>,
    },
    /// A queued command (`command` = its name; default the last one) was answered with
    /// this status, is in this delivery state, and/or stored results with this text.
    CheckCommandResult {
        command: Option<String>,
        expect_status: Option<String>,
        expect_state: Option<String>,
        expect_result_contains: Option<String>,
        /// The stored Results data is at least this many bytes (large objects).
        expect_result_min_bytes: Option<usize>,
    },
    /// Create (or replace) a configuration profile through the admin API.
    CreateProfile {
        name: String,
        items: Vec<serde_json::Value>,
    },
    /// Assign a profile to this device.
    AssignProfile { name: String },
    /// The profile's state on this device: pending, verifying, verified or failed.
    CheckProfile {
        name: String,
        expect_state: String,
        expect_detail_contains: Option<String>,
    },
    /// The server asks the device to unenroll (admin API).
    ServerUnenroll {},
    /// Restart the embedded server on the same port and data (skipped for external
    /// servers).
    RestartServer {},
    /// Kill the server process with SIGKILL and start it again (scenarios with
    /// `server = "process"`; skipped for external servers). With `during_session`, the
    /// kill lands `after_ms` into a management session, which is expected to fail.
    KillServer {
        #[serde(default)]
        during_session: bool,
        #[serde(default)]
        after_ms: u64,
    },
    /// The device unenrolls itself (Alert 1226, then removal of its enrollment).
    Unenroll {},
    /// One Orbit config poll with the agent acting on it (RegisterDeviceWithManagement
    /// or UnregisterDeviceWithManagement), as the real agent does.
    OrbitAgent { expect_action: AgentAction },
    /// WSTEP certificate renewal, authenticated by the current certificate.
    Renew { expect_fault: Option<String> },
    /// Move the device's clock forward.
    AdvanceClock {
        #[serde(default)]
        days: u64,
        #[serde(default)]
        hours: u64,
    },
    /// Device-side checks: enrolled or not, renewal due, RebootNow executions.
    CheckDevice {
        enrolled: Option<bool>,
        renewal_due: Option<bool>,
        reboots: Option<usize>,
    },
    /// Check the last XML response of an earlier step (`of`, a step name; default the
    /// previous step with a response) at a path of element local names, e.g.
    /// `DiscoverResult/AuthPolicy`.
    CheckResponse {
        of: Option<String>,
        path: String,
        equals: Option<String>,
        contains: Option<String>,
        #[serde(default = "default_true")]
        exists: bool,
    },
    /// Check a field of the device's current client certificate: `subject_cn`,
    /// `issuer_cn`, `serial`, `thumbprint`, `key_bits`, `validity_days`, `client_auth`.
    CheckCertificate {
        field: String,
        equals: Option<String>,
        contains: Option<String>,
    },
    /// Check a registry value on the device (`key` may use `${enrollment_id}`).
    CheckRegistry {
        key: String,
        value: String,
        equals: Option<String>,
        #[serde(default = "default_true")]
        exists: bool,
    },
    /// Send new connections to replica `index` (0-based; `server = "replicas"`).
    UseReplica { index: usize },
    /// Wait: lets time-based server behaviour (redelivery) happen.
    Wait { ms: u64 },
    /// A security attack on the scenario's device (`kind`, see `attacks.rs`); a server
    /// that lets it through fails with a security finding. `max_wait_secs` bounds the
    /// `slow_request` attack.
    Attack {
        kind: Attack,
        #[serde(default = "default_attack_wait")]
        max_wait_secs: u64,
    },
    /// Every command queued in this scenario is in `expect_state` (and has
    /// `expect_status`), with at most `max_results` stored Results each: nothing lost,
    /// nothing duplicated.
    CheckAllCommands {
        expect_state: String,
        expect_status: Option<String>,
        #[serde(default = "default_max_results")]
        max_results: usize,
    },
}

/// The attacks of step `attack` (`kind = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// A second host enrolls with the victim's DeviceID.
    DeviceIdTakeover,
    /// Another enrolled device's certificate with the victim's DeviceID in the SyncHdr.
    ForeignDeviceId,
    /// The victim's captured management package, sent with another device's certificate.
    ReplayByOtherDevice,
    /// The victim's enrollment token used again for a second device.
    TokenReuse,
    /// The federated login page asked to post its token to an `appru` outside `ms-app://`.
    FederatedAppru,
    /// A request whose headers never end.
    SlowRequest,
    /// Digest credentials hashed with a wrong secret, after a challenge.
    DigestWrongSecret,
    /// Digest credentials the server already accepted, sent again in a new session.
    DigestReplay,
    /// Package 1 of an unknown DeviceID, without and with credentials: answered like
    /// a known device's.
    DigestUnknownDevice,
    /// A certificate from a foreign CA with good digest credentials
    /// (`mtls-or-digest`): the certificate is judged, the digest never replaces it.
    DigestWithBadCertificate,
}

fn default_true() -> bool {
    true
}
fn default_max_results() -> usize {
    1
}
fn default_max_polls() -> u32 {
    5
}

impl Step {
    /// The capability the step cannot run without, if any.
    pub fn needs(&self) -> Option<Capability> {
        match self {
            Step::OrbitEnroll { .. } | Step::OrbitConfig { .. } | Step::OrbitAgent { .. } => {
                Some(Capability::Orbit)
            }
            Step::QueueCommand { .. }
            | Step::CheckCommandResult { .. }
            | Step::CheckAllCommands { .. }
            | Step::CreateProfile { .. }
            | Step::AssignProfile { .. }
            | Step::CheckProfile { .. }
            | Step::ServerUnenroll {} => Some(Capability::AdminApi),
            Step::Renew { .. } => Some(Capability::Renewal),
            Step::RestartServer {} => Some(Capability::Restart),
            Step::KillServer { .. } => Some(Capability::Kill),
            Step::UseReplica { .. } => Some(Capability::Replicas),
            _ => None,
        }
    }

    /// The step's name as written in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            Step::OrbitEnroll { .. } => "orbit_enroll",
            Step::OrbitConfig { .. } => "orbit_config",
            Step::RegisterDeviceWithManagement { .. } => "register_device_with_management",
            Step::DiscoveryProbe {} => "discovery_probe",
            Step::Discover { .. } => "discover",
            Step::GetPolicies { .. } => "get_policies",
            Step::GenerateKeyPair {} => "generate_key_pair",
            Step::RequestSecurityToken { .. } => "request_security_token",
            Step::VerifyCertificate {} => "verify_certificate",
            Step::CheckDeviceState {} => "check_device_state",
            Step::QueueCommand { .. } => "queue_command",
            Step::ManagementSession { .. } => "management_session",
            Step::CheckCommandResult { .. } => "check_command_result",
            Step::CreateProfile { .. } => "create_profile",
            Step::AssignProfile { .. } => "assign_profile",
            Step::CheckProfile { .. } => "check_profile",
            Step::ServerUnenroll {} => "server_unenroll",
            Step::RestartServer {} => "restart_server",
            Step::KillServer { .. } => "kill_server",
            Step::CheckAllCommands { .. } => "check_all_commands",
            Step::Wait { .. } => "wait",
            Step::Attack { .. } => "attack",
            Step::UseReplica { .. } => "use_replica",
            Step::CheckResponse { .. } => "check_response",
            Step::CheckCertificate { .. } => "check_certificate",
            Step::CheckRegistry { .. } => "check_registry",
            Step::Unenroll {} => "unenroll",
            Step::OrbitAgent { .. } => "orbit_agent",
            Step::Renew { .. } => "renew",
            Step::AdvanceClock { .. } => "advance_clock",
            Step::CheckDevice { .. } => "check_device",
        }
    }
}

/// A scenario file that could not be loaded; the message names file, line and problem.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    pub path: String,
    pub message: String,
}

/// Loads one scenario file.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let err = |message: String| LoadError {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse(&text, path).map_err(err)
}

/// Parses scenario text; errors carry the line and column of the problem.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, String> {
    let mut s: Scenario = toml::from_str(text).map_err(|e| {
        let pos = e.span().map(|span| line_col(text, span.start));
        match pos {
            Some((line, col)) => format!("line {line}, column {col}: {}", e.message()),
            None => e.message().to_string(),
        }
    })?;
    if s.steps.is_empty() {
        return Err("a scenario needs at least one [[steps]] entry".into());
    }
    if s.devices == 0 || s.devices > 10_000 {
        return Err("devices must be between 1 and 10000".into());
    }
    if let Some(p) = &s.device.profile {
        let names = fake_windows_client::DeviceProfile::NAMES;
        if !names.contains(&p.as_str()) {
            return Err(format!(
                "[device] profile {p:?} is not one of {}",
                names.join(", ")
            ));
        }
    }
    let raw: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    s.raw_steps = raw
        .get("steps")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    s.path = path.to_path_buf();
    Ok(s)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// Expands paths: files as given, directories to their `*.toml` files, sorted.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| LoadError {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_step_names_the_line() {
        let text = "name = \"x\"\n\n[[steps]]\nstep = \"orbit_enroll\"\n\n[[steps]]\nstep = \"fly_to_moon\"\n";
        let e = parse(text, Path::new("x.toml")).unwrap_err();
        assert!(e.contains("line 6") || e.contains("line 7"), "{e}");
        assert!(e.contains("fly_to_moon"), "{e}");
    }

    #[test]
    fn requires_names_known_capabilities_only() {
        let ok = "name = \"x\"\nrequires = [\"orbit\", \"admin_api\"]\n[[steps]]\nstep = \"wait\"\nms = 0\n";
        let s = parse(ok, Path::new("x.toml")).unwrap();
        assert_eq!(s.requires, [Capability::Orbit, Capability::AdminApi]);
        let bad = ok.replace("admin_api", "time_travel");
        let e = parse(&bad, Path::new("x.toml")).unwrap_err();
        assert!(e.contains("time_travel"), "{e}");
    }

    #[test]
    fn device_profile_names_a_known_machine() {
        let ok = "name = \"x\"\n[device]\nprofile = \"windows10-19045-pro\"\n[[steps]]\nstep = \"wait\"\nms = 0\n";
        let s = parse(ok, Path::new("x.toml")).unwrap();
        assert_eq!(s.device_profile().os_version, "10.0.19045.3570");
        let bad = ok.replace("windows10-19045-pro", "windows95");
        let e = parse(&bad, Path::new("x.toml")).unwrap_err();
        assert!(
            e.contains("windows95") && e.contains("windows11-26100-enterprise"),
            "{e}"
        );
        let none = parse(
            &ok.replace("[device]\nprofile = \"windows10-19045-pro\"\n", ""),
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(none.device_profile().os_version, "10.0.22631.2428");
    }

    #[test]
    fn unknown_option_is_refused() {
        let text = "name = \"x\"\n[[steps]]\nstep = \"discovery_probe\"\nbogus = 1\n";
        assert!(parse(text, Path::new("x.toml")).is_err());
    }
}
