//! The command line: argument definitions and dispatch to one function per command.

mod admin;
mod bench;
mod check;
mod copy;
mod dashboard;
mod demo;
pub(crate) mod duration;
mod enqueue;
mod follow;
mod inspect;
mod outcome;
mod pause;
mod run;
mod sandbox;
mod steer;
mod table;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

pub use crate::config::LogFormat;
use crate::config::{Config, ConfigError};
use crate::queue::{Location, Queue, QueueError};

/// Exit code for a configuration error (EX_CONFIG); systemd's `RestartPreventExitStatus=78`.
const EXIT_CONFIG: u8 = 78;
/// Exit code for a usage error.
const EXIT_USAGE: u8 = 2;
/// Exit code for a runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code for `enqueue --wait --timeout` running out before every job finished.
const EXIT_TIMEOUT: u8 = 3;

/// Examples shown by the top-level `--help`.
const EXAMPLES: &str = "Examples:
  approval-worker demo                       # the whole pipeline against a local sandbox
  approval-worker --config worker.toml check --user manager4220
  approval-worker enqueue --payload job.json --wait
  approval-worker run
  approval-worker jobs --status failed --since 1h
  approval-worker stats
  approval-worker dashboard                  # the web dashboard on http://127.0.0.1:9188/

Exit codes: 0 ok, 1 runtime failure (or a job that failed under enqueue --wait),
2 usage error (bad arguments or payload, unknown job), 78 configuration error.";

/// Submits DingTalk approval instances with file attachments from a persistent queue (SQLite
/// or PostgreSQL), and follows each to its decision.
#[derive(Debug, Parser)]
#[command(name = "approval-worker", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Config file [default: worker.toml in the working directory, if present].
    #[arg(long, global = true, env = crate::config::CONFIG_ENV, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stderr [default: the config's log.format, else text].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Whether the command reads the configuration (and so its `[log]` section).
    pub fn reads_config(&self) -> bool {
        !matches!(
            self.command,
            Command::Demo(_) | Command::Sandbox(_) | Command::Completions(_) | Command::Bench(_)
        )
    }
}

/// Examples shown by `migrate --help`.
const MIGRATE_EXAMPLES: &str = "Examples:
  approval-worker --config /etc/approval-worker/worker.toml migrate

`run` migrates too; run this first to upgrade the schema before starting new binaries.";
/// Examples shown by `completions --help`.
const COMPLETIONS_EXAMPLES: &str = "Examples:
  approval-worker completions bash > /etc/bash_completion.d/approval-worker
  approval-worker completions zsh > \"${fpath[1]}/_approval-worker\"
  approval-worker completions fish > ~/.config/fish/completions/approval-worker.fish";

/// `completions` arguments.
#[derive(Debug, clap::Args)]
struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create or upgrade the database schema.
    #[command(after_help = MIGRATE_EXAMPLES)]
    Migrate,
    /// Add jobs to the queue (from flags, or JSON from a file or stdin).
    #[command(after_help = enqueue::EXAMPLES)]
    Enqueue(Box<enqueue::EnqueueArgs>),
    /// Run the worker daemon until SIGTERM/SIGINT.
    #[command(after_help = run::EXAMPLES)]
    Run,
    /// List jobs, newest first.
    #[command(after_help = inspect::JOBS_EXAMPLES)]
    Jobs(inspect::JobsArgs),
    /// Show one job: payload, checkpoint and history.
    #[command(after_help = inspect::SHOW_EXAMPLES)]
    Show(inspect::ShowArgs),
    /// Re-queue failed or cancelled jobs at their checkpoints: by id, or every job a filter
    /// matches.
    #[command(after_help = steer::RETRY_EXAMPLES)]
    Retry(steer::SteerArgs),
    /// Cancel queued jobs, or stop running ones at their next checkpoint: by id, or every job
    /// a filter matches.
    #[command(after_help = steer::CANCEL_EXAMPLES)]
    Cancel(steer::SteerArgs),
    /// Stop claiming a queue's jobs, in every worker process, until `resume`.
    #[command(after_help = pause::PAUSE_EXAMPLES)]
    Pause(pause::PauseArgs),
    /// Claim a paused queue's jobs again.
    Resume(pause::ResumeArgs),
    /// Counts by status and step, last hour's throughput, the oldest waiting job, and
    /// DingTalk calls this month.
    #[command(after_help = admin::STATS_EXAMPLES)]
    Stats(admin::StatsArgs),
    /// Serve the operators' web dashboard against the database (no worker, no DingTalk).
    #[command(after_help = dashboard::EXAMPLES)]
    Dashboard(dashboard::DashboardArgs),
    /// Delete finished jobs (and their history) older than a given age.
    #[command(after_help = admin::PRUNE_EXAMPLES)]
    Prune(admin::PruneArgs),
    /// Copy the database to a file while workers keep running.
    #[command(after_help = admin::BACKUP_EXAMPLES)]
    Backup(admin::BackupArgs),
    /// Copy the SQLite queue (jobs, history, call tallies) into an empty PostgreSQL database.
    #[command(after_help = copy::EXAMPLES)]
    CopyTo(copy::CopyArgs),
    /// Validate the configuration and try DingTalk: token, unionId, approval space.
    #[command(after_help = check::EXAMPLES)]
    Check(check::CheckArgs),
    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Run the local DingTalk-compatible sandbox server until Ctrl-C; decide an instance
    /// (`sandbox decide`) or add a fault (`sandbox fault`) on a running one.
    #[command(after_help = sandbox::SANDBOX_EXAMPLES)]
    Sandbox(sandbox::SandboxArgs),
    /// Run the whole pipeline against the embedded sandbox and print the result.
    #[command(after_help = demo::DEMO_EXAMPLES)]
    Demo(demo::DemoArgs),
    /// Measure throughput, latency and cost per job (see docs/benchmarks.md).
    Bench(Box<bench::BenchArgs>),
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
    /// A wait ran out before what it waited for happened (the work goes on): exit 3.
    #[error("{0}")]
    Timeout(String),
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
            CliError::Timeout(_) => EXIT_TIMEOUT,
        }
    }
}

