//! `approval-worker bench`: the benchmark behind every speed claim (docs/benchmarks.md).
//!
//! One run measures the ceilings of this machine (SQLite commits, loopback PUT), then the
//! worker against them: end to end at several concurrencies, the same queue traffic without
//! HTTP, an open loop fed by another process, claim cost as the table grows, one large
//! upload, the rate limiter under contention and batch enqueue. Every figure is a median
//! over runs, and every target is checked as a ratio to something measured in the same run.
//! With `--database postgres://…` the scenarios that concern the store run on PostgreSQL
//! instead, each in a fresh database of that server (`postgres`).

mod apibound;
mod batch;
mod ceilings;
mod claims;
mod dashboard;
mod e2e;
mod largefile;
mod limiter;
mod openloop;
mod outcomes;
mod pgreport;
mod pgserver;
mod postgres;
mod processes;
mod report;
mod setup;
pub(crate) mod stats;

use std::path::PathBuf;

pub(crate) use e2e::RunFigures;
pub(crate) use openloop::produce;

use crate::queue::QueueError;
use crate::sandbox::{Sandbox, SandboxOptions, StreamOptions};
use setup::Checkpoints::{self, Automatic};

/// Why a benchmark run could not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A file or child process failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A statement of the benchmark's own (PostgreSQL set-up and measurements) failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Something the scenario set up did not behave.
    #[error("{0}")]
    Setup(String),
}

/// The scenarios, selectable with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Raw commits/s and loopback PUT MB/s.
    Ceilings,
    /// Jobs end to end with HTTP to the sandbox.
    EndToEnd,
    /// Queue traffic only, a checkpoint for every step (the peer-comparison shape).
    NoHttp,
    /// Claim cost against table size and backoff.
    Claims,
    /// Pickup latency from another process's inserts, idle CPU of `run`.
    OpenLoop,
    /// One large attachment.
    LargeFile,
    /// The DingTalk rate limiter under contention.
    Limiter,
    /// `enqueue --payload -` of JSON lines.
    Batch,
    /// Several `run` processes draining one PostgreSQL database: jobs/s and double claims.
    Processes,
    /// Following approvals to their decision: idle CPU with pending instances, reads against
    /// the rate limit, commits per recorded decision.
    Outcomes,
    /// Draining a backlog against DingTalk's per-API rate limit and latency: drain rate over
    /// the rate the binding API allows, calls per job by API, throttles.
    ApiBound,
    /// Server time of the dashboard's pages with 1 M jobs in the table.
    Dashboard,
}

/// How big and which parts.
#[derive(Debug, Clone)]
pub(crate) struct BenchOptions {
    /// Seconds, for CI: small sizes, one run each.
    pub(crate) quick: bool,
    /// Runs per figure (the median is reported).
    pub(crate) runs: usize,
    /// Jobs per end-to-end run (default by mode).
    pub(crate) jobs: Option<usize>,
    /// End-to-end concurrencies (the mode's default when empty).
    pub(crate) concurrency: Vec<u32>,
    /// Only these scenarios (all when empty).
    pub(crate) only: Vec<Scenario>,
    /// Where the scratch directories go (same disk as the figures are meant for).
    pub(crate) dir: PathBuf,
    /// Keep the scratch directories.
    pub(crate) keep: bool,
    /// This binary, re-run for the sandbox, the producer, `run` and `enqueue`.
    pub(crate) exe: PathBuf,
    /// A PostgreSQL server (`postgres://…`) to measure instead of SQLite.
    pub(crate) database: Option<String>,
}

/// Sizes of one benchmark mode.
#[derive(Debug, Clone)]
struct Sizes {
    runs: usize,
    raw_commits: u32,
    put_bytes: u64,
    e2e_jobs: usize,
    concurrencies: Vec<u32>,
    no_http_jobs: usize,
    claims_per_run: u32,
    big_table: u64,
    backoff_rows: u64,
    idle_secs: u64,
    arrival_rate: u32,
    arrival_secs: u64,
    large_file_bytes: u64,
    /// The large file sent in parts (the default part size).
    large_parts_bytes: u64,
    limiter_secs: u64,
    batch_jobs: usize,
    /// Jobs the `run` processes of the processes scenario drain per run.
    process_jobs: usize,
    /// The outcomes scenario.
    outcomes: outcomes::OutcomeSizes,
    /// Jobs per api-bound drain.
    api_bound_jobs: usize,
    /// DingTalk latencies of the api-bound drains, ms.
    api_bound_latencies_ms: Vec<u64>,
    /// Fixed concurrencies the api-bound drains also run (`--concurrency`), beside the
    /// default settings.
    api_bound_concurrencies: Vec<u32>,
    /// The dashboard scenario.
    dashboard: dashboard::DashboardSizes,
}

