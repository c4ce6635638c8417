//! `bench --database postgres://…`: the scenarios that concern the store, on PostgreSQL.
//! Every run gets a fresh database on that server, dropped when the run ends (and every one
//! left when the benchmark stops on an error), so no run sees another's rows. Scenarios: the
//! server's raw-commit ceiling, end to end with HTTP, the no-HTTP shape, claims with 1 k
//! and 1 M due rows, pickup of plain-SQL inserts through LISTEN/NOTIFY, and several `run`
//! processes draining one database. Where the server runs on this machine, its CPU per job
//! is printed beside the worker's: both share the cores.

use super::claims::{self, ClaimFigures, Shape};
use super::e2e::{self, RunFigures};
use super::openloop::{self, OpenLoopFigures};
use super::outcomes::{self, OutcomeFigures};
use super::pgserver::{self, Database, PgServer};
use super::processes::{self, ProcessFigures};
use super::setup::{Checkpoints::Automatic, ChildSandbox, Scratch};
use super::stats::{median, rate};
use super::{
    BenchError, BenchOptions, NO_HTTP_CONCURRENCY, NO_HTTP_PRODUCERS, Scenario, Sizes, pgreport,
    report,
};
use crate::queue::{Location, Queue};

/// Numbers of `run` processes the processes scenario compares (1 is the baseline).
const PROCESS_COUNTS: [usize; 3] = [1, 2, 4];
/// Due jobs of the small claims table.
const SMALL_TABLE: u64 = 1_000;

/// Everything one PostgreSQL run measured; empty for scenarios not run.
#[derive(Debug, Clone, Default)]
pub(super) struct PgResults {
    /// Single-row commits/s over one connection.
    pub(super) commits_per_sec: Option<f64>,
    /// Per concurrency, with HTTP.
    pub(super) http: Vec<(u32, RunFigures)>,
    /// The no-HTTP shape.
    pub(super) no_http: Option<RunFigures>,
    /// The small table, then the big one.
    pub(super) claims: Vec<ClaimFigures>,
    /// The claim's plan on the big table.
    pub(super) claim_plan: Vec<String>,
    pub(super) open_loop: Option<OpenLoopFigures>,
    /// Per number of `run` processes.
    pub(super) processes: Vec<ProcessFigures>,
    /// Outcome tracking.
    pub(super) outcomes: Option<OutcomeFigures>,
}

/// Runs the selected scenarios on the server at `url`, then drops every database it made.
pub(super) async fn run(options: &BenchOptions, url: &str) -> Result<(), BenchError> {
    let server = PgServer::connect(url).await?;
    let outcome = scenarios(options, &server).await;
    server.drop_all().await;
    outcome
}

async fn scenarios(options: &BenchOptions, server: &PgServer) -> Result<(), BenchError> {
    let mut sizes = Sizes::for_options(options);
    if options.concurrency.is_empty() {
        sizes.concurrencies = vec![NO_HTTP_CONCURRENCY];
    }
    let wants = |scenario: Scenario| options.only.is_empty() || options.only.contains(&scenario);
    let scratch = Scratch::new(
        &options.dir,
        &format!("approval-worker-bench-{}", std::process::id()),
        options.keep,
    )?;
    let exe = &options.exe;
    let mut results = PgResults::default();
    pgreport::header(options, server, &sizes.concurrencies, sizes.runs);

    if wants(Scenario::Ceilings) {
        let mut rates = Vec::new();
        for run in 0..sizes.runs {
            let label = format!("ceiling_{run}");
            let commits = sizes.raw_commits;
            let took = in_fresh(server, &scratch, &label, async |_, database| {
                pgserver::raw_commits(database, commits).await
            })
            .await?;
            rates.push(rate(f64::from(commits), took));
        }
        results.commits_per_sec = Some(median(&rates));
        pgreport::ceilings(&results);
    }

    // As on SQLite, each no-HTTP run follows the HTTP run at concurrency 16 with the same
    // index, so the two compare runs seconds apart.
    let mut no_http_runs = Vec::new();
    let no_http = async |label: String| {
        in_fresh(server, &scratch, &label, async |dir, _| {
            let (producers, jobs) = (NO_HTTP_PRODUCERS, sizes.no_http_jobs);
            e2e::no_http_run(
                dir,
                Some(server),
                producers,
                NO_HTTP_CONCURRENCY,
                jobs,
                Automatic,
            )
            .await
        })
        .await
    };
    if wants(Scenario::EndToEnd) {
        for &concurrency in &sizes.concurrencies {
            let mut runs = Vec::new();
            for run in 0..sizes.runs {
                let label = format!("e2e_{concurrency}_{run}");
                let sandbox = ChildSandbox::start(exe)?;
                let figures = in_fresh(server, &scratch, &label, async |dir, _| {
                    let jobs = sizes.e2e_jobs;
                    e2e::http_run(dir, Some(server), &sandbox, concurrency, jobs, Automatic).await
                })
                .await?;
                runs.push(figures);
                if concurrency == NO_HTTP_CONCURRENCY && wants(Scenario::NoHttp) {
                    no_http_runs.push(no_http(format!("nohttp_{run}")).await?);
                }
            }
            let figures = report::median_run(&runs);
            report::http_run(concurrency, &figures);
            results.http.push((concurrency, figures));
        }
    }

    if wants(Scenario::NoHttp) {
        for run in no_http_runs.len()..sizes.runs {
            no_http_runs.push(no_http(format!("nohttp_{run}")).await?);
        }
        let figures = report::median_run(&no_http_runs);
        report::no_http_run(&figures);
        results.no_http = Some(figures);
    }

    if wants(Scenario::Claims) {
        let (figures, plan) = claims(server, &scratch, &sizes).await?;
        results.claims = figures;
        results.claim_plan = plan;
        pgreport::claims(&results);
    }

    if wants(Scenario::OpenLoop) {
        let sandbox = ChildSandbox::start(exe)?;
        let figures = in_fresh(server, &scratch, "open_loop", async |dir, _| {
            let (idle, rate, secs) = (sizes.idle_secs, sizes.arrival_rate, sizes.arrival_secs);
            openloop::measure(exe, dir, sandbox.url(), idle, rate, secs).await
        })
        .await?;
        report::open_loop(&figures);
        results.open_loop = Some(figures);
    }

    if wants(Scenario::Processes) {
        // Turns of 1, 2, 4 processes, so the machine's drift falls on every count alike.
        let mut runs: Vec<Vec<ProcessFigures>> = vec![Vec::new(); PROCESS_COUNTS.len()];
        for run in 0..sizes.runs {
            for (index, &count) in PROCESS_COUNTS.iter().enumerate() {
                let sandbox = ChildSandbox::start(exe)?;
                let label = format!("processes_{count}_{run}");
                let figures = in_fresh(server, &scratch, &label, async |dir, database| {
                    let jobs = sizes.process_jobs;
                    processes::measure(exe, server, database, dir, sandbox.url(), count, jobs).await
                })
                .await?;
                runs[index].push(figures);
            }
        }
        results.processes = runs
            .iter()
            .map(|runs| pgreport::median_processes(runs))
            .collect();
        pgreport::processes(&results.processes);
    }

    if wants(Scenario::Outcomes) {
        let sandbox = ChildSandbox::start(exe)?;
        // Each part's database is dropped with the others when the benchmark ends.
        let figures =
            outcomes::measure(sizes.outcomes, sandbox.url(), Some(server), async |label| {
                let database = server.fresh(label).await?;
                Ok(Scratch::new(&scratch.dir, label, false)?.on_postgres(&database.url))
            })
            .await?;
        outcomes::print(&figures);
        results.outcomes = Some(figures);
    }

    pgreport::skipped(options);
    pgreport::targets(&results);
    Ok(())
}

