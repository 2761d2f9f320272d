use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use winmdm::capability::{Capability, Lacking};
use winmdm::report::canon::Origins;
use winmdm::report::Ran;
use winmdm::runner::{run_scenario, Target};
use winmdm::{dump, embedded, har, html, junit, replay, report, scenario, snapshot};

/// glibc's allocator was about a tenth of the CPU time in the benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Replay a capture (HAR, raw HTTP dumps, logs of exchanges) against a server: this
    /// harness's own captures are compared with the recorded responses; any other
    /// capture is sent by role and each response judged by the client's checks.
    Replay(ReplayArgs),
    /// Turn HTTP dumps (`*.http` requests and responses, logs of several exchanges, HAR
    /// files of other tools) into one HAR.
    ImportRaw(ImportArgs),
    /// Load test: enroll many emulated devices, then keep them checking in on their
    /// (time-compressed) DMClient poll schedule; print throughput and latencies.
    Load(LoadArgs),
    /// Measure RSA signing, enrollment and SyncML throughput of this machine against
    /// embedded servers, and their ratios.
    Bench(BenchArgs),
    /// Run the reference server (same flags as `winmdm-server`, logs on stderr) until
    /// interrupted: what the harness starts for scenarios that kill or replicate it.
    Serve(winmdm_server::Config),
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
    /// Directory of cached enrollment keys (load-test shortcut, see docs/performance.md).
    #[arg(long, value_name = "DIR")]
    key_pool: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
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
}

/// How to reach a server (embedded when `--server` is absent).
#[derive(clap::Args, Default, Clone)]
struct ServerArgs {
    /// Base URL of an external server to test instead of the embedded one.
    #[arg(long, env = "WINMDM_SERVER")]
    server: Option<String>,
    /// DeviceEnrollmentUserToken to enroll with directly: the Orbit steps are skipped
    /// (for servers that do not run the Orbit endpoints).
    #[arg(long, env = "WINMDM_TOKEN")]
    token: Option<String>,
    /// Discovery URL of the external server when Orbit does not announce one (default
    /// `<server>/EnrollmentServer/Discovery.svc`, the path Windows itself uses).
    #[arg(long, env = "WINMDM_DISCOVERY_URL")]
    discovery_url: Option<String>,
    /// The only AuthPolicy the devices offer in Discover: OnPremise or Federated (by
    /// default both, as Windows).
    #[arg(long, value_parser = ["OnPremise", "Federated"])]
    auth_policy: Option<String>,
    /// User name for OnPremise UsernameToken authentication or the federated login page.
    #[arg(long, env = "WINMDM_USERNAME", requires = "password")]
    username: Option<String>,
    /// Password going with --username.
    #[arg(long, env = "WINMDM_PASSWORD", requires = "username")]
    password: Option<String>,
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
    /// Capabilities the server lacks (comma-separated: orbit, admin_api, federated,
    /// renewal, restart, kill, replicas): steps needing one are skipped, and so are
    /// scenarios that require one.
    #[arg(long, value_name = "CAPS", value_delimiter = ',')]
    without: Vec<Capability>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// HAR files, raw `*.http` dumps (a lone request's response is read from the file
    /// named like it with `request` replaced by `response`) or logs of exchanges.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Accepted for compatibility: dumps are recognised by their content.
    #[arg(long, hide = true)]
    import_raw: bool,
    /// `compare` responses with the recorded ones (same-server captures), send by
    /// `role` and judge with the client's checks (captures from other servers), or
    /// `auto`: compare this harness's own captures, judge the others.
    #[arg(long, value_enum, default_value = "auto")]
    mode: replay::Mode,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// Raw HTTP request dumps.
    #[arg(required = true)]
    requests: Vec<PathBuf>,
    /// The recorded response of the (single) request; default: the sibling
    /// `*response*.http` file when present.
    #[arg(long)]
    response: Option<PathBuf>,
    /// Where to write the HAR.
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Scenario files or directories of `*.toml` files.
    paths: Vec<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a self-contained HTML report (sequence diagrams, every exchange).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write every HTTP exchange of the run as a HAR 1.2 file.
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
    /// Snapshot-test the server's responses in DIR (default `winmdm-snapshots`): write
    /// missing `.snap` files, fail steps whose responses differ (writing `.snap.new`).
    #[arg(
        long,
        value_name = "DIR",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "winmdm-snapshots"
    )]
    snapshot: Option<PathBuf>,
    /// With --snapshot: overwrite differing snapshots instead of failing.
    #[arg(long, requires = "snapshot")]
    update_snapshots: bool,
}

fn default_suite() -> PathBuf {
    let local = PathBuf::from("scenarios/suite");
    if local.is_dir() {
        local
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/suite"))
    }
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
async fn target(args: ServerArgs) -> Result<(Target, Option<embedded::Embedded>), String> {
    let without = args.without.clone();
    let (target, embedded) = target_of(args).await?;
    for c in without {
        target.lacking.mark(c, "declared with --without");
    }
    Ok((target, embedded))
}

async fn target_of(args: ServerArgs) -> Result<(Target, Option<embedded::Embedded>), String> {
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
            let e = embedded::start_with(embedded::own_exe()).await?;
            println!("embedded winmdm-server at {}\n", e.target.server_url);
            Ok((e.target.clone(), Some(e)))
        }
    }
}