impl Sizes {
    fn for_options(options: &BenchOptions) -> Sizes {
        let full = Sizes {
            runs: options.runs.max(1),
            raw_commits: 2_000,
            put_bytes: 512 * 1024 * 1024,
            e2e_jobs: options.jobs.unwrap_or(2_000),
            concurrencies: vec![1, 4, 16, 64],
            no_http_jobs: options.jobs.unwrap_or(2_000) * 2,
            claims_per_run: 500,
            big_table: 1_000_000,
            backoff_rows: 100_000,
            idle_secs: 10,
            arrival_rate: 50,
            arrival_secs: 10,
            large_file_bytes: 1024 * 1024 * 1024,
            large_parts_bytes: 4 * 1024 * 1024 * 1024,
            limiter_secs: 10,
            batch_jobs: 50_000,
            process_jobs: options.jobs.unwrap_or(2_000) * 2,
            outcomes: outcomes::OutcomeSizes {
                pending: 10_000,
                idle_secs: 30,
                read_secs: 20,
                events: 2_048,
                runs: options.runs.max(1),
            },
            api_bound_jobs: options.jobs.unwrap_or(1_000),
            api_bound_latencies_ms: vec![50, 150, 400],
            api_bound_concurrencies: Vec::new(),
            dashboard: dashboard::DashboardSizes {
                jobs: 1_000_000,
                requests: 50,
            },
        };
        let mut sizes = if options.quick {
            Sizes::quick(options)
        } else {
            full
        };
        if !options.concurrency.is_empty() {
            sizes.concurrencies = options.concurrency.clone();
            sizes.api_bound_concurrencies = options.concurrency.clone();
        }
        sizes
    }

    fn quick(options: &BenchOptions) -> Sizes {
        Sizes {
            runs: 1,
            raw_commits: 200,
            put_bytes: 16 * 1024 * 1024,
            e2e_jobs: options.jobs.unwrap_or(100),
            concurrencies: vec![1, 16],
            no_http_jobs: options.jobs.unwrap_or(100) * 2,
            claims_per_run: 200,
            big_table: 20_000,
            backoff_rows: 10_000,
            idle_secs: 1,
            arrival_rate: 20,
            arrival_secs: 1,
            large_file_bytes: 16 * 1024 * 1024,
            large_parts_bytes: 80 * 1024 * 1024,
            limiter_secs: 2,
            batch_jobs: 2_000,
            process_jobs: options.jobs.unwrap_or(100) * 2,
            outcomes: outcomes::OutcomeSizes {
                pending: 1_000,
                idle_secs: 2,
                read_secs: 2,
                events: 256,
                runs: 1,
            },
            api_bound_jobs: options.jobs.unwrap_or(30),
            api_bound_latencies_ms: vec![50],
            api_bound_concurrencies: Vec::new(),
            dashboard: dashboard::DashboardSizes {
                jobs: 20_000,
                requests: 10,
            },
        }
    }
}