/// Claim scaling: one database with [`SMALL_TABLE`] due jobs, one with the big table's,
/// each built in one statement and then vacuumed and analysed as autovacuum would; claims
/// timed in rotated turns as on SQLite. Returns the figures and the claim's plan on the
/// big table.
async fn claims(
    server: &PgServer,
    scratch: &Scratch,
    sizes: &Sizes,
) -> Result<(Vec<ClaimFigures>, Vec<String>), BenchError> {
    let shapes = [SMALL_TABLE, sizes.big_table].map(|due| Shape {
        label: format!("{due} due"),
        due,
        backoff: 0,
    });
    let payload = scratch.payload(0);
    let mut databases = Vec::new();
    let mut queues = Vec::new();
    for (index, shape) in shapes.iter().enumerate() {
        let database = server.fresh(&format!("claims_{index}")).await?;
        let location = Location::Postgres(pgserver::queue_options(&database.url));
        databases.push(database.clone());
        let queue = Queue::connect(&location).await?;
        claims::fill(&queue, shape, &payload).await?;
        pgserver::settle(&database).await?;
        queues.push(queue);
    }
    let figures = claims::time_claims(&queues, &shapes, sizes.claims_per_run, sizes.runs).await?;
    let plan = match queues.last() {
        Some(queue) => queue.claim_plan().await?,
        None => Vec::new(),
    };
    for queue in &queues {
        queue.close().await;
    }
    for database in &databases {
        server.drop_database(database).await?;
    }
    Ok((figures, plan))
}

/// Runs `run` with a scratch directory named `label` whose runs use a fresh database of
/// that name on `server`, then drops the database (also when the run failed).
async fn in_fresh<T>(
    server: &PgServer,
    scratch: &Scratch,
    label: &str,
    run: impl AsyncFnOnce(&Scratch, &Database) -> Result<T, BenchError>,
) -> Result<T, BenchError> {
    let database = server.fresh(label).await?;
    let dir = Scratch::new(&scratch.dir, label, false)?.on_postgres(&database.url);
    let outcome = run(&dir, &database).await;
    server.drop_database(&database).await?;
    outcome
}

/// The no-HTTP shape alone on the server at `url`, for the peer comparison: median of
/// `runs` runs, each in a fresh database.
pub(super) async fn peer_shape(
    scratch: &Scratch,
    url: &str,
    producers: usize,
    concurrency: u32,
    jobs: usize,
    runs: usize,
) -> Result<RunFigures, BenchError> {
    let server = PgServer::connect(url).await?;
    let mut figures = Vec::new();
    let mut outcome = Ok(());
    for run in 0..runs.max(1) {
        let label = format!("peer_{run}");
        let shape = in_fresh(&server, scratch, &label, async |dir, _| {
            e2e::no_http_run(dir, Some(&server), producers, concurrency, jobs, Automatic).await
        });
        match shape.await {
            Ok(run) => figures.push(run),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    server.drop_all().await;
    outcome.map(|()| report::median_run(&figures))
}
