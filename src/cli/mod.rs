//! The command line: argument definitions and dispatch to one function per command.

mod demo;
mod enqueue;
mod inspect;
mod run;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError};
use crate::queue::{Queue, QueueError};

/// Exit code for a configuration error (EX_CONFIG); systemd's `RestartPreventExitStatus=78`.
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for a usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a runtime failure.
pub const EXIT_RUNTIME: u8 = 1;

/// Submits DingTalk approval instances with file attachments from a persistent SQLite queue.
#[derive(Debug, Parser)]
#[command(name = "approval-worker", version, about, long_about = None)]
pub struct Cli {
    /// Config file [default: worker.toml in the working directory, if present].
    #[arg(long, global = true, env = crate::config::CONFIG_ENV, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database schema.
    Migrate,
    /// Add jobs to the queue (from flags, or JSON from a file or stdin).
    #[command(after_help = enqueue::EXAMPLES)]
    Enqueue(Box<enqueue::EnqueueArgs>),
    /// Run the worker daemon until SIGTERM/SIGINT.
    Run,
    /// List jobs, newest first.
    Jobs(inspect::JobsArgs),
    /// Show one job: payload, checkpoint and history.
    Show(inspect::ShowArgs),
    /// Re-queue a failed or cancelled job at its checkpoint.
    Retry(inspect::IdArgs),
    /// Cancel a queued job, or stop a running one at its next step boundary.
    Cancel(inspect::IdArgs),
    /// Counts by status and step.
    Stats(inspect::JsonArgs),
    /// Run the local DingTalk-compatible sandbox server until Ctrl-C.
    Sandbox(demo::SandboxArgs),
    /// Run the whole pipeline against the embedded sandbox and print the result.
    Demo(demo::DemoArgs),
}

/// A command's failure, mapped to an exit code in one place.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration: exit 78.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad arguments or input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Anything else: exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl From<QueueError> for CliError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::NotFound(_) | QueueError::WrongStatus { .. } => {
                CliError::Usage(error.to_string())
            }
            other => CliError::Runtime(other.into()),
        }
    }
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => EXIT_CONFIG,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Runtime(_) => EXIT_RUNTIME,
        }
    }
}

/// Runs the parsed command.
pub async fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo(args) => demo::demo(args).await,
        Command::Sandbox(args) => demo::sandbox(args).await,
        command => {
            let config = Config::load(cli.config.as_deref())?;
            match command {
                Command::Migrate => migrate(&config).await,
                Command::Enqueue(args) => enqueue::enqueue(&config, *args).await,
                Command::Run => run::run(&config).await,
                Command::Jobs(args) => inspect::jobs(&config, args).await,
                Command::Show(args) => inspect::show(&config, args).await,
                Command::Retry(args) => inspect::retry(&config, args).await,
                Command::Cancel(args) => inspect::cancel(&config, args).await,
                Command::Stats(args) => inspect::stats(&config, args).await,
                Command::Demo(_) | Command::Sandbox(_) => Ok(()),
            }
        }
    }
}

async fn open_queue(config: &Config) -> Result<Queue, CliError> {
    Queue::open(&config.database.path).await.map_err(|e| {
        CliError::Runtime(anyhow::anyhow!(
            "database {}: {e}",
            config.database.path.display()
        ))
    })
}

async fn migrate(config: &Config) -> Result<(), CliError> {
    let queue = open_queue(config).await?;
    queue.close().await;
    println!(
        "database {} is at the latest schema",
        config.database.path.display()
    );
    Ok(())
}
