use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use winmdm::report::canon::Origins;
use winmdm::report::Ran;
use winmdm::runner::run_scenario;
use winmdm::server_args::{target, ServerArgs};
use winmdm::{dump, embedded, har, html, junit, replay, report, scenario, snapshot};

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
    /// Load test: runs `winmdm-load load` (a separate binary of this workspace, built
    /// with `cargo build --release -p winmdm-load`) with the same arguments.
    #[command(disable_help_flag = true)]
    Load(Forwarded),
    /// Benchmark: runs `winmdm-load bench` with the same arguments.
    #[command(disable_help_flag = true)]
    Bench(Forwarded),
    /// Run the reference server (same flags and `--config` file as `winmdm-server`, logs
    /// on stderr) until interrupted: what the harness starts for scenarios that kill or
    /// replicate it. (Handled before the other commands are parsed: see `serve`.)
    Serve(winmdm_server::Config),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) for winmdm
    /// or winmdm-server.
    Completions {
        shell: clap_complete::Shell,
        #[arg(long, default_value = "winmdm", value_parser = ["winmdm", "winmdm-server"])]
        bin: String,
    },
    /// Print the man page (roff) of winmdm or winmdm-server.
    Man {
        #[arg(long, default_value = "winmdm", value_parser = ["winmdm", "winmdm-server"])]
        bin: String,
    },
}

/// The clap definition of `bin`: this harness, or the server (whose flags `serve` shares).
fn command_of(bin: &str) -> clap::Command {
    use clap::{Args, CommandFactory};
    match bin {
        "winmdm-server" => winmdm_server::Config::augment_args(
            clap::Command::new("winmdm-server")
                .about("Windows MDM server: MS-MDE2 enrollment and OMA-DM management"),
        ),
        _ => Cli::command(),
    }
}

fn completions(shell: clap_complete::Shell, bin: &str) -> Result<bool, String> {
    winmdm::cli_docs::print_completions(command_of(bin), shell, bin)
}

fn man(bin: &str) -> Result<bool, String> {
    winmdm::cli_docs::print_man(command_of(bin))
}

/// Arguments passed on untouched to `winmdm-load`.
#[derive(clap::Args)]
struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<std::ffi::OsString>,
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
    let (target, embedded) = target(args.server, embedded::own_exe()).await?;
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

async fn run_replay(args: ReplayArgs) -> Result<bool, String> {
    let _ = args.import_raw;
    let capture = load_capture(&args.files)?;
    let (target, embedded) = target(args.server, embedded::own_exe()).await?;
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

/// Runs `winmdm-load SUBCOMMAND ARGS...` from the directory of this executable: the
/// load simulator and the benchmark live in their own crate, so that the harness does
/// not carry their dependencies.
fn forward(subcommand: &str, a: Forwarded) -> Result<bool, String> {
    let exe = embedded::own_exe()
        .and_then(|e| e.parent().map(|d| d.join(format!("winmdm-load{}", std::env::consts::EXE_SUFFIX))))
        .filter(|e| e.is_file())
        .ok_or("winmdm-load is not built next to winmdm: run `cargo build --release -p winmdm-load` (or `cargo run --release -p winmdm-load -- ...`)")?;
    let status = std::process::Command::new(&exe)
        .arg(subcommand)
        .args(&a.args)
        .status()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    Ok(status.success())
}

/// `winmdm serve ...`: parsed like `winmdm-server` (with its `--config` file, whose
/// values may include the otherwise required `--enroll-secret`), logging to stderr in
/// `--log-format` at `warn` unless `RUST_LOG` says otherwise.
async fn serve(args: Vec<std::ffi::OsString>) -> ExitCode {
    let config = match winmdm_server::parse_or_exit(
        "winmdm serve",
        std::iter::once("winmdm serve".into()).chain(args),
    ) {
        Ok(c) => c,
        Err(code) => return code,
    };
    winmdm_server::logging::init(config.log_format, "warn", std::io::stderr);
    match winmdm_server::serve_until_interrupted(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("winmdm serve: {e}");
            ExitCode::from(2)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "serve") {
        return serve(args.collect()).await;
    }
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
        Some(Command::Completions { shell, bin }) => completions(shell, &bin),
        Some(Command::Man { bin }) => man(&bin),
        Some(Command::Load(a)) => forward("load", a),
        Some(Command::Bench(a)) => forward("bench", a),
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
