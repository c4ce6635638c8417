//! Several `approval-worker run` processes on one PostgreSQL database, as several hosts would
//! run them: they start idle, one transaction enqueues N jobs (its notification wakes them
//! all), and they drain the queue against the sandbox. Reports jobs/s, CPU per job over all
//! of them, and double claims: attempts claimed more than once, which must never happen.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::BenchError;
use super::e2e::{figures_from_events, server_cpu_per_job};
use super::openloop::{Kill, worker_toml};
use super::pgserver::{self, Database, PgServer};
use super::setup::{self, Checkpoints, Scratch};
use super::stats::{cpu_time, rate};
use crate::queue::{NewJob, now_ms};
use crate::sandbox::DEFAULT_APP_SECRET;

/// How long the `run` processes get to start (migrate, listen) before the jobs arrive.
const STARTUP: Duration = Duration::from_millis(1500);
/// How often the driver looks whether all jobs finished.
const FINISH_POLL: Duration = Duration::from_millis(50);
/// Longest a run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// What one run with some number of processes measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessFigures {
    /// `run` processes.
    pub(crate) processes: usize,
    /// Jobs drained.
    pub(crate) jobs: usize,
    /// Jobs that failed (should be none).
    pub(crate) failed: usize,
    /// Jobs over the time from the first claim to the last success.
    pub(crate) jobs_per_sec: f64,
    /// CPU of all `run` processes together per job, µs.
    pub(crate) cpu_us_per_job: f64,
    /// The server's CPU per job, µs, when it is on this machine.
    pub(crate) server_cpu_us_per_job: Option<f64>,
    /// `claimed` events: one per job unless a lease was lost and the job rescued.
    pub(crate) claims: i64,
    /// Attempts with more than one `claimed` event.
    pub(crate) double_claims: i64,
}

/// Drains `jobs` jobs with `processes` `run` processes of concurrency 16 on `database`
/// (fresh, empty) against the sandbox at `sandbox_url`.
pub(crate) async fn measure(
    exe: &Path,
    server: &PgServer,
    database: &Database,
    scratch: &Scratch,
    sandbox_url: &str,
    processes: usize,
    jobs: usize,
) -> Result<ProcessFigures, BenchError> {
    // The schema exists before the processes start, so none of them waits on a migration.
    let queue = scratch.queue(Checkpoints::Automatic).await?;
    let config_path = scratch.dir.join("worker.toml");
    std::fs::write(&config_path, worker_toml(scratch, sandbox_url))?;
    let mut running = Vec::new();
    for _ in 0..processes {
        running.push(Kill(
            Command::new(exe)
                .arg("--config")
                .arg(&config_path)
                .arg("run")
                .env("DINGTALK_APP_SECRET", DEFAULT_APP_SECRET)
                .env("APPROVAL_WORKER_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?,
        ));
    }
    tokio::time::sleep(STARTUP).await;
    for process in &mut running {
        if let Some(status) = process.0.try_wait()? {
            return Err(BenchError::Setup(format!(
                "`run` exited at start: {status}"
            )));
        }
    }
    let batch: Vec<NewJob> = (0..jobs)
        .map(|index| NewJob {
            payload: scratch.payload(index),
            ..NewJob::default()
        })
        .collect();
    let pids: Vec<u32> = running.iter().map(|process| process.0.id()).collect();
    let cpu_of_all = || {
        pids.iter()
            .map(|pid| cpu_time(Some(*pid)))
            .sum::<Duration>()
    };
    let cpu = cpu_of_all();
    let server_cpu = server.cpu();
    queue.enqueue_many(&batch, now_ms()).await?;
    setup::wait_finished(&queue, jobs as i64, FINISH_POLL, RUN_TIMEOUT).await?;
    let cpu = cpu_of_all().saturating_sub(cpu);
    let server_cpu = server_cpu_per_job(Some(server), server_cpu, jobs);
    drop(running);

    let events = figures_from_events(&queue, false).await?;
    queue.close().await;
    let (claims, double_claims) = pgserver::claims(database).await?;
    Ok(ProcessFigures {
        processes,
        jobs: events.jobs,
        failed: events.failed,
        jobs_per_sec: rate(events.jobs as f64, events.elapsed),
        cpu_us_per_job: cpu.as_secs_f64() * 1e6 / jobs.max(1) as f64,
        server_cpu_us_per_job: server_cpu,
        claims,
        double_claims,
    })
}
