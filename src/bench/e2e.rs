//! End-to-end runs: N jobs enqueued, then the real worker drives them through every step
//! against the sandbox (QPS limit off, no added latency, small attachments); and the same
//! queue traffic with no HTTP at all (claim, five checkpoints, succeed), which is the shape
//! the peer comparison with effectum uses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::BenchError;
use super::pgserver::PgServer;
use super::setup::{self, Checkpoints, Running, Scratch};
use super::stats::{cpu_time, percentile, rate};
use crate::queue::{NewJob, Queue, QueueError, StepDone, Unstored, now_ms};
use crate::worker::WorkerSettings;

/// How often the driver looks whether all jobs finished (it costs one read each time).
const FINISH_POLL: Duration = Duration::from_millis(50);
/// Longest a run may take before the benchmark gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// The checkpoints each job of the no-HTTP shape writes before it succeeds: one per step,
/// as if every step were stored (the shape effectum is driven in, so it stays like-for-like).
pub(crate) const NO_HTTP_CHECKPOINTS: [&str; 5] =
    ["space", "upload_info", "put", "commit", "submit"];
/// Lease of the no-HTTP runners.
const NO_HTTP_LEASE_MS: i64 = 60_000;
/// The steps of a one-attachment job, in order.
const STEPS: [&str; 5] = ["space", "upload_info", "put", "commit", "submit"];

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunFigures {
    /// Jobs that succeeded.
    pub(crate) jobs: usize,
    /// Jobs that failed (should be none).
    pub(crate) failed: usize,
    /// Wall time from the start of work to the last job finishing.
    pub(crate) elapsed: Duration,
    /// Jobs per second over `elapsed`.
    pub(crate) jobs_per_sec: f64,
    /// Claim-to-succeed latency percentiles, ms.
    pub(crate) latency_p50_ms: f64,
    /// See `latency_p50_ms`.
    pub(crate) latency_p99_ms: f64,
    /// Per step: `(name, p50 ms, p99 ms)`.
    pub(crate) steps: Vec<(String, f64, f64)>,
    /// Transactions committed per job.
    pub(crate) commits_per_job: f64,
    /// Process CPU (user + system) per job, µs.
    pub(crate) cpu_us_per_job: f64,
    /// The sandbox child's CPU per job, µs (HTTP runs only): the other half of the machine's
    /// work when both share its cores.
    pub(crate) sandbox_cpu_us_per_job: f64,
    /// WAL bytes written per job: measured by a run with checkpoints off (0 from a timed run;
    /// the benchmark takes it from the shape's extra run).
    pub(crate) wal_bytes_per_job: f64,
    /// The PostgreSQL server's CPU per job, µs: all its processes, which share the machine's
    /// cores with the worker (`None` on SQLite, or for a server on another machine).
    pub(crate) server_cpu_us_per_job: Option<f64>,
}

/// Runs `jobs` one-attachment jobs through the real worker at `concurrency`. `server` is the
/// PostgreSQL server of the scratch directory's database, if it has one.
pub(crate) async fn http_run(
    scratch: &Scratch,
    server: Option<&PgServer>,
    sandbox: &setup::ChildSandbox,
    concurrency: u32,
    jobs: usize,
    checkpoints: Checkpoints,
) -> Result<RunFigures, BenchError> {
    let sandbox_url = sandbox.url();
    let queue = scratch.queue(checkpoints).await?;
    let batch: Vec<NewJob> = (0..jobs)
        .map(|index| NewJob {
            payload: scratch.payload(index),
            ..NewJob::default()
        })
        .collect();
    queue.enqueue_many(&batch, now_ms()).await?;
    queue.checkpoint_wal().await?;
    let config = scratch.config(sandbox_url, concurrency);
    let worker = setup::worker(
        queue.clone(),
        sandbox_url,
        WorkerSettings::from_config(&config),
    )?;

    let commits = queue.commits();
    let cpu = cpu_time(None);
    let sandbox_cpu = cpu_time(Some(sandbox.pid()));
    let server_cpu = server.and_then(PgServer::cpu);
    let started = Instant::now();
    let running = Running::start(&worker);
    setup::wait_finished(&queue, jobs as i64, FINISH_POLL, RUN_TIMEOUT).await?;
    let wall = started.elapsed();
    let cpu = cpu_time(None).saturating_sub(cpu);
    let sandbox_cpu = cpu_time(Some(sandbox.pid())).saturating_sub(sandbox_cpu);
    let server_cpu = server_cpu_per_job(server, server_cpu, jobs);
    let commits = queue.commits() - commits;
    let wal = (checkpoints == Checkpoints::Off).then(|| scratch.wal_bytes());
    running.stop().await;

    let mut figures = figures_from_events(&queue, true).await?;
    if figures.elapsed.is_zero() {
        figures.elapsed = wall;
    }
    figures.jobs_per_sec = rate(figures.jobs as f64, figures.elapsed);
    per_job(&mut figures, commits, cpu, wal, jobs);
    figures.sandbox_cpu_us_per_job = sandbox_cpu.as_secs_f64() * 1e6 / jobs.max(1) as f64;
    figures.server_cpu_us_per_job = server_cpu;
    queue.close().await;
    Ok(figures)
}

