//! Command-line front end for the emulated Windows device.

use clap::{Args, Parser, Subcommand};
use fake_windows_client::{ClientError, Device, DeviceProfile, TlsOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "fake-windows-client",
    about = "An emulated Windows device for Windows MDM servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct TlsArgs {
    /// PEM file with the CA that signed the server certificate.
    #[arg(long, conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,
    /// Accept any server certificate.
    #[arg(long)]
    insecure: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Orbit enroll, wait for the MDM enrollment notification, then enroll in MDM.
    Enroll {
        #[arg(long)]
        server: String,
        #[arg(long)]
        enroll_secret: String,
        #[arg(long)]
        state_dir: PathBuf,
        #[command(flatten)]
        tls: TlsArgs,
        /// User principal name passed to RegisterDeviceWithManagement.
        #[arg(long)]
        upn: Option<String>,
        /// Start like "Access work or school" from the user's address: discover at
        /// `https://enterpriseenrollment.<domain>/EnrollmentServer/Discovery.svc`
        /// instead of the URL in the Orbit notification (and use it as UPN).
        #[arg(long)]
        email: Option<String>,
        /// Discovery URL to use instead of the one derived from --email or announced by
        /// Orbit.
        #[arg(long)]
        discovery_url: Option<String>,
        /// Seconds between Orbit config polls.
        #[arg(long, default_value_t = 30)]
        poll_interval: u64,
        /// Give up after this many config polls.
        #[arg(long)]
        max_polls: Option<u64>,
    },
    /// Run one OMA-DM management session.
    Sync {
        #[arg(long)]
        state_dir: PathBuf,
        #[command(flatten)]
        tls: TlsArgs,
        /// Authenticate with OMA-DM MD5 digest (the provisioned w7 APPAUTH credentials)
        /// and present no client certificate; kept for later sessions.
        #[arg(long)]
        digest: bool,
    },
    /// Device-initiated unenrollment: Alert 1226 in a session, then local removal.
    Unenroll {
        #[arg(long)]
        state_dir: PathBuf,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Renew the MDM client certificate now (MS-WSTEP RequestType Renew).
    Renew {
        #[arg(long)]
        state_dir: PathBuf,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Print registry, certificate stores and enrollment information.
    Show {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
    /// Inspect the device's CSP tree: DDF access types, format and current value.
    Csp {
        #[command(subcommand)]
        action: CspAction,
        /// State directory of an enrolled device (default: a fresh random device).
        #[arg(long, global = true)]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CspAction {
    /// One node: its catalogue entry and what a server's Get answers.
    Get { path: String },
    /// The catalogue nodes under a prefix, with the current value of each leaf.
    List { prefix: String },
}

fn csp(action: &CspAction, state_dir: Option<&Path>) -> Result<(), String> {
    let fresh;
    let loaded;
    let (nodes, builtins) = match state_dir {
        Some(d) => {
            loaded = Device::load(d, TlsOptions::default()).map_err(|e| e.to_string())?;
            (
                loaded.nodes().clone(),
                loaded.profile().builtins(loaded.device_id()),
            )
        }
        None => {
            fresh = DeviceProfile::random();
            (Default::default(), fresh.builtins("0"))
        }
    };
    let out = match action {
        CspAction::Get { path } => fake_windows_client::inspect::get(&nodes, &builtins, path),
        CspAction::List { prefix } => {
            fake_windows_client::inspect::list(&nodes, &builtins, prefix).map(|l| l.join("\n"))
        }
    };
    println!("{}", out?);
    Ok(())
}

fn tls_options(t: &TlsArgs) -> Result<TlsOptions, ClientError> {
    Ok(TlsOptions {
        ca_pem: match &t.ca_file {
            Some(p) => Some(std::fs::read(p)?),
            None => None,
        },
        insecure: t.insecure,
    })
}

#[allow(clippy::too_many_arguments)]
async fn enroll(
    server: &str,
    secret: &str,
    state_dir: &Path,
    tls: TlsOptions,
    upn: Option<String>,
    discovery_url: Option<String>,
    poll_interval: u64,
    max_polls: Option<u64>,
) -> Result<(), ClientError> {
    let mut device = if state_dir
        .join(fake_windows_client::device::STATE_FILE)
        .exists()
    {
        Device::load(state_dir, tls)?
    } else {
        Device::new(DeviceProfile::random(), tls)?
    };
    if device.enrollment().is_some() {
        println!("device {} is already enrolled", device.device_id());
        return Ok(());
    }
    let node_key = device.orbit_enroll(server, secret).await?;
    device.save(state_dir)?;
    println!(
        "orbit enrolled: device {} node key {node_key}",
        device.device_id()
    );
    let mut polls = 0u64;
    let discovery = loop {
        if let Some(url) = &discovery_url {
            break url.clone();
        }
        polls += 1;
        let n = device.orbit_config().await?;
        if n.needs_programmatic_windows_mdm_enrollment {
            match n.windows_mdm_discovery_endpoint {
                Some(url) if !url.is_empty() => break url,
                _ => {
                    return Err(ClientError::Missing {
                        step: "orbit_config",
                        element: "notifications.windows_mdm_discovery_endpoint".into(),
                    })
                }
            }
        }
        if max_polls.is_some_and(|m| polls >= m) {
            return Err(ClientError::State(format!(
                "no MDM enrollment notification after {polls} config polls"
            )));
        }
        tracing::info!(polls, "no enrollment notification yet");
        tokio::time::sleep(Duration::from_secs(poll_interval)).await;
    };
    let upn = upn.unwrap_or_else(|| device.profile().upn.clone());
    let token = node_key.clone();
    let result = device
        .register_device_with_management(&upn, &discovery, &token)
        .await;
    device.save(state_dir)?;
    result?;
    if let Some(e) = device.enrollment() {
        println!(
            "enrolled with {} (provider {})",
            e.management_url, e.provider_id
        );
        println!("  enrollment {}", e.enrollment_guid);
        println!(
            "  client certificate {} in {}",
            e.client_thumbprint, e.client_store
        );
        println!("  root certificate {}", e.root_thumbprint);
    }
    Ok(())
}

async fn sync(state_dir: &Path, tls: TlsOptions, digest: bool) -> Result<(), ClientError> {
    let mut device = Device::load(state_dir, tls)?;
    if digest {
        device.set_management_auth(fake_windows_client::ManagementAuth::Digest);
    }
    let result = device.sync().await;
    device.save(state_dir)?;
    let report = result?;
    println!(
        "session {}: {} round trip(s)",
        report.session_id, report.round_trips
    );
    for c in &report.server_commands {
        println!(
            "  {} {} {} -> {}",
            c.cmd_id,
            c.verb,
            c.target.as_deref().unwrap_or("-"),
            c.status
        );
    }
    Ok(())
}

async fn unenroll(state_dir: &Path, tls: TlsOptions) -> Result<(), ClientError> {
    let mut device = Device::load(state_dir, tls)?;
    let result = device.unenroll().await;
    device.save(state_dir)?;
    let report = result?;
    println!(
        "unenrolled (session {}: {} round trip(s)); DeviceID {} kept",
        report.session_id,
        report.round_trips,
        device.device_id()
    );
    Ok(())
}

async fn renew(state_dir: &Path, tls: TlsOptions) -> Result<(), ClientError> {
    let mut device = Device::load(state_dir, tls)?;
    let result = device.renew().await;
    device.save(state_dir)?;
    result?;
    if let Some(e) = device.enrollment() {
        println!(
            "renewed: client certificate {} in {}",
            e.client_thumbprint, e.client_store
        );
    }
    Ok(())
}

fn show(state_dir: &Path) -> Result<(), ClientError> {
    let device = Device::load(
        state_dir,
        TlsOptions {
            ca_pem: None,
            insecure: true,
        },
    )?;
    println!("DeviceID {}", device.device_id());
    println!("HWDevID  {}", device.hw_dev_id());
    if let Some(k) = device.node_key() {
        println!("Orbit node key {k}");
    }
    println!("\nRegistry:");
    for (key, values) in &device.registry().keys {
        println!("{key}");
        for (name, v) in values {
            println!("    {name:<24} {v}");
        }
    }
    println!("\nCertificate stores:");
    for (store, c) in device.cert_store().all() {
        println!("{store} {}", c.thumbprint);
        match x509_parser::parse_x509_certificate(&c.der) {
            Ok((_, x)) => {
                println!("    subject  {}", x.subject());
                println!("    issuer   {}", x.issuer());
                println!(
                    "    validity {} .. {}",
                    x.validity().not_before,
                    x.validity().not_after
                );
            }
            Err(e) => println!("    (unparseable: {e})"),
        }
        if c.private_key_pem.is_some() {
            println!(
                "    private key in {}",
                c.key_container.as_deref().unwrap_or("?")
            );
        }
    }
    println!("Device clock {}", device.clock().now_rfc3339());
    if device.reboots() > 0 {
        println!("RebootNow requests: {}", device.reboots());
    }
    match device.enrollment() {
        Some(e) => {
            println!("\nEnrollment {}", e.enrollment_guid);
            println!("    provider   {}", e.provider_id);
            println!("    management {}", e.management_url);
            println!("    discovery  {}", e.discovery_url);
            println!("    UPN        {}", e.upn);
            println!("    criteria   {}", e.cert_search_criteria);
            println!("    enrollment service {}", e.enrollment_service_url);
            println!(
                "    renewal    period {:?} days, retry {:?} days, ROBO {:?}; due now: {}",
                e.renew.renew_period_days,
                e.renew.retry_interval_days,
                e.renew.robo_support,
                device.renewal_due()
            );
            if let Some(t) = device.next_poll_at() {
                println!("    next poll  {t}");
            }
        }
        None => println!("\nNot enrolled"),
    }
    Ok(())
}

/// Writes generated text (completions, man page) to stdout; a closed pipe is an error,
/// not a panic (the text is generated into memory first).
fn print_bytes(b: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(b).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-windows-client: stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Enroll {
            server,
            enroll_secret,
            state_dir,
            tls,
            upn,
            email,
            discovery_url,
            poll_interval,
            max_polls,
        } => {
            let derived = match (&discovery_url, &email) {
                (None, Some(e)) => {
                    match fake_windows_client::discovery::discovery_url_for_email(e) {
                        Ok(url) => Some(url),
                        Err(e) => {
                            eprintln!("fake-windows-client: --email: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                _ => None,
            };
            match tls_options(&tls) {
                Ok(t) => {
                    enroll(
                        &server,
                        &enroll_secret,
                        &state_dir,
                        t,
                        upn.or(email),
                        discovery_url.or(derived),
                        poll_interval,
                        max_polls,
                    )
                    .await
                }
                Err(e) => Err(e),
            }
        }
        Command::Sync {
            state_dir,
            tls,
            digest,
        } => match tls_options(&tls) {
            Ok(t) => sync(&state_dir, t, digest).await,
            Err(e) => Err(e),
        },
        Command::Unenroll { state_dir, tls } => match tls_options(&tls) {
            Ok(t) => unenroll(&state_dir, t).await,
            Err(e) => Err(e),
        },
        Command::Renew { state_dir, tls } => match tls_options(&tls) {
            Ok(t) => renew(&state_dir, t).await,
            Err(e) => Err(e),
        },
        Command::Show { state_dir } => show(&state_dir),
        Command::Completions { shell } => {
            let mut text = Vec::new();
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "fake-windows-client", &mut text);
            return print_bytes(&text);
        }
        Command::Man => {
            let mut text = Vec::new();
            let cmd = <Cli as clap::CommandFactory>::command();
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut text) {
                eprintln!("fake-windows-client: {e}");
                return ExitCode::FAILURE;
            }
            return print_bytes(&text);
        }
        Command::Csp { action, state_dir } => {
            if let Err(e) = csp(&action, state_dir.as_deref()) {
                eprintln!("fake-windows-client: {e}");
                return ExitCode::FAILURE;
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-windows-client: {e}");
            ExitCode::FAILURE
        }
    }
}
