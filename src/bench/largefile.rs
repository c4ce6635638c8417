//! One large attachment (a sparse file) through the real upload path: the worker streams it
//! to the sandbox's OSS endpoint, whole or in parts as `[upload]` decides for its size, and
//! commits it. Reports MB/s, the loopback PUT ceiling of the same size to the same sandbox
//! just before, and how far this process's peak RSS rose above the idle worker's.

use std::time::{Duration, Instant};

use super::BenchError;
use super::setup::{self, Checkpoints, Running, Scratch};
use super::stats::{rate, reset_peak_rss, rss_kib};
use crate::approval::PartPlan;
use crate::queue::{NewJob, now_ms};
use crate::worker::WorkerSettings;

/// How long the idle worker settles before its RSS is taken as the baseline.
const SETTLE: Duration = Duration::from_millis(500);
/// How often the driver looks whether the job finished.
const FINISH_POLL: Duration = Duration::from_millis(100);
/// Longest the upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What the large-file run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct LargeFileFigures {
    /// File size.
    pub(crate) bytes: u64,
    /// Parts it went in (0: one PUT).
    pub(crate) parts: u64,
    /// The job from claim to succeeded.
    pub(crate) job_secs: f64,
    /// The `put` step alone, or its parts' `put_part` steps together, from their events.
    pub(crate) put_secs: f64,
    /// `bytes` over the whole job (hash, PUT, commit, submit), MB/s.
    pub(crate) job_mb_per_sec: f64,
    /// `bytes` over the PUT step, MB/s.
    pub(crate) put_mb_per_sec: f64,
    /// The loopback PUT ceiling for `bytes` to the same sandbox, measured just before, MB/s.
    pub(crate) ceiling_mb_per_sec: f64,
    /// Reading the new sparse file once before the job, s: the kernel filling its holes into
    /// the page cache, which is the disk's share, not the worker's.
    pub(crate) first_read_secs: f64,
    /// Peak RSS minus the idle worker's RSS, KiB.
    pub(crate) rss_growth_kib: u64,
    /// Whether the peak could be reset (else the growth is an upper bound from process start).
    pub(crate) peak_reset: bool,
}

/// Uploads one sparse file of `bytes`, in parts when `plan` says so for its size.
pub(crate) async fn measure(
    scratch: &Scratch,
    sandbox_url: &str,
    bytes: u64,
    plan: PartPlan,
) -> Result<LargeFileFigures, BenchError> {
    let ceiling_mb_per_sec = super::ceilings::loopback_put_mb_per_sec(sandbox_url, bytes).await?;
    let path = scratch.spool.join("large.bin");
    std::fs::File::create(&path)?.set_len(bytes)?;
    // The job then reads the file from the page cache, as the ceiling's PUT reads memory and
    // as a worker reads a file its producer just wrote.
    let first_read_secs = read_once(&path).await?.as_secs_f64();
    let queue = scratch.queue(Checkpoints::Automatic).await?;
    let mut config = scratch.config(sandbox_url, 1);
    config.upload.max_file_bytes = bytes.max(config.upload.max_file_bytes);
    config.upload.multipart_threshold_bytes = plan.threshold_bytes;
    config.upload.part_bytes = plan.part_bytes;
    let worker = setup::worker(
        queue.clone(),
        sandbox_url,
        WorkerSettings::from_config(&config),
    )?;
    let running = Running::start(&worker);
    tokio::time::sleep(SETTLE).await;
    let peak_reset = reset_peak_rss();
    let (idle_rss, _) = rss_kib();

    let started = Instant::now();
    let job = NewJob {
        payload: setup::payload_for(&path, 0),
        ..NewJob::default()
    };
    queue.enqueue(&job, now_ms()).await?;
    worker.wake();
    setup::wait_finished(&queue, 1, FINISH_POLL, UPLOAD_TIMEOUT).await?;
    let wall = started.elapsed();
    let (_, peak) = rss_kib();
    running.stop().await;

    let events = queue.event_log().await?;
    if events.iter().any(|e| e.kind == "failed") {
        return Err(BenchError::Setup("the large-file job failed".into()));
    }
    let ms = |kind: &str, step: Option<&str>| {
        events
            .iter()
            .find(|e| e.kind == kind && (step.is_none() || e.step.as_deref() == step))
            .map(|e| (e.at, e.duration_ms.unwrap_or(0)))
    };
    let part_events: Vec<i64> = events
        .iter()
        .filter(|e| e.kind == "step_done" && e.step.as_deref() == Some("put_part"))
        .map(|e| e.duration_ms.unwrap_or(0))
        .collect();
    let put_ms = match ms("step_done", Some("put")) {
        Some((_, whole)) => whole,
        None => part_events.iter().sum(),
    };
    let job_ms = match (ms("claimed", None), ms("succeeded", None)) {
        (Some((claimed, _)), Some((succeeded, _))) => succeeded - claimed,
        _ => i64::try_from(wall.as_millis()).unwrap_or(i64::MAX),
    };
    queue.close().await;
    let _ = std::fs::remove_file(&path);
    let secs = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    Ok(LargeFileFigures {
        bytes,
        parts: part_events.len() as u64,
        job_secs: secs(job_ms).as_secs_f64(),
        put_secs: secs(put_ms).as_secs_f64(),
        job_mb_per_sec: rate(bytes as f64 / 1e6, secs(job_ms)),
        put_mb_per_sec: rate(bytes as f64 / 1e6, secs(put_ms)),
        ceiling_mb_per_sec,
        first_read_secs,
        rss_growth_kib: peak.saturating_sub(idle_rss),
        peak_reset,
    })
}

/// Reads `path` to the end once, on a blocking thread; how long it took.
async fn read_once(path: &std::path::Path) -> Result<Duration, BenchError> {
    let path = path.to_owned();
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        std::io::copy(&mut std::fs::File::open(path)?, &mut std::io::sink())
    })
    .await
    .map_err(|e| BenchError::Setup(format!("reading the large file: {e}")))??;
    Ok(started.elapsed())
}
