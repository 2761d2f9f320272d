//! The server under test and how to reach it.

use fake_windows_client::TlsOptions;

use crate::capability::Lacking;

/// The server under test and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub server_url: String,
    pub enroll_secret: String,
    /// Bearer token of the admin API (needed by queue_command / check_command_result).
    pub admin_token: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    /// The embedded server's controls (restart, kill), absent for external servers.
    pub control: Option<std::sync::Arc<crate::server_control::Control>>,
    /// The `winmdm` executable (run as `winmdm serve`), for scenarios that need the
    /// embedded server as a process.
    pub serve_exe: Option<std::path::PathBuf>,
    /// A DeviceEnrollmentUserToken to enroll with: the Orbit steps are skipped (servers
    /// that are not Orbit-driven).
    pub token: Option<String>,
    /// The discovery URL, when it is not `<server>/EnrollmentServer/Discovery.svc` (used
    /// when no Orbit notification announces one).
    pub discovery_url: Option<String>,
    /// The only AuthPolicy the devices offer (`OnPremise` or `Federated`); None offers
    /// both, as Windows does.
    pub auth_policy: Option<String>,
    /// User name and password for OnPremise UsernameToken or the federated login page.
    pub credentials: Option<(String, String)>,
    /// The capabilities the target lacks (declared or detected), shared by the run.
    pub lacking: Lacking,
    /// How the server authenticates management sessions (the embedded one: `mtls`; an
    /// external one: as declared with `--management-auth`).
    pub management_auth: ManagementAuth,
}

/// How a server authenticates management sessions (`winmdm-server --management-auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ManagementAuth {
    /// The client certificate issued at enrollment.
    #[default]
    Mtls,
    /// OMA-DM MD5 digest (`syncml:auth-md5`) only.
    Digest,
    /// A presented certificate is judged; a connection without one may use digest.
    MtlsOrDigest,
}

impl ManagementAuth {
    /// The name used in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ManagementAuth::Mtls => "mtls",
            ManagementAuth::Digest => "digest",
            ManagementAuth::MtlsOrDigest => "mtls-or-digest",
        }
    }
}

impl std::fmt::Display for ManagementAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Target {
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_pem: self.ca_pem.clone(),
            insecure: self.insecure,
        }
    }
}
