use clap::Parser;
use tracing_subscriber::EnvFilter;

/// glibc's allocator was about a tenth of the CPU time in the benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match winmdm_server::serve_until_interrupted(winmdm_server::Config::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("winmdm-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
