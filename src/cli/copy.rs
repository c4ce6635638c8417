//! `copy-to`: moves the configured SQLite queue into an empty PostgreSQL database.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{CliError, open_existing_queue};
use crate::config::Config;
use crate::queue::copy::{CopyRefused, sqlite_to_postgres};
use crate::queue::{Location, PgOptions, Queue, now_ms, redacted_url};

/// Examples shown by `copy-to --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  approval-worker copy-to postgres://approval@db.internal/approvals --password-file pw

Stop the workers first (they release their jobs); afterwards set [database] url (and remove
path) in worker.toml, and start them again.

Every job keeps its id, status, step, checkpoint, attempts and history; the DingTalk call
tallies come along; new jobs are numbered after the highest id. Refused while workers hold
leases in the SQLite queue, or when the PostgreSQL database already holds jobs. The copy is
one transaction there: it is all there, counts checked, or not at all.";

/// `copy-to` arguments.
#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// The PostgreSQL database to copy into (its schema is created if missing).
    #[arg(value_name = "URL")]
    url: String,
    /// File holding the PostgreSQL password, if it is not in the URL or PGPASSWORD.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn copy_to(config: &Config, args: CopyArgs) -> Result<(), CliError> {
    if config.database.url.is_some() {
        return Err(CliError::Usage(
            "copy-to copies the SQLite queue of [database] path; this configuration names a \
             PostgreSQL queue"
                .to_owned(),
        ));
    }
    if !(args.url.starts_with("postgres://") || args.url.starts_with("postgresql://")) {
        return Err(CliError::Usage(format!(
            "{} is not a postgres:// URL",
            redacted_url(&args.url)
        )));
    }
    let password = match &args.password_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => None,
    };
    let source = open_existing_queue(config).await?;
    let location = Location::Postgres(PgOptions {
        url: args.url.clone(),
        password,
        max_connections: 2,
        listen: false,
    });
    let target = Queue::connect(&location).await.map_err(|e| {
        CliError::Runtime(anyhow::anyhow!("database {}: {e}", redacted_url(&args.url)))
    })?;
    let copied = sqlite_to_postgres(&source, &target, now_ms()).await;
    let (from, to) = (source.describe(), target.describe());
    source.close().await;
    target.close().await;
    let copied = copied.map_err(|e| match e {
        CopyRefused::Queue(e) => CliError::Runtime(anyhow::anyhow!("copy failed: {e}")),
        refused => CliError::Usage(refused.to_string()),
    })?;
    if args.json {
        println!("{}", json!({"from": from, "to": to, "copied": copied}));
        return Ok(());
    }
    let jobs: i64 = copied.jobs_by_status.iter().map(|(_, n)| n).sum();
    let by_status: Vec<String> = copied
        .jobs_by_status
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    println!("copied {from} to {to}:");
    println!(
        "  {jobs} jobs ({}), {} history rows, {} call tally rows, {} followed approvals, {} \
         notifications",
        if by_status.is_empty() {
            "none".to_owned()
        } else {
            by_status.join(", ")
        },
        copied.events,
        copied.call_rows,
        copied.outcomes,
        copied.deliveries
    );
    println!(
        "  new jobs are numbered after {}; set [database] url to this database and start the \
         workers",
        copied.highest_id
    );
    Ok(())
}
