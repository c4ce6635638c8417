//! The `approval-worker` binary: parse arguments, set up logging, run the command, and map
//! its outcome to an exit code in one place.

use std::process::ExitCode;

use approval_worker::cli::{self, Cli, LogFormat};
use approval_worker::config::Config;
use clap::Parser;

/// mimalloc instead of glibc's malloc: the queue hands argument and row buffers between the
/// runtime thread and sqlx's connection thread, and glibc frees those across arenas under a
/// lock (with fastbin consolidation); perf put ~30 % of the connection thread's samples in
/// malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_when_stdout_closes();
    let cli = Cli::parse();
    init_tracing(log_format(&cli));
    // One scheduler thread: the worker (and the sandbox) wait on I/O, and the wake-ups
    // between two scheduler threads cost the queue ~50 % more CPU per job and HTTP jobs ~6 %
    // (docs/benchmarks.md, "One scheduler thread").
    // Hashing runs on the blocking pool and SQLite on sqlx's thread, so neither stalls it.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_RUNTIME);
        }
    };
    let outcome = runtime.block_on(cli::execute(cli));
    // Blocking tasks still running (a file being hashed for a job a forced stop abandoned)
    // must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A reader that stops early (`approval-worker jobs | head`) closes stdout, and the next
/// `println!` panics. Like other Unix tools, the command then ends quietly with the status a
/// SIGPIPE gives (128 + 13) instead of printing a panic. Rust ignores SIGPIPE so that sockets
/// report EPIPE as an error; restoring the signal instead would let a closed connection kill
/// `run`.
fn quiet_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// `--log-format`, else the config's `[log] format` (a config that does not load is reported
/// by the command itself, with its exit code), else text.
fn log_format(cli: &Cli) -> LogFormat {
    cli.log_format.unwrap_or_else(|| {
        if cli.reads_config() {
            Config::load(cli.config.as_deref())
                .map(|config| config.log.format)
                .unwrap_or_default()
        } else {
            LogFormat::default()
        }
    })
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("APPROVAL_WORKER_LOG")
        .unwrap_or_else(|_| EnvFilter::new("approval_worker=info,warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
