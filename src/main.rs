use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: under load the server's many threads (tokio workers, the
/// SQLite connection threads, argon2's blocking threads) contended on glibc's arena locks, and
/// memory grew through fragmentation (benches/HISTORY.md: "Round 2").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colours on a terminal only: a log file or journald gets plain text (and nobody pays for
        // escape codes that no one sees).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(appkeys::cli::run(appkeys::config::Cli::parse()));
    // A stop has had its grace period (`--shutdown-grace-secs`); work still blocked then (a call
    // into an unreachable database) is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