/// Everything one run measured; `None` for scenarios not run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Results {
    /// Single-row commits/s.
    pub(crate) commits_per_sec: Option<f64>,
    /// Loopback PUT MB/s.
    pub(crate) put_mb_per_sec: Option<f64>,
    /// DingTalk calls through the client, 16 tasks at once: CPU per call and calls/s.
    pub(crate) calls: Option<ceilings::CallCeiling>,
    /// Per concurrency, with HTTP.
    pub(crate) http: Vec<(u32, RunFigures)>,
    /// The no-HTTP shape at concurrency 16.
    pub(crate) no_http: Option<RunFigures>,
    /// Claim scaling.
    pub(crate) claims: Vec<claims::ClaimFigures>,
    /// The claim's query plan.
    pub(crate) claim_plan: Vec<String>,
    pub(crate) open_loop: Option<openloop::OpenLoopFigures>,
    pub(crate) large_file: Option<largefile::LargeFileFigures>,
    /// The large file in parts.
    pub(crate) large_parts: Option<largefile::LargeFileFigures>,
    pub(crate) limiter: Option<limiter::LimiterFigures>,
    /// Batch enqueue.
    pub(crate) batch: Option<batch::BatchFigures>,
    /// Outcome tracking.
    pub(crate) outcomes: Option<outcomes::OutcomeFigures>,
    /// API-bound drains.
    pub(crate) api_bound: Vec<apibound::ApiBoundFigures>,
    /// Dashboard pages.
    pub(crate) dashboard: Option<dashboard::DashboardFigures>,
}

/// Concurrency of the no-HTTP shape, and the HTTP concurrency its ratio target compares
/// with: the shape effectum was measured in (16 producers, concurrency 16).
const NO_HTTP_CONCURRENCY: u32 = 16;
/// Producers of the no-HTTP shape.
const NO_HTTP_PRODUCERS: usize = 16;

/// One HTTP run, in its own scratch directory named by `label`, against a fresh sandbox
/// child (its records grow with every request it serves).
async fn http_run(
    scratch: &setup::Scratch,
    exe: &std::path::Path,
    concurrency: u32,
    label: &str,
    jobs: usize,
    checkpoints: Checkpoints,
) -> Result<RunFigures, BenchError> {
    let dir = setup::Scratch::new(&scratch.dir, &format!("e2e-{concurrency}-{label}"), false)?;
    let sandbox = setup::ChildSandbox::start(exe)?;
    e2e::http_run(&dir, None, &sandbox, concurrency, jobs, checkpoints).await
}

/// One no-HTTP run, in its own scratch directory named by `label`.
async fn no_http_run(
    scratch: &setup::Scratch,
    label: &str,
    jobs: usize,
    checkpoints: Checkpoints,
) -> Result<RunFigures, BenchError> {
    let dir = setup::Scratch::new(&scratch.dir, &format!("nohttp-{label}"), false)?;
    e2e::no_http_run(
        &dir,
        None,
        NO_HTTP_PRODUCERS,
        NO_HTTP_CONCURRENCY,
        jobs,
        checkpoints,
    )
    .await
}

/// Runs the selected scenarios, printing each as it finishes, then the target summary: on
/// the PostgreSQL server `--database` names, else on SQLite.
pub(crate) async fn run(options: &BenchOptions) -> Result<(), BenchError> {
    match &options.database {
        Some(url) => postgres::run(options, url).await,
        None => run_sqlite(options).await.map(drop),
    }
}