/// The no-HTTP shape: `producers` tasks enqueue `jobs` jobs one at a time while a pool of
/// `concurrency` runners claims them, writes `NO_HTTP_CHECKPOINTS` checkpoints each and
/// marks them succeeded. `server` is the PostgreSQL server of the scratch directory's
/// database, if it has one.
pub(crate) async fn no_http_run(
    scratch: &Scratch,
    server: Option<&PgServer>,
    producers: usize,
    concurrency: u32,
    jobs: usize,
    checkpoints: Checkpoints,
) -> Result<RunFigures, BenchError> {
    let queue = scratch.queue(checkpoints).await?;
    queue.checkpoint_wal().await?;
    let payload = scratch.payload(0);
    let wake = Arc::new(Notify::new());
    let commits = queue.commits();
    let cpu = cpu_time(None);
    let server_cpu = server.and_then(PgServer::cpu);
    let started = Instant::now();

    let mut tasks: JoinSet<Result<(), QueueError>> = JoinSet::new();
    for producer in 0..producers {
        let queue = queue.clone();
        let wake = Arc::clone(&wake);
        let payload = payload.clone();
        let share = jobs / producers + usize::from(producer < jobs % producers);
        tasks.spawn(async move {
            for _ in 0..share {
                let job = NewJob {
                    payload: payload.clone(),
                    ..NewJob::default()
                };
                queue.enqueue(&job, now_ms()).await?;
                wake.notify_one();
            }
            Ok(())
        });
    }
    let pool = tokio::spawn(no_http_pool(
        queue.clone(),
        Arc::clone(&wake),
        concurrency,
        jobs,
    ));
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError::Setup(e.to_string()))??;
    }
    pool.await.map_err(|e| BenchError::Setup(e.to_string()))??;
    let elapsed = started.elapsed();
    let cpu = cpu_time(None).saturating_sub(cpu);
    let server_cpu = server_cpu_per_job(server, server_cpu, jobs);
    let commits = queue.commits() - commits;
    let wal = (checkpoints == Checkpoints::Off).then(|| scratch.wal_bytes());

    let mut figures = figures_from_events(&queue, false).await?;
    figures.elapsed = elapsed;
    figures.jobs_per_sec = rate(jobs as f64, elapsed);
    per_job(&mut figures, commits, cpu, wal, jobs);
    figures.server_cpu_us_per_job = server_cpu;
    queue.close().await;
    Ok(figures)
}