/// Runs the parsed command.
pub async fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo(args) => demo::demo(args).await,
        Command::Bench(args) => bench::bench(*args).await,
        Command::Sandbox(args) => sandbox::sandbox(args).await,
        Command::Completions(args) => {
            completions(args.shell);
            Ok(())
        }
        command => {
            let config = Config::load(cli.config.as_deref())?;
            match command {
                Command::Migrate => migrate(&config).await,
                Command::Enqueue(args) => enqueue::enqueue(&config, *args).await,
                Command::Run => run::run(&config).await,
                Command::Jobs(args) => inspect::jobs(&config, args).await,
                Command::Show(args) => inspect::show(&config, args).await,
                Command::Retry(args) => steer::retry(&config, args).await,
                Command::Cancel(args) => steer::cancel(&config, args).await,
                Command::Pause(args) => pause::pause(&config, args).await,
                Command::Resume(args) => pause::resume(&config, args).await,
                Command::Stats(args) => admin::stats(&config, args).await,
                Command::Prune(args) => admin::prune(&config, args).await,
                Command::Dashboard(args) => dashboard::dashboard(&config, args).await,
                Command::Backup(args) => admin::backup(&config, args).await,
                Command::CopyTo(args) => copy::copy_to(&config, args).await,
                Command::Check(args) => {
                    let source = config_source(cli.config.as_deref());
                    check::check(&config, &source, args).await
                }
                Command::Demo(_)
                | Command::Sandbox(_)
                | Command::Completions(_)
                | Command::Bench(_) => Ok(()),
            }
        }
    }
}

/// Where the configuration came from, for messages.
fn config_source(explicit: Option<&std::path::Path>) -> String {
    match explicit {
        Some(path) => path.display().to_string(),
        None if std::path::Path::new(crate::config::DEFAULT_CONFIG_FILE).exists() => {
            crate::config::DEFAULT_CONFIG_FILE.to_string()
        }
        None => "(no config file: defaults)".to_string(),
    }
}

fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    // Generated into memory first: writing straight to a closed pipe panics inside clap.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    // A reader that stopped early (`| head`) is not an error worth reporting.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
}

/// Opens the queue, creating the database (SQLite) or its schema (PostgreSQL) if there is
/// none yet (`migrate`, `enqueue`, `run`): a new SQLite file is announced, so a mistyped path
/// does not go unnoticed.
async fn open_queue(config: &Config) -> Result<Queue, CliError> {
    let location = config.queue_location()?;
    let existed = match &location {
        Location::Sqlite(path) => path.exists(),
        Location::Postgres(_) => true,
    };
    let queue = Queue::connect(&location).await.map_err(|e| {
        CliError::Runtime(anyhow::anyhow!(
            "database {}: {e}",
            location_name(&location)
        ))
    })?;
    if !existed {
        tracing::info!(path = %queue.describe(), "created a new database");
    }
    Ok(queue)
}

/// The database at `location`, for messages (a PostgreSQL URL without its password).
fn location_name(location: &Location) -> String {
    match location {
        Location::Sqlite(path) => path.display().to_string(),
        Location::Postgres(options) => crate::queue::redacted_url(&options.url),
    }
}

/// Opens the queue for a command about existing jobs, refusing to create one: an empty
/// queue made at a mistyped path or database, or beside a running worker whose file was
/// deleted, would only hide where the jobs are.
async fn open_existing_queue(config: &Config) -> Result<Queue, CliError> {
    let location = config.queue_location()?;
    let exists = crate::queue::exists(&location).await.map_err(|e| {
        CliError::Runtime(anyhow::anyhow!(
            "database {}: {e}",
            location_name(&location)
        ))
    })?;
    if !exists {
        let hint = match &location {
            Location::Sqlite(_) => "check [database] path (or APPROVAL_WORKER_DATABASE)",
            Location::Postgres(_) => "check [database] url (or APPROVAL_WORKER_DATABASE_URL)",
        };
        return Err(CliError::Runtime(anyhow::anyhow!(
            "no approval-worker queue at {}: {hint}; `approval-worker migrate` creates one",
            location_name(&location)
        )));
    }
    open_queue(config).await
}

async fn migrate(config: &Config) -> Result<(), CliError> {
    let queue = open_queue(config).await?;
    queue.close().await;
    println!("database {} is at the latest schema", queue.describe());
    Ok(())
}
