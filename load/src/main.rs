//! `winmdm-load`: the load simulator and the benchmark (docs/performance.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use winmdm::server_args::{target, ServerArgs};

/// glibc's allocator was about a tenth of the CPU time in the benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load simulator and benchmark for Windows MDM servers: many emulated Windows devices
/// against the embedded reference server or any external one.
#[derive(Parser)]
#[command(name = "winmdm-load", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load test: enroll many emulated devices, then keep them checking in on their
    /// (time-compressed) DMClient poll schedule; print throughput and latencies.
    Load(Box<LoadArgs>),
    /// Measure RSA signing, enrollment and SyncML throughput of this machine against
    /// embedded servers, and their ratios.
    Bench(BenchArgs),
    /// Crash consistency: devices and an admin client at work while the server (a child
    /// process) is killed with SIGKILL and restarted; then a checker compares the
    /// history with what the server stored (docs/reliability.md).
    Chaos(ChaosArgs),
    /// Run the reference server (winmdm-server's flags): the child process of `chaos`.
    Serve(Box<winmdm_server::Config>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Emulated devices to enroll.
    #[arg(long)]
    devices: usize,
    /// Enrollments and check-ins in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[command(flatten)]
    server: ServerArgs,
    /// Length of the run in seconds (enrollment always completes).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Device seconds per real second for the poll schedule (1440: a day per minute).
    #[arg(long, default_value_t = 1440.0)]
    time_scale: f64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML page with charts over time (throughput, latency
    /// percentiles per endpoint, errors, memory per device).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Directory of cached enrollment keys (load-test shortcut, see docs/performance.md).
    #[arg(long, value_name = "DIR")]
    key_pool: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ChaosArgs {
    /// Emulated devices enrolling and syncing throughout.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// SIGKILLs of the server.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Seed of the fault schedule and of the workload's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shortest and longest time between kills, in milliseconds.
    #[arg(long, default_value_t = 300)]
    min_gap_ms: u64,
    #[arg(long, default_value_t = 1500)]
    max_gap_ms: u64,
    /// Longest wait, in seconds, for the command queue to drain after the last kill.
    #[arg(long, default_value_t = 120)]
    quiet_secs: u64,
    /// Leave out the crash at each named crash point of the server after the random
    /// kills.
    #[arg(long)]
    skip_crash_points: bool,
    /// `env`: SQLite, or Postgres with WINMDM_TEST_POSTGRES_URL (one server process);
    /// `postgres-managed`: a private Postgres cluster started for the run (initdb and
    /// pg_ctl of the postgresql package; as the `postgres` user when run as root) with
    /// two server replicas on it, so that the run can stop the database and swap
    /// replicas.
    #[arg(long, value_enum, default_value_t = ChaosBackend::Env)]
    backend: ChaosBackend,
    /// Immediate stops of the database (`pg_ctl stop -m immediate`) and starts after an
    /// outage (postgres-managed).
    #[arg(long, default_value_t = 0)]
    db_restarts: usize,
    /// Shortest and longest database outage, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    min_outage_ms: u64,
    #[arg(long, default_value_t = 3000)]
    max_outage_ms: u64,
    /// Replica swaps: new connections go to the other replica, the old one is killed
    /// and a new process started in its place (postgres-managed).
    #[arg(long, default_value_t = 0)]
    swaps: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ChaosBackend {
    Env,
    PostgresManaged,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML page with charts over time (throughput, latency
    /// percentiles per endpoint, errors, memory per device).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Devices enrolled and checked in once in the last phase.
    #[arg(long, default_value_t = 2000)]
    devices: usize,
    /// Devices enrolled in the timed enrollment phase.
    #[arg(long, default_value_t = 1000)]
    enroll_devices: usize,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of each timed SyncML phase.
    #[arg(long, default_value_t = 8.0)]
    syncml_seconds: f64,
    /// Devices in sessions at once in the SyncML phase, each on its own connection.
    #[arg(long, default_value_t = 128)]
    syncml_devices: usize,
    /// Directory of cached enrollment keys.
    #[arg(long, value_name = "DIR")]
    key_pool: Option<PathBuf>,
    /// Key type of the embedded servers' TLS certificate: `ecdsa` (P-256, the server's
    /// default) or `rsa` (RSA-2048, a signature per full handshake).
    #[arg(long, value_name = "TYPE", default_value = "ecdsa", value_parser = ["ecdsa", "rsa"])]
    tls_key_type: String,
}

fn seconds(s: f64, what: &str) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(s).map_err(|_| format!("{what}: not a duration: {s}"))
}

async fn run_load(args: LoadArgs) -> Result<bool, String> {
    let opts = winmdm_load::load::LoadOptions {
        devices: args.devices,
        concurrency: args.concurrency,
        duration: seconds(args.duration, "--duration")?,
        time_scale: args.time_scale,
        key_pool_dir: args
            .key_pool
            .unwrap_or_else(winmdm_load::keypool::default_dir),
        checkin_once: false,
        progress: true,
        timeline: args.html.is_some(),
    };
    let (target, embedded) = target(args.server, None).await?;
    let report = winmdm_load::load::run(&target, &opts).await;
    if let Some(e) = embedded {
        e.control.shutdown().await;
    }
    let report = report.map_err(|e| e.to_string())?;
    report
        .print(&mut std::io::stdout())
        .map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", report.to_json());
    }
    if let Some(f) = &args.html {
        write_html(f, &winmdm_load::chart::load_page(&report))?;
    }
    Ok(report.stats.error_total() == 0)
}

async fn run_bench(args: BenchArgs) -> Result<bool, String> {
    let opts = winmdm_load::bench::BenchOptions {
        devices: args.devices,
        enroll_devices: args.enroll_devices,
        concurrency: args.concurrency,
        syncml_time: seconds(args.syncml_seconds, "--syncml-seconds")?,
        syncml_devices: args.syncml_devices.max(1),
        key_pool_dir: args
            .key_pool
            .unwrap_or_else(winmdm_load::keypool::default_dir),
        progress: true,
        timeline: args.html.is_some(),
        tls_key_type: if args.tls_key_type == "rsa" {
            winmdm_load::bench::TlsKeyType::Rsa
        } else {
            winmdm_load::bench::TlsKeyType::Ecdsa
        },
        ..Default::default()
    };
    let report = winmdm_load::bench::run(&opts)
        .await
        .map_err(|e| e.to_string())?;
    report
        .print(&mut std::io::stdout())
        .map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", report.to_json());
    }
    if let Some(f) = &args.html {
        write_html(f, &winmdm_load::chart::bench_page(&report))?;
    }
    Ok(true)
}

async fn run_chaos(a: ChaosArgs) -> Result<bool, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
    if !matches!(a.backend, ChaosBackend::PostgresManaged) && a.db_restarts + a.swaps > 0 {
        return Err("--db-restarts and --swaps need --backend postgres-managed".into());
    }
    let opts = winmdm_load::chaos::ChaosOptions {
        backend: match a.backend {
            ChaosBackend::Env => winmdm_load::chaos::Backend::FromEnvironment,
            ChaosBackend::PostgresManaged => winmdm_load::chaos::Backend::PostgresManaged,
        },
        db_restarts: a.db_restarts,
        outage: (
            std::time::Duration::from_millis(a.min_outage_ms),
            std::time::Duration::from_millis(a.max_outage_ms),
        ),
        swaps: a.swaps,
        server_env: Vec::new(),
        devices: a.devices,
        kills: a.kills,
        seed: a.seed,
        kill_gap: (
            std::time::Duration::from_millis(a.min_gap_ms),
            std::time::Duration::from_millis(a.max_gap_ms),
        ),
        quiet: std::time::Duration::from_secs(a.quiet_secs),
        crash_points: !a.skip_crash_points,
        serve_exe: exe,
        progress: true,
    };
    let report = winmdm_load::chaos::run(&opts)
        .await
        .map_err(|e| e.to_string())?;
    report
        .print(&mut std::io::stdout())
        .map_err(|e| e.to_string())?;
    Ok(report.violations.is_empty())
}

fn write_html(path: &std::path::Path, html: &str) -> Result<(), String> {
    std::fs::write(path, html).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("charts written to {}", path.display());
    Ok(())
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
    let result = match Cli::parse().command {
        Command::Load(a) => run_load(*a).await,
        Command::Bench(a) => run_bench(a).await,
        Command::Chaos(a) => run_chaos(a).await,
        Command::Serve(config) => winmdm_server::serve_until_interrupted(*config)
            .await
            .map(|()| true)
            .map_err(|e| e.to_string()),
        Command::Completions { shell } => winmdm::cli_docs::print_completions(
            <Cli as clap::CommandFactory>::command(),
            shell,
            "winmdm-load",
        ),
        Command::Man => winmdm::cli_docs::print_man(<Cli as clap::CommandFactory>::command()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("winmdm-load: {e}");
            ExitCode::from(2)
        }
    }
}
