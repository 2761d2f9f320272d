use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = winmdm_server::Config::parse();
    let server = match winmdm_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("winmdm-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "winmdm-server listening on {} (public URL {})",
        server.addr, server.public_url
    );
    println!(
        "TLS certificate for clients (--ca-file): {}",
        server.tls_cert_path.display()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("shutting down");
            server.shutdown().await;
        }
    }
    std::process::ExitCode::SUCCESS
}
