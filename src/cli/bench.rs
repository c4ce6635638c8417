//! `bench`: runs the benchmark (src/bench), plus the hidden child modes it re-invokes this
//! binary in: the sandbox server, the plain-SQL producer, and the no-HTTP shape for the
//! peer comparison (bench/peer).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::CliError;
use crate::bench::{self, BenchOptions, Scenario};

/// Runs per figure unless `--runs` says otherwise.
const DEFAULT_RUNS: usize = 5;

/// `bench` arguments.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Small sizes and one run each: seconds, for CI.
    #[arg(long)]
    quick: bool,
    /// Runs per figure; medians are reported.
    #[arg(long, default_value_t = DEFAULT_RUNS)]
    runs: usize,
    /// Jobs per end-to-end run.
    #[arg(long)]
    jobs: Option<usize>,
    /// Only these scenarios (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Concurrencies of the end-to-end runs (comma-separated) [default: 1,4,16,64].
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<u32>,
    /// Directory for scratch databases and files [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the scratch directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Measure PostgreSQL instead of SQLite: a server URL (postgres://user@host:port/db) whose
    /// user may create databases; every run gets a fresh database, dropped afterwards.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Child mode: serve the sandbox, print its URL, stop when stdin closes.
    #[arg(long, hide = true)]
    serve_sandbox: bool,
    /// Child mode: insert rows into this database (SQLite file or postgres:// URL) with plain
    /// SQL at `--rate` for `--secs`.
    #[arg(long, hide = true, value_name = "DB")]
    produce: Option<PathBuf>,
    /// Producer: rows per second.
    #[arg(long, hide = true, default_value_t = 50)]
    rate: u32,
    /// Producer: seconds.
    #[arg(long, hide = true, default_value_t = 10)]
    secs: u64,
    /// Producer: the attachment of every row.
    #[arg(long, hide = true)]
    payload_file: Option<PathBuf>,
    /// Child mode: run only the no-HTTP shape (on `--database` if given) and print its figures
    /// as JSON.
    #[arg(long, hide = true)]
    peer_shape: bool,
}

pub(crate) async fn bench(args: BenchArgs) -> Result<(), CliError> {
    if let Some(url) = &args.database
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Err(CliError::Usage(format!(
            "--database: {} is not a postgres:// URL",
            crate::queue::redacted_url(url)
        )));
    }
    if args.serve_sandbox {
        return Ok(bench::serve_sandbox().await.context("sandbox child")?);
    }
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    if let Some(database) = &args.produce {
        let attachment = args
            .payload_file
            .clone()
            .ok_or_else(|| CliError::Usage("--produce needs --payload-file".into()))?;
        bench::produce(database, args.rate, args.secs, &attachment)
            .await
            .context("producer child")?;
        return Ok(());
    }
    if args.peer_shape {
        let jobs = args.jobs.unwrap_or(20_000);
        let database = args.database.as_deref();
        let figures = bench::peer_shape(&dir, 16, 16, jobs, args.runs, database)
            .await
            .context("no-HTTP shape")?;
        println!(
            "{}",
            serde_json::json!({
                "jobs": jobs,
                "jobs_per_sec": figures.jobs_per_sec,
                "commits_per_job": figures.commits_per_job,
                "cpu_us_per_job": figures.cpu_us_per_job,
                "server_cpu_us_per_job": figures.server_cpu_us_per_job,
            })
        );
        return Ok(());
    }
    let options = BenchOptions {
        quick: args.quick,
        runs: if args.quick { 1 } else { args.runs },
        jobs: args.jobs,
        concurrency: args.concurrency,
        only: args.only,
        dir,
        keep: args.keep,
        exe: std::env::current_exe().context("locating this binary")?,
        database: args.database,
    };
    bench::run(&options).await.context("benchmark")?;
    Ok(())
}
