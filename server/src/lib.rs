//! winmdm-server: a Windows MDM server.
//!
//! Layers, from the wire inwards (docs/architecture.md draws them):
//! - [`http`]: the router, one thin handler per route, guards, and [`app`], the HTTPS
//!   accept loop;
//! - [`service`]: the load-decide-store sequences handlers call (enrollment, profiles,
//!   authentication);
//! - [`protocol`]: the protocol core, plain functions over plain data deciding what an
//!   OMA-DM message or an enrollment request means and what to answer (no I/O);
//! - the codecs ([`codec`]): SOAP, SyncML, MS-WSTEP, MS-XCEP, discovery, PKCS#10, CMS
//!   and the provisioning document, parsed and built without I/O;
//! - [`store`]: every SQL statement, one facade over SQLite (with its writer thread) and
//!   Postgres;
//! - [`model`]: the states, verbs and records they all share.
//!
//! Beside them: [`state`] (what handlers share), [`ca`] and [`tls`] (key material),
//! [`config`], [`paths`], [`telemetry`] (the metrics' names and recorder; recorded in the
//! HTTP layer and the store, never in the core).

// Handlers and their helpers return ready-made responses as errors (axum style).
#![allow(clippy::result_large_err)]

pub mod app;
pub mod ca;
pub mod clock;
pub mod codec;
pub mod config;
pub mod config_file;
pub mod crash;
pub mod error;
pub mod http;
pub mod logging;
pub mod model;
pub mod paths;
pub mod protocol;
pub mod rate_limit;
pub mod secret;
pub mod service;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use codec::{cms, csr, der, discovery, provisioning, soap, syncml, wstep, xcep};

/// Names callers used before the modules were regrouped: `db` is the store, `renew` the
/// CMS parser, `enroll` the MS-WSTEP codec, `policy` the MS-XCEP codec.
pub use codec::{cms as renew, wstep as enroll, xcep as policy};
pub use store as db;

pub use app::{start, RunningServer};
pub use config::{Config, LogFormat};
pub use config_file::ConfigError;
pub use error::ServerError;
/// The `main` of a binary serving with the command line's flags (and `--config` file)
/// until Ctrl-C: logs to stdout in `--log-format` at `default_log` unless `RUST_LOG`
/// says otherwise, and exits non-zero, naming `name`, on failure.
pub async fn main_with_flags(name: &str, default_log: &str) -> std::process::ExitCode {
    let config = match parse_or_exit(name, std::env::args_os()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    logging::init(config.log_format, default_log, std::io::stdout);
    match serve_until_interrupted(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The configuration from `args` (program name first) and its `--config` file; on
/// error (or `--help`) the message is printed, naming `name`, and the exit code returned.
pub fn parse_or_exit<I, T>(name: &str, args: I) -> Result<Config, std::process::ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Config::try_parse_with_file_from(args) {
        Ok(c) => Ok(c),
        Err(ConfigError::Cli(e)) => {
            let _ = e.print();
            Err(std::process::ExitCode::from(
                u8::try_from(e.exit_code()).unwrap_or(2),
            ))
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// Runs the server until Ctrl-C: what the `winmdm-server` binary does.
pub async fn serve_until_interrupted(config: Config) -> Result<(), ServerError> {
    let server = start(config).await?;
    // Written without println!: a closed stdout must not bring the server down.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "winmdm-server listening on {} (public URL {})",
            server.addr, server.public_url
        );
        let _ = writeln!(
            out,
            "TLS certificate for clients (--ca-file): {}",
            server.tls_cert_path.display()
        );
        let _ = out.flush();
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