fn write_file(path: &std::path::Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
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
    let (target, embedded) = target(args.server).await?;
    let origins = Origins(vec![target.server_url.clone()]);
    let mut ran = Vec::new();
    let mut stdout = std::io::stdout();
    for s in &scenarios {
        let started = time::OffsetDateTime::now_utc();
        let mut o = run_scenario(&target, s).await;
        if let Some(dir) = &args.snapshot {
            snapshot::apply(dir, args.update_snapshots, &origins, &mut o)
                .map_err(|e| e.to_string())?;
        }
        report::print_scenario(&mut stdout, &o);
        ran.push(Ran {
            file: s.path.clone(),
            started,
            outcome: o,
        });
    }
    let outcomes: Vec<_> = ran.iter().map(|r| r.outcome.clone()).collect();
    report::print_summary(&mut stdout, &outcomes);
    if let Some(f) = &args.junit {
        write_file(f, &junit::render("winmdm", &ran))?;
    }
    if let Some(f) = &args.html {
        write_file(
            f,
            &html::render("winmdm conformance report", &target.server_url, &ran),
        )?;
    }
    if let Some(f) = &args.capture {
        har::write(f, &har::from_run(&ran)).map_err(|e| e.to_string())?;
    }
    if let Some(e) = embedded {
        e.control.shutdown().await;
    }
    Ok(!ran.iter().any(|r| r.outcome.failed()))
}

/// Reads captures: HAR files and, whatever their name, raw dumps and logs (see
/// [`dump`]); import warnings go to stderr.
fn load_capture(files: &[PathBuf]) -> Result<har::Har, String> {
    let mut hars = Vec::new();
    for f in files {
        let imported = dump::import_file(f, dump::sibling_response(f).as_deref())
            .map_err(|e| e.to_string())?;
        for w in &imported.warnings {
            eprintln!("warning: {w}");
        }
        hars.push(imported.har);
    }
    Ok(har::merge(hars))
}

fn seconds(s: f64, what: &str) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(s).map_err(|_| format!("{what}: not a duration: {s}"))
}

async fn run_load(args: LoadArgs) -> Result<bool, String> {
    let opts = winmdm::load::LoadOptions {
        devices: args.devices,
        concurrency: args.concurrency,
        duration: seconds(args.duration, "--duration")?,
        time_scale: args.time_scale,
        key_pool_dir: args
            .key_pool
            .unwrap_or_else(winmdm::load::keypool::default_dir),
        checkin_once: false,
        progress: true,
    };
    let (target, embedded) = target(args.server).await?;
    let report = winmdm::load::run(&target, &opts).await;
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
    Ok(report.stats.error_total() == 0)
}

async fn run_bench(args: BenchArgs) -> Result<bool, String> {
    let opts = winmdm::bench::BenchOptions {
        devices: args.devices,
        enroll_devices: args.enroll_devices,
        concurrency: args.concurrency,
        syncml_time: seconds(args.syncml_seconds, "--syncml-seconds")?,
        syncml_devices: args.syncml_devices.max(1),
        key_pool_dir: args
            .key_pool
            .unwrap_or_else(winmdm::load::keypool::default_dir),
        progress: true,
        ..Default::default()
    };
    let report = winmdm::bench::run(&opts).await.map_err(|e| e.to_string())?;
    report
        .print(&mut std::io::stdout())
        .map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", report.to_json());
    }
    Ok(true)
}

async fn run_replay(args: ReplayArgs) -> Result<bool, String> {
    let _ = args.import_raw;
    let capture = load_capture(&args.files)?;
    let (target, embedded) = target(args.server).await?;
    let report = replay::replay_with(&capture, &target, args.mode)
        .await
        .map_err(|e| e.to_string())?;
    report.print(&mut std::io::stdout());
    if let Some(e) = embedded {
        e.control.shutdown().await;
    }
    Ok(report.differing() == 0)
}

fn import_raw(args: ImportArgs) -> Result<bool, String> {
    if args.response.is_some() && args.requests.len() > 1 {
        return Err("--response applies to a single request file".into());
    }
    let mut hars = Vec::new();
    for f in &args.requests {
        let resp = args.response.clone().or_else(|| dump::sibling_response(f));
        let imported = dump::import_file(f, resp.as_deref()).map_err(|e| e.to_string())?;
        for w in &imported.warnings {
            eprintln!("warning: {w}");
        }
        hars.push(imported.har);
    }
    let h = har::merge(hars);
    har::write(&args.output, &h).map_err(|e| e.to_string())?;
    println!(
        "{}: {} entr{}",
        args.output.display(),
        h.log.entries.len(),
        if h.log.entries.len() == 1 { "y" } else { "ies" }
    );
    Ok(true)
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
    let result = match cli.command {
        Some(Command::Run(a)) => run(a).await,
        Some(Command::Replay(a)) => run_replay(a).await,
        Some(Command::ImportRaw(a)) => import_raw(a),
        Some(Command::Load(a)) => run_load(a).await,
        Some(Command::Bench(a)) => run_bench(a).await,
        Some(Command::Serve(config)) => winmdm_server::serve_until_interrupted(config)
            .await
            .map(|()| true)
            .map_err(|e| e.to_string()),
        None => run(RunArgs::default()).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("winmdm: {e}");
            ExitCode::from(2)
        }
    }
}
