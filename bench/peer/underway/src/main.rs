//! Runs the same no-HTTP job shape on underway 0.2 and on approval-worker's PostgreSQL queue,
//! in turns, each run in a fresh database of one server, and prints the median jobs/s of
//! each and their ratio.
//!
//! The shape: 16 producer tasks add N jobs one at a time while a worker with concurrency 16
//! runs them. approval-worker's runners claim each job, write 5 checkpoints and mark it
//! succeeded. underway stores progress between steps (a step's output becomes the next
//! step's task), so its job has 5 steps passing the payload on, the fifth completing it:
//! 4 stored hand-overs and a completion, one write fewer per job than approval-worker's.
//! approval-worker runs as its own binary (`approval-worker bench --peer-shape --database`,
//! see the manifest for why), one run per turn, so both see the same machine and server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Notify;
use underway::{Job, To};

/// The allocator approval-worker's binary uses, so the comparison is like-for-like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Producers and worker concurrency of the shape.
const PRODUCERS: usize = 16;
const CONCURRENCY: usize = 16;
/// Jobs per run, runs (turns) and pool size unless given on the command line.
const DEFAULT_JOBS: usize = 2_000;
const DEFAULT_RUNS: usize = 5;
/// approval-worker's default `[database] max_connections`, given to underway's pool too.
const DEFAULT_CONNECTIONS: u32 = 10;
/// How often the driver checks that underway has recorded the last completions.
const FINISH_POLL: Duration = Duration::from_millis(10);
/// The queue (underway's name for a job's tasks).
const QUEUE: &str = "bench";

/// The payload every job carries: the same JSON approval-worker's shape stores.
const PAYLOAD: &str = r#"{"process_code":"PROC-BENCH","originator_user_id":"manager4220","dept_id":-1,"form":[{"name":"报销事由","value":"bench"}],"attachments":[{"path":"/tmp/spool/receipt-0.pdf","name":"receipt-0.pdf"}]}"#;

#[derive(Debug)]
struct Progress {
    done: AtomicUsize,
    all_done: Notify,
    target: usize,
}

type State = Arc<Progress>;

/// The five-step job. Each process side builds its own: underway 0.2 keeps one step index
/// per `Job` value, advanced by every step it runs and read by `enqueue` as the new job's
/// first step, so producers sharing the worker's `Job` would start jobs part-way through.
async fn five_steps(pool: PgPool, progress: State) -> Result<Job<Value, State>, Error> {
    Ok(Job::builder()
        .state(progress)
        .step(|_, payload: Value| async move { To::next(payload) })
        .step(|_, payload: Value| async move { To::next(payload) })
        .step(|_, payload: Value| async move { To::next(payload) })
        .step(|_, payload: Value| async move { To::next(payload) })
        .step(|cx, _: Value| async move {
            let progress = &cx.state;
            if progress.done.fetch_add(1, Ordering::AcqRel) + 1 == progress.target {
                progress.all_done.notify_one();
            }
            To::done()
        })
        .name(QUEUE)
        .pool(pool)
        .build()
        .await?)
}

/// One underway run in the fresh database `options` points at; jobs/s and this process's
/// CPU µs per job.
async fn underway_run(
    options: PgConnectOptions,
    jobs: usize,
    connections: u32,
) -> Result<(f64, f64), Error> {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await?;
    underway::run_migrations(&pool).await?;
    let progress = Arc::new(Progress {
        done: AtomicUsize::new(0),
        all_done: Notify::new(),
        target: jobs,
    });
    let producing = five_steps(pool.clone(), Arc::clone(&progress)).await?;
    let mut worker = five_steps(pool.clone(), Arc::clone(&progress))
        .await?
        .worker();
    worker.set_concurrency_limit(CONCURRENCY);
    let payload: Value = serde_json::from_str(PAYLOAD)?;

    // A clone shares the worker's shutdown token.
    let stopper = worker.clone();

    let cpu = cpu_time();
    let started = Instant::now();
    let running = tokio::spawn(async move { worker.run().await });
    let mut producers = tokio::task::JoinSet::new();
    for producer in 0..PRODUCERS {
        let job = producing.clone();
        let payload = payload.clone();
        let share = jobs / PRODUCERS + usize::from(producer < jobs % PRODUCERS);
        producers.spawn(async move {
            for _ in 0..share {
                job.enqueue(&payload).await?;
            }
            Ok::<(), underway::job::Error>(())
        });
    }
    while let Some(joined) = producers.join_next().await {
        joined??;
    }
    let all_done = progress.all_done.notified();
    if progress.done.load(Ordering::Acquire) < jobs {
        all_done.await;
    }
    // The last step has returned for every job; wait for underway to record the completions.
    loop {
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM underway.task WHERE task_queue_name = $1 \
             AND state IN ('pending', 'in_progress')",
        )
        .bind(QUEUE)
        .fetch_one(&pool)
        .await?;
        if active == 0 {
            break;
        }
        tokio::time::sleep(FINISH_POLL).await;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu);
    // Stop the worker before closing the pool: underway's task loops retry a failed dequeue
    // at once, and with the pool closed they would spin without ever yielding.
    stopper.shutdown();
    running.await??;
    pool.close().await;
    Ok((
        jobs as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / jobs as f64,
    ))
}