/// The scenarios on SQLite files in the scratch directory.
async fn run_sqlite(options: &BenchOptions) -> Result<Results, BenchError> {
    let sizes = Sizes::for_options(options);
    let wants = |scenario: Scenario| options.only.is_empty() || options.only.contains(&scenario);
    let scratch = setup::Scratch::new(
        &options.dir,
        &format!("approval-worker-bench-{}", std::process::id()),
        options.keep,
    )?;
    let mut results = Results::default();
    report::header(options, &sizes.concurrencies, sizes.runs);
    let sandbox = setup::ChildSandbox::start(&options.exe)?;

    if wants(Scenario::Ceilings) {
        let mut commits = Vec::new();
        let mut puts = Vec::new();
        let mut calls = Vec::new();
        for _ in 0..sizes.runs {
            commits.push(ceilings::commits_per_sec(&scratch, sizes.raw_commits).await?);
            puts.push(ceilings::loopback_put_mb_per_sec(sandbox.url(), sizes.put_bytes).await?);
            let fresh = setup::ChildSandbox::start(&options.exe)?;
            calls.push(ceilings::http_calls(fresh.url(), sizes.e2e_jobs * 2, 16).await?);
        }
        results.commits_per_sec = Some(stats::median(&commits));
        results.put_mb_per_sec = Some(stats::median(&puts));
        results.calls = Some(ceilings::CallCeiling {
            cpu_us: stats::median(&calls.iter().map(|c| c.cpu_us).collect::<Vec<_>>()),
            calls_per_sec: stats::median(
                &calls.iter().map(|c| c.calls_per_sec).collect::<Vec<_>>(),
            ),
        });
        report::ceilings(&results, sizes.put_bytes);
    }

    // Timed runs checkpoint the WAL as the product does; one more run per shape, with
    // checkpoints off and its times unused, measures the WAL bytes written per job.
    // The no-HTTP runs alternate with the HTTP runs at the same concurrency, so the target's
    // ratio compares runs seconds apart, not a drift of the shared machine.
    let mut no_http_runs = Vec::new();
    if wants(Scenario::EndToEnd) {
        for &concurrency in &sizes.concurrencies {
            let (exe, jobs) = (&options.exe, sizes.e2e_jobs);
            let mut runs = Vec::new();
            for run in 0..sizes.runs {
                let label = run.to_string();
                runs.push(http_run(&scratch, exe, concurrency, &label, jobs, Automatic).await?);
                if concurrency == NO_HTTP_CONCURRENCY && wants(Scenario::NoHttp) {
                    no_http_runs
                        .push(no_http_run(&scratch, &label, sizes.no_http_jobs, Automatic).await?);
                }
            }
            let mut figures = report::median_run(&runs);
            let wal = http_run(&scratch, exe, concurrency, "wal", jobs, Checkpoints::Off).await?;
            figures.wal_bytes_per_job = wal.wal_bytes_per_job;
            report::http_run(concurrency, &figures);
            results.http.push((concurrency, figures));
        }
    }

    if wants(Scenario::NoHttp) {
        for run in no_http_runs.len()..sizes.runs {
            let label = run.to_string();
            no_http_runs.push(no_http_run(&scratch, &label, sizes.no_http_jobs, Automatic).await?);
        }
        let mut figures = report::median_run(&no_http_runs);
        let wal = no_http_run(&scratch, "wal", sizes.no_http_jobs, Checkpoints::Off).await?;
        figures.wal_bytes_per_job = wal.wal_bytes_per_job;
        report::no_http_run(&figures);
        results.no_http = Some(figures);
    }

    if wants(Scenario::Claims) {
        results.claim_plan = claims::plans(&scratch).await?;
        let small = 1_000;
        let shape = |label: String, due, backoff| claims::Shape {
            label,
            due,
            backoff,
        };
        let shapes = [
            shape(format!("{small} due"), small, 0),
            shape(format!("{} due", sizes.big_table), sizes.big_table, 0),
            shape(
                format!("{small} due + {} in backoff", sizes.backoff_rows),
                small,
                sizes.backoff_rows,
            ),
            shape("nothing due (idle poll)".to_owned(), 0, 0),
            shape(
                format!(
                    "nothing due + {} in backoff (idle poll)",
                    sizes.backoff_rows
                ),
                0,
                sizes.backoff_rows,
            ),
        ];
        let run = claims::measure(&scratch, &shapes, sizes.claims_per_run, sizes.runs).await?;
        report::claims_cpu(run.cpu);
        for figure in &run.figures {
            report::claim(figure);
        }
        report::idle_polls(&run.figures);
        results.claims = run.figures;
        report::claim_plan(&results.claim_plan);
    }

    if wants(Scenario::OpenLoop) {
        let dir = setup::Scratch::new(&scratch.dir, "open-loop", false)?;
        let figures = openloop::measure(
            &options.exe,
            &dir,
            sandbox.url(),
            sizes.idle_secs,
            sizes.arrival_rate,
            sizes.arrival_secs,
        )
        .await?;
        report::open_loop(&figures);
        results.open_loop = Some(figures);
    }

    if wants(Scenario::LargeFile) {
        // The file in the default parts first, while this process has grown for no upload
        // yet (the allocator keeps what a run grew, so a later run's growth would hide in
        // it); then whole, the threshold above the file.
        let dir = setup::Scratch::new(&scratch.dir, "large-parts", false)?;
        let parts = crate::approval::PartPlan::default();
        let figures =
            largefile::measure(&dir, sandbox.url(), sizes.large_parts_bytes, parts).await?;
        report::large_file(&figures);
        results.large_parts = Some(figures);
        let whole = crate::approval::PartPlan {
            threshold_bytes: u64::MAX,
            ..Default::default()
        };
        let mut runs = Vec::new();
        for run in 0..sizes.runs {
            let dir = setup::Scratch::new(&scratch.dir, &format!("large-{run}"), false)?;
            runs.push(
                largefile::measure(&dir, sandbox.url(), sizes.large_file_bytes, whole).await?,
            );
        }
        let figures = report::median_large(&runs);
        report::large_file(&figures);
        results.large_file = Some(figures);
    }

    if wants(Scenario::Limiter) {
        let figures = limiter::measure(sandbox.url(), 20, 64, sizes.limiter_secs).await?;
        report::limiter(&figures);
        results.limiter = Some(figures);
    }

    if wants(Scenario::Batch) {
        let mut runs = Vec::new();
        for run in 0..sizes.runs {
            let dir = setup::Scratch::new(&scratch.dir, &format!("batch-{run}"), false)?;
            runs.push(batch::measure(&options.exe, &dir, sizes.batch_jobs).await?);
        }
        let figures = report::median_batch(&runs);
        report::batch(&figures);
        results.batch = Some(figures);
    }

    if wants(Scenario::Outcomes) {
        let figures = outcomes::measure(sizes.outcomes, sandbox.url(), None, async |label| {
            setup::Scratch::new(&scratch.dir, label, false)
        })
        .await?;
        outcomes::print(&figures);
        results.outcomes = Some(figures);
    }

    if wants(Scenario::ApiBound) {
        let figures = apibound::measure(
            sizes.api_bound_jobs,
            &sizes.api_bound_latencies_ms,
            &sizes.api_bound_concurrencies,
            async |label| setup::Scratch::new(&scratch.dir, label, false),
        )
        .await?;
        apibound::print(&figures);
        results.api_bound = figures;
    }

    if wants(Scenario::Dashboard) {
        let dir = setup::Scratch::new(&scratch.dir, "dashboard", false)?;
        let figures = dashboard::measure(&dir, sizes.dashboard).await?;
        dashboard::print(&figures);
        results.dashboard = Some(figures);
    }

    if options.only.contains(&Scenario::Processes) {
        println!("== processes: several hosts share a queue on PostgreSQL only; give --database\n");
    }

    drop(sandbox);
    report::targets(&results);
    Ok(results)
}

