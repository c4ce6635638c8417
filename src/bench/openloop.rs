//! Open loop: `approval-worker run` as its own process, rows inserted at a fixed rate by
//! another process with plain SQL, pickup latency (row created → claimed) and backlog; and
//! the CPU `run` uses while the queue is empty. On SQLite or PostgreSQL, whichever the
//! scratch directory's database is.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;
use super::pgserver::PgProducer;
use super::setup::{Checkpoints, Scratch};
use super::stats::{cpu_time, percentile};
use crate::queue::measure::PlainProducer;
use crate::sandbox::DEFAULT_APP_SECRET;

/// How long `run` gets to start before its idle CPU is measured.
const STARTUP: Duration = Duration::from_secs(1);
/// How often the backlog is sampled.
const BACKLOG_SAMPLE: Duration = Duration::from_millis(100);
/// How long to wait for the last jobs after the producer stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrency of the `run` process.
const RUN_CONCURRENCY: u32 = 16;

/// What the open-loop run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenLoopFigures {
    /// CPU of the idle `run`, percent of one core.
    pub(crate) idle_cpu_percent: f64,
    /// Over how long.
    pub(crate) idle_secs: f64,
    /// Arrival rate, jobs/s.
    pub(crate) rate: u32,
    /// Jobs inserted.
    pub(crate) jobs: usize,
    /// Pickup latency percentiles, ms.
    pub(crate) pickup_p50_ms: f64,
    /// See `pickup_p50_ms`.
    pub(crate) pickup_p99_ms: f64,
    /// Worst pickup, ms.
    pub(crate) pickup_max_ms: f64,
    /// Mean and largest number of queued jobs seen while producing.
    pub(crate) backlog_mean: f64,
    /// See `backlog_mean`.
    pub(crate) backlog_max: i64,
    /// CPU of `run` per job while producing, µs.
    pub(crate) cpu_us_per_job: f64,
}

/// A child process killed on drop.
pub(crate) struct Kill(pub(crate) Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the scenario: idle `run` for `idle_secs`, then `rate` jobs/s for `secs` seconds.
pub(crate) async fn measure(
    exe: &Path,
    scratch: &Scratch,
    sandbox_url: &str,
    idle_secs: u64,
    rate: u32,
    secs: u64,
) -> Result<OpenLoopFigures, BenchError> {
    let queue = scratch.queue(Checkpoints::Automatic).await?;
    let config_path = scratch.dir.join("worker.toml");
    std::fs::write(&config_path, worker_toml(scratch, sandbox_url))?;
    let run = Kill(
        Command::new(exe)
            .arg("--config")
            .arg(&config_path)
            .arg("run")
            .env("DINGTALK_APP_SECRET", DEFAULT_APP_SECRET)
            .env("APPROVAL_WORKER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = run.0.id();
    tokio::time::sleep(STARTUP).await;
    let idle_started = Instant::now();
    let idle_cpu = cpu_time(Some(pid));
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle_cpu = cpu_time(Some(pid)).saturating_sub(idle_cpu);
    let idle_elapsed = idle_started.elapsed();

    let busy_cpu = cpu_time(Some(pid));
    let database = match scratch.postgres_url() {
        Some(url) => url.into(),
        None => scratch.database().into_os_string(),
    };
    let mut producer = Kill(
        Command::new(exe)
            .args(["bench", "--produce"])
            .arg(database)
            .args(["--rate", &rate.to_string(), "--secs", &secs.to_string()])
            .arg("--payload-file")
            .arg(scratch.spool.join("receipt-0.pdf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let mut backlog = Vec::new();
    loop {
        backlog.push(queue.count_statuses(&["queued"]).await?);
        if producer.0.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(BACKLOG_SAMPLE).await;
    }
    let inserted = queue
        .count_statuses(&["queued", "running", "succeeded", "failed"])
        .await?;
    super::setup::wait_finished(&queue, inserted, BACKLOG_SAMPLE, DRAIN_TIMEOUT).await?;
    let busy_cpu = cpu_time(Some(pid)).saturating_sub(busy_cpu);
    drop(run);

    let pickups: Vec<f64> = queue
        .pickups()
        .await?
        .into_iter()
        .map(|(created, claimed)| (claimed - created) as f64)
        .collect();
    queue.close().await;
    Ok(OpenLoopFigures {
        idle_cpu_percent: idle_cpu.as_secs_f64() * 100.0 / idle_elapsed.as_secs_f64(),
        idle_secs: idle_elapsed.as_secs_f64(),
        rate,
        jobs: usize::try_from(inserted).unwrap_or(0),
        pickup_p50_ms: percentile(&pickups, 50.0),
        pickup_p99_ms: percentile(&pickups, 99.0),
        pickup_max_ms: percentile(&pickups, 100.0),
        backlog_mean: backlog.iter().sum::<i64>() as f64 / backlog.len().max(1) as f64,
        backlog_max: backlog.iter().copied().max().unwrap_or(0),
        cpu_us_per_job: busy_cpu.as_secs_f64() * 1e6 / inserted.max(1) as f64,
    })
}

/// A `worker.toml` for `run` on the scratch directory's database, against the sandbox.
pub(crate) fn worker_toml(scratch: &Scratch, sandbox_url: &str) -> String {
    let config = scratch.config(sandbox_url, RUN_CONCURRENCY);
    format!(
        "{}\n[dingtalk]\napp_key = {:?}\nagent_id = {}\napi_base = {:?}\n\
         oapi_base = {:?}\nrate_limit_per_sec = 0\n\n[upload]\nallowed_dirs = [{:?}]\n\n\
         [worker]\nconcurrency = {}\n",
        scratch.database_toml(),
        config.dingtalk.app_key,
        config.dingtalk.agent_id,
        sandbox_url,
        sandbox_url,
        scratch.spool.display().to_string(),
        RUN_CONCURRENCY,
    )
}

/// Another service inserting rows: into a SQLite file, or a PostgreSQL database.
enum Producer {
    Sqlite(PlainProducer),
    Postgres(PgProducer),
}

impl Producer {
    /// `database` is a SQLite file or a `postgres://` URL.
    async fn connect(database: &Path) -> Result<Producer, BenchError> {
        let url = database
            .to_str()
            .filter(|name| name.starts_with("postgres://") || name.starts_with("postgresql://"));
        Ok(match url {
            Some(url) => Producer::Postgres(PgProducer::connect(url).await?),
            None => Producer::Sqlite(PlainProducer::connect(database).await?),
        })
    }

    async fn insert(&mut self, payload: &str) -> Result<(), BenchError> {
        match self {
            Producer::Sqlite(producer) => Ok(producer.insert(payload).await?),
            Producer::Postgres(producer) => producer.insert(payload).await,
        }
    }
}

/// The producer child: inserts one row every `1/rate` s for `secs` s with plain SQL into
/// `database` (a SQLite file or a `postgres://` URL), keeping to the schedule (a late insert
/// does not delay the next ones).
pub(crate) async fn produce(
    database: &Path,
    rate: u32,
    secs: u64,
    attachment: &Path,
) -> Result<usize, BenchError> {
    let mut producer = Producer::connect(database).await?;
    let total = u64::from(rate) * secs;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = tokio::time::Instant::now();
    for index in 0..total {
        tokio::time::sleep_until(started + period * u32::try_from(index).unwrap_or(u32::MAX)).await;
        let name_index = usize::try_from(index).unwrap_or(usize::MAX);
        producer
            .insert(&super::setup::payload_for(attachment, name_index))
            .await?;
    }
    Ok(usize::try_from(total).unwrap_or(usize::MAX))
}
