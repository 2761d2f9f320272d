//! The command-line description of a target server, shared by `winmdm` and
//! `winmdm-load`: an external server by URL with its credentials, or the embedded one.

use std::path::PathBuf;

use crate::capability::{Capability, Lacking};
use crate::embedded;
use crate::target::{ManagementAuth, Target};

/// How to reach a server (embedded when `--server` is absent).
#[derive(clap::Args, Default, Clone)]
pub struct ServerArgs {
    /// Base URL of an external server to test instead of the embedded one.
    #[arg(long, env = "WINMDM_SERVER")]
    pub server: Option<String>,
    /// DeviceEnrollmentUserToken to enroll with directly: the Orbit steps are skipped
    /// (for servers that do not run the Orbit endpoints).
    #[arg(long, env = "WINMDM_TOKEN")]
    pub token: Option<String>,
    /// Discovery URL of the external server when Orbit does not announce one (default
    /// `<server>/EnrollmentServer/Discovery.svc`, the path Windows itself uses).
    #[arg(long, env = "WINMDM_DISCOVERY_URL")]
    pub discovery_url: Option<String>,
    /// The only AuthPolicy the devices offer in Discover: OnPremise or Federated (by
    /// default both, as Windows).
    #[arg(long, value_parser = ["OnPremise", "Federated"])]
    pub auth_policy: Option<String>,
    /// User name for OnPremise UsernameToken authentication or the federated login page.
    #[arg(long, env = "WINMDM_USERNAME", requires = "password")]
    pub username: Option<String>,
    /// Password going with --username.
    #[arg(long, env = "WINMDM_PASSWORD", requires = "username")]
    pub password: Option<String>,
    /// Orbit enroll secret of the external server.
    #[arg(long, env = "WINMDM_ENROLL_SECRET")]
    pub enroll_secret: Option<String>,
    /// Admin API bearer token of the external server (for command steps).
    #[arg(long, env = "WINMDM_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// PEM file with the certificate(s) that sign the server's TLS certificate.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server TLS certificate.
    #[arg(long, conflicts_with = "ca_file")]
    pub insecure: bool,
    /// Capabilities the server lacks (comma-separated: orbit, admin_api, federated,
    /// renewal, restart, kill, replicas): steps needing one are skipped, and so are
    /// scenarios that require one.
    #[arg(long, value_name = "CAPS", value_delimiter = ',')]
    pub without: Vec<Capability>,
    /// How the external server authenticates management sessions (its
    /// `--management-auth`): scenarios written for another mode are skipped.
    #[arg(long, value_enum, default_value_t = ManagementAuth::Mtls)]
    pub management_auth: ManagementAuth,
}

/// What an external server lacks for the harness: it cannot be restarted, killed or
/// replicated by it; no admin API without a token; no Orbit when enrolling with a token.
fn external_lacks(admin_token: bool, token: bool) -> Lacking {
    let lacking = Lacking::default();
    lacking.mark(
        Capability::Restart,
        "an external server cannot be restarted by the harness",
    );
    lacking.mark(
        Capability::Kill,
        "an external server cannot be killed by the harness",
    );
    lacking.mark(
        Capability::Replicas,
        "an external server's replicas are not the harness's to route",
    );
    if !admin_token {
        lacking.mark(Capability::AdminApi, "no --admin-token given");
    }
    if token {
        lacking.mark(
            Capability::Orbit,
            "enrolling with --token, without the Orbit agent",
        );
    }
    lacking
}

/// The target server and, when embedded, the handle keeping it alive.
pub async fn target(
    args: ServerArgs,
    serve_exe: Option<PathBuf>,
) -> Result<(Target, Option<embedded::Embedded>), String> {
    let without = args.without.clone();
    let (target, embedded) = target_of(args, serve_exe).await?;
    for c in without {
        target.lacking.mark(c, "declared with --without");
    }
    Ok((target, embedded))
}

async fn target_of(
    args: ServerArgs,
    serve_exe: Option<PathBuf>,
) -> Result<(Target, Option<embedded::Embedded>), String> {
    match args.server {
        Some(url) => {
            let ca_pem = match &args.ca_file {
                Some(f) => Some(std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?),
                None => None,
            };
            let target = Target {
                lacking: external_lacks(args.admin_token.is_some(), args.token.is_some()),
                server_url: url.trim_end_matches('/').to_string(),
                enroll_secret: args.enroll_secret.unwrap_or_default(),
                admin_token: args.admin_token,
                ca_pem,
                insecure: args.insecure,
                control: None,
                serve_exe: None,
                token: args.token,
                discovery_url: args.discovery_url,
                auth_policy: args.auth_policy,
                credentials: args.username.zip(args.password),
                management_auth: args.management_auth,
            };
            if target.enroll_secret.is_empty()
                && target.token.is_none()
                && target.credentials.is_none()
                && target.auth_policy.as_deref() != Some("Federated")
            {
                return Err(
                    "an external server needs --enroll-secret (Orbit), --token, --username/--password or --auth-policy Federated".into(),
                );
            }
            Ok((target, None))
        }
        None => {
            let e = embedded::start_with(serve_exe).await?;
            println!("embedded winmdm-server at {}\n", e.target.server_url);
            Ok((e.target.clone(), Some(e)))
        }
    }
}
