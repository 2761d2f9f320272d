use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use winmdm::runner::{run_scenario, Target};
use winmdm::{embedded, report, scenario};

/// Conformance harness for Windows MDM servers: walks emulated Windows devices through
/// scripted scenarios against the embedded reference server or any external one.
#[derive(Parser)]
#[command(name = "winmdm", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files (default: the bundled suite) and report each step.
    Run(RunArgs),
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Scenario files or directories of `*.toml` files.
    paths: Vec<PathBuf>,
    /// Base URL of an external server to test instead of the embedded one.
    #[arg(long, env = "WINMDM_SERVER", requires = "enroll_secret")]
    server: Option<String>,
    /// Orbit enroll secret of the external server.
    #[arg(long, env = "WINMDM_ENROLL_SECRET")]
    enroll_secret: Option<String>,
    /// Admin API bearer token of the external server (for command steps).
    #[arg(long, env = "WINMDM_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// PEM file with the certificate(s) that sign the server's TLS certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Accept any server TLS certificate.
    #[arg(long, conflicts_with = "ca_file")]
    insecure: bool,
}

fn default_suite() -> PathBuf {
    let local = PathBuf::from("scenarios/suite");
    if local.is_dir() {
        local
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"))
    }
}

async fn run(args: RunArgs) -> Result<bool, String> {
    let paths = if args.paths.is_empty() {
        vec![default_suite()]
    } else {
        args.paths
    };
    let files = scenario::collect(&paths).map_err(|e| e.to_string())?;
    let scenarios = files
        .iter()
        .map(|f| scenario::load(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if scenarios.is_empty() {
        return Err("no scenario files found".into());
    }
    let (target, _embedded) = match args.server {
        Some(url) => {
            let ca_pem = match &args.ca_file {
                Some(f) => Some(std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?),
                None => None,
            };
            let target = Target {
                server_url: url.trim_end_matches('/').to_string(),
                enroll_secret: args.enroll_secret.unwrap_or_default(),
                admin_token: args.admin_token,
                ca_pem,
                insecure: args.insecure,
                control: None,
            };
            (target, None)
        }
        None => {
            let e = embedded::start().await?;
            println!("embedded winmdm-server at {}\n", e.target.server_url);
            (e.target.clone(), Some(e))
        }
    };
    let mut outcomes = Vec::new();
    let mut stdout = std::io::stdout();
    for s in &scenarios {
        let o = run_scenario(&target, s).await;
        report::print_scenario(&mut stdout, &o);
        outcomes.push(o);
    }
    report::print_summary(&mut stdout, &outcomes);
    Ok(outcomes.iter().all(|o| o.passed()))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Run(a)) => a,
        None => RunArgs::default(),
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("winmdm: {e}");
            ExitCode::from(2)
        }
    }
}
