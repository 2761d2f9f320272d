//! The reference server as a separate process, for scenarios that kill it
//! (`kill_server`); same flags as `winmdm-server`. Logs go to stderr: a parent (the
//! external-server tests) reads the listening address from stdout.

/// glibc's allocator was about a tenth of the CPU time in the benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    winmdm_server::main_with_flags("winmdm-serve", "warn", true).await
}