/// The no-HTTP shape alone, for the peer comparisons: `producers` producers, `concurrency`
/// runners, `jobs` jobs, median of `runs` runs, each in a fresh database: a SQLite file
/// under `dir`, or with `database` a new database on that PostgreSQL server.
pub(crate) async fn peer_shape(
    dir: &std::path::Path,
    producers: usize,
    concurrency: u32,
    jobs: usize,
    runs: usize,
    database: Option<&str>,
) -> Result<RunFigures, BenchError> {
    let scratch = setup::Scratch::new(
        dir,
        &format!("approval-worker-peer-{}", std::process::id()),
        false,
    )?;
    if let Some(url) = database {
        return postgres::peer_shape(&scratch, url, producers, concurrency, jobs, runs).await;
    }
    let mut figures = Vec::new();
    for run in 0..runs.max(1) {
        let run_dir = setup::Scratch::new(&scratch.dir, &format!("run-{run}"), false)?;
        let shape = e2e::no_http_run(&run_dir, None, producers, concurrency, jobs, Automatic);
        figures.push(shape.await?);
    }
    Ok(report::median_run(&figures))
}

/// The sandbox child: serves on a free loopback port, prints its URL on the first line of
/// stdout, and stops when stdin closes (the benchmark exiting, however it exits). It keeps
/// no request log and publishes no Stream events: nothing reads either, their cost would
/// count against the worker's share of the two cores, and undelivered events are kept.
pub(crate) async fn serve_sandbox() -> Result<(), BenchError> {
    let options = SandboxOptions {
        record_requests: false,
        stream: StreamOptions {
            publish_events: false,
            ..StreamOptions::default()
        },
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options).await?;
    println!("{}", sandbox.base_url());
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    sandbox.shutdown().await;
    Ok(())
}