/// Claims up to the free slots whenever woken, runs each job on its own task, until `jobs`
/// jobs succeeded.
async fn no_http_pool(
    queue: Queue,
    wake: Arc<Notify>,
    concurrency: u32,
    jobs: usize,
) -> Result<(), BenchError> {
    let owner = format!("bench:{}", std::process::id());
    let slots = Arc::new(Semaphore::new(concurrency as usize));
    let mut runners: JoinSet<Result<(), QueueError>> = JoinSet::new();
    let mut done = 0;
    while done < jobs {
        while let Some(joined) = runners.try_join_next() {
            joined.map_err(|e| BenchError::Setup(e.to_string()))??;
            done += 1;
        }
        let free = slots.available_permits();
        let claimed = if free > 0 {
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            queue
                .claim(
                    crate::queue::DEFAULT_QUEUE,
                    &owner,
                    limit,
                    NO_HTTP_LEASE_MS,
                    now_ms(),
                )
                .await?
        } else {
            Vec::new()
        };
        let idle = claimed.is_empty();
        for job in claimed {
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                break;
            };
            let queue = queue.clone();
            let wake = Arc::clone(&wake);
            runners.spawn(async move {
                let fence = job.fence();
                let none = Unstored::default();
                for step in NO_HTTP_CHECKPOINTS {
                    let done = StepDone {
                        step,
                        duration_ms: 0,
                        at_ms: now_ms(),
                    };
                    queue.checkpoint(fence, &none, &done, step, "{}").await?;
                }
                queue
                    .succeed(
                        fence,
                        &Unstored::default(),
                        "{}",
                        "done",
                        "{}",
                        None,
                        now_ms(),
                    )
                    .await?;
                drop(permit);
                wake.notify_one();
                Ok(())
            });
        }
        if idle && done < jobs {
            tokio::select! {
                () = wake.notified() => {}
                Some(joined) = runners.join_next() => {
                    joined.map_err(|e| BenchError::Setup(e.to_string()))??;
                    done += 1;
                }
            }
        }
    }
    Ok(())
}

/// `wal`: the WAL file's bytes, for a run with checkpoints off (with them, the file's size
/// says nothing about what was written).
fn per_job(figures: &mut RunFigures, commits: u64, cpu: Duration, wal: Option<u64>, jobs: usize) {
    let jobs = jobs.max(1) as f64;
    figures.commits_per_job = commits as f64 / jobs;
    figures.cpu_us_per_job = cpu.as_secs_f64() * 1e6 / jobs;
    figures.wal_bytes_per_job = wal.map_or(0.0, |wal| wal as f64 / jobs);
}

/// The PostgreSQL server's CPU per job since `before`, µs.
pub(crate) fn server_cpu_per_job(
    server: Option<&PgServer>,
    before: Option<Duration>,
    jobs: usize,
) -> Option<f64> {
    let used = server?.cpu()?.saturating_sub(before?);
    Some(used.as_secs_f64() * 1e6 / jobs.max(1) as f64)
}

/// Latencies and throughput from the stored events: claim → succeeded per job, and per step
/// the `step_done` durations (the submit step ends at `succeeded`).
pub(crate) async fn figures_from_events(
    queue: &Queue,
    with_steps: bool,
) -> Result<RunFigures, BenchError> {
    let events = queue.event_log().await?;
    let mut claimed: HashMap<i64, i64> = HashMap::new();
    let mut last_step_at: HashMap<i64, i64> = HashMap::new();
    let mut latencies = Vec::new();
    let mut steps: HashMap<String, Vec<f64>> = HashMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut failed = 0;
    for event in &events {
        match event.kind.as_str() {
            "claimed" => {
                claimed.insert(event.job_id, event.at);
                first = first.min(event.at);
            }
            "step_done" => {
                if let (Some(step), Some(ms)) = (&event.step, event.duration_ms) {
                    steps.entry(step.clone()).or_default().push(ms as f64);
                }
                last_step_at.insert(event.job_id, event.at);
            }
            "succeeded" => {
                if let Some(at) = claimed.get(&event.job_id) {
                    latencies.push((event.at - at) as f64);
                }
                if let Some(at) = last_step_at.get(&event.job_id) {
                    steps
                        .entry("submit".to_owned())
                        .or_default()
                        .push((event.at - at) as f64);
                }
                last = last.max(event.at);
            }
            "failed" => failed += 1,
            _ => {}
        }
    }
    let elapsed = if last > first {
        Duration::from_millis(u64::try_from(last - first).unwrap_or(0))
    } else {
        Duration::ZERO
    };
    let step_figures = if with_steps {
        STEPS
            .iter()
            .map(|name| {
                let values = steps.get(*name).map(Vec::as_slice).unwrap_or(&[]);
                (
                    (*name).to_owned(),
                    percentile(values, 50.0),
                    percentile(values, 99.0),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(RunFigures {
        jobs: latencies.len(),
        failed,
        elapsed,
        latency_p50_ms: percentile(&latencies, 50.0),
        latency_p99_ms: percentile(&latencies, 99.0),
        steps: step_figures,
        ..RunFigures::default()
    })
}