/// One approval-worker run through its binary, in a database it creates on the same server;
/// jobs/s and its CPU µs per job.
fn approval_worker_run(
    exe: &Path,
    url: &str,
    jobs: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let output = Command::new(exe)
        .args(["bench", "--peer-shape", "--runs", "1", "--jobs"])
        .arg(jobs.to_string())
        .args(["--database", url])
        .env("APPROVAL_WORKER_LOG", "warn")
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            exe.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let figures: Value = serde_json::from_slice(&output.stdout)?;
    let number = |key: &str| {
        figures[key]
            .as_f64()
            .ok_or(format!("no {key} in {figures}"))
    };
    Ok((number("jobs_per_sec")?, number("cpu_us_per_job")?))
}

/// A fresh database for one underway run; returns how to connect to it.
async fn fresh_database(url: &str, name: &str) -> Result<PgConnectOptions, Error> {
    let mut admin = PgConnection::connect(url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(PgConnectOptions::from_str(url)?.database(name))
}

async fn drop_database(url: &str, name: &str) -> Result<(), Error> {
    let mut admin = PgConnection::connect(url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// User + system CPU of this process (`/proc/self/stat` fields 14 and 15, 10 ms ticks).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| fields.get(index - 3).and_then(|f| f.parse::<u64>().ok());
    Duration::from_millis((ticks(14).unwrap_or(0) + ticks(15).unwrap_or(0)) * 10)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

struct Args {
    database: String,
    jobs: usize,
    runs: usize,
    connections: u32,
    exe: PathBuf,
}

fn args() -> Result<Args, String> {
    let usage = "usage: --database postgres://… [--jobs N] [--runs N] [--connections N] \
                 [--approval-worker PATH]";
    let mut database = None;
    let mut parsed = Args {
        database: String::new(),
        jobs: DEFAULT_JOBS,
        runs: DEFAULT_RUNS,
        connections: DEFAULT_CONNECTIONS,
        exe: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../target/release/approval-worker"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database" => database = Some(value),
            "--jobs" => parsed.jobs = value.parse().map_err(|e| format!("--jobs: {e}"))?,
            "--runs" => parsed.runs = value.parse().map_err(|e| format!("--runs: {e}"))?,
            "--connections" => {
                parsed.connections = value.parse().map_err(|e| format!("--connections: {e}"))?;
            }
            "--approval-worker" => parsed.exe = PathBuf::from(value),
            _ => return Err(format!("unknown flag {flag}; {usage}")),
        }
    }
    parsed.database = database.ok_or(format!("--database is required; {usage}"))?;
    if parsed.runs == 0 || parsed.jobs == 0 || parsed.connections == 0 {
        return Err("--jobs, --runs and --connections must be at least 1".into());
    }
    Ok(parsed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // underway runs on both tokio schedulers each turn and is credited with the faster:
    // approval-worker's worker runs on one scheduler thread, which may suit underway too.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let args = args()?;
    if !args.exe.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` at the repository root first, or pass --approval-worker PATH",
            args.exe.display()
        )
        .into());
    }
    println!(
        "peer shape on PostgreSQL: {PRODUCERS} producers, concurrency {CONCURRENCY}, no HTTP; {} jobs per run, {} runs each, alternating; underway's pool: {} connections",
        args.jobs, args.runs, args.connections
    );
    let url = args.database.as_str();
    let mut peers = Vec::new();
    let mut ours = Vec::new();
    for run in 0..args.runs {
        let mut underway = Vec::new();
        for (mode, runtime) in [("multi", &multi), ("current", &current)] {
            let name = format!("aw_peer_underway_{}_{run}_{mode}", std::process::id());
            let measured = runtime.block_on(async {
                let options = fresh_database(url, &name).await?;
                let measured = underway_run(options, args.jobs, args.connections).await;
                drop_database(url, &name).await?;
                measured
            });
            underway.push(measured.map_err(|e| format!("underway run: {e}"))?);
        }
        let (on_multi, on_current) = (underway[0], underway[1]);
        let peer = if on_multi.0 >= on_current.0 {
            on_multi
        } else {
            on_current
        };
        let (jobs_per_sec, cpu_us) = approval_worker_run(&args.exe, url, args.jobs)?;
        println!(
            "  run {}: underway {:>6.0} jobs/s (multi-thread {:.0}, current-thread {:.0}; {:.0} µs CPU/job)   approval-worker {jobs_per_sec:>6.0} jobs/s ({cpu_us:.0} µs CPU/job)",
            run + 1,
            peer.0,
            on_multi.0,
            on_current.0,
            peer.1
        );
        peers.push(peer.0);
        ours.push(jobs_per_sec);
    }
    let (peer, mine) = (median(&mut peers), median(&mut ours));
    println!(
        "median: underway {peer:.0} jobs/s, approval-worker {mine:.0} jobs/s; ratio {:.2} (target ≥ 2)",
        mine / peer
    );
    Ok(())
}
