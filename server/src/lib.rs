//! winmdm-server: a Windows MDM server.
//!
//! One module per protocol step: [`orbit`] (agent enroll/config), [`discovery`]
//! (MS-MDE2 §3.1), [`policy`] (MS-XCEP), [`enroll`] with [`csr`], [`ca`] and
//! [`provisioning`] (MS-WSTEP), [`management`] with [`syncml`] (OMA-DM 1.2), plus the
//! [`admin`] API, [`db`] storage and the [`app`] that wires them to HTTPS.

// Handlers and their helpers return ready-made responses as errors (axum style).
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod app;
pub mod ca;
pub mod config;
pub mod conn;
pub mod csr;
pub mod db;
pub mod der;
pub mod discovery;
pub mod enroll;
pub mod enroll_store;
pub mod error;
pub mod federated;
pub mod guards;
pub mod management;
pub mod message_store;
pub mod orbit;
pub mod policy;
pub mod profiles;
pub mod provisioning;
pub mod reassembly;
pub mod renew;
pub mod sessions;
pub mod soap;
pub mod syncml;
pub mod tls;
pub mod writer;

pub use app::{start, RunningServer};
pub use config::Config;
pub use error::ServerError;

/// The `main` of a binary serving with the command line's flags until Ctrl-C: logs to
/// stdout at `default_log` unless `RUST_LOG` says otherwise, and exits non-zero, naming
/// `name`, on failure. (`winmdm serve` logs through the harness's own subscriber.)
pub async fn main_with_flags(name: &str, default_log: &str) -> std::process::ExitCode {
    use clap::Parser;
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stdout)
        .init();
    match serve_until_interrupted(Config::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
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
