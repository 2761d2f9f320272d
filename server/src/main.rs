/// glibc's allocator was about a tenth of the CPU time in the benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    winmdm_server::main_with_flags("winmdm-server", "info").await
}
