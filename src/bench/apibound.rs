//! API-bound drain: a backlog of jobs with 1 to 3 attachments against a sandbox that limits
//! each DingTalk API to 20 calls/s and answers every DingTalk call after a fixed latency (as
//! the real DingTalk does), drained by the worker with its default settings (its client at
//! the same 20 calls/s). What it reports, per latency: jobs drained per second against the
//! rate the binding API allows, DingTalk calls per job by API, and the throttle answers.
//!
//! The binding API is the one a job calls most: `uploadInfos` and `commit` once per file,
//! so with 2 files per job on average the backlog cannot drain faster than 20 / 2 = 10 jobs/s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::BenchError;
use super::setup::{self, Checkpoints::Automatic, Running, Scratch};
use super::stats::rate;
use crate::config::Config;
use crate::queue::{JobFilter, JobStatus, NewJob};
use crate::sandbox::{Endpoint, Latency, Sandbox, SandboxOptions};
use crate::worker::WorkerSettings;

/// The sandbox's limit per API, and the worker client's (the product's default).
pub(crate) const API_RATE: u32 = 20;
/// Most attachments a job has; job `i` has `i % MAX_FILES + 1`.
const MAX_FILES: usize = 3;
/// How often the driver looks whether the backlog is drained.
const FINISH_POLL: Duration = Duration::from_millis(100);
/// Longest a drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1_800);

/// One drain at one latency.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiBoundFigures {
    /// Added to every DingTalk call, ms.
    pub(crate) latency_ms: u64,
    /// `[worker] concurrency`, or `None` for the default settings.
    pub(crate) concurrency: Option<u32>,
    pub(crate) jobs: usize,
    pub(crate) files: usize,
    /// Jobs that did not succeed.
    pub(crate) failed: usize,
    pub(crate) secs: f64,
    /// Over the whole drain, from the first claim to the last job's end.
    pub(crate) jobs_per_sec: f64,
    /// Between the 10th and the 90th percentile of the jobs' ends: the drain once the pool
    /// has filled and before the last jobs' calls, which a longer backlog spreads thinner.
    pub(crate) steady_jobs_per_sec: f64,
    /// What the binding API allows: `API_RATE` / its calls per job at the minimum.
    pub(crate) theoretical_jobs_per_sec: f64,
    /// DingTalk calls received per job, by API.
    pub(crate) calls_per_job: BTreeMap<String, f64>,
    /// Throttle answers the sandbox gave.
    pub(crate) throttled: usize,
}

impl ApiBoundFigures {
    /// Steady drain rate over the theoretical rate: the target is at least 0.95.
    pub(crate) fn ratio(&self) -> f64 {
        self.of_theoretical(self.steady_jobs_per_sec)
    }

    /// The whole drain's rate over the theoretical rate.
    pub(crate) fn overall_ratio(&self) -> f64 {
        self.of_theoretical(self.jobs_per_sec)
    }

    fn of_theoretical(&self, rate: f64) -> f64 {
        if self.theoretical_jobs_per_sec > 0.0 {
            rate / self.theoretical_jobs_per_sec
        } else {
            0.0
        }
    }
}

/// Drains `jobs` jobs once per latency in `latencies_ms`, with the default worker settings,
/// and again with each fixed concurrency of `concurrencies`; each drain in a fresh scratch
/// directory from `scratch` and a fresh sandbox.
pub(crate) async fn measure(
    jobs: usize,
    latencies_ms: &[u64],
    concurrencies: &[u32],
    scratch: impl AsyncFn(&str) -> Result<Scratch, BenchError>,
) -> Result<Vec<ApiBoundFigures>, BenchError> {
    let mut figures = Vec::new();
    for &latency_ms in latencies_ms {
        let settings = std::iter::once(None).chain(concurrencies.iter().copied().map(Some));
        for concurrency in settings {
            let label = format!(
                "api-bound-{latency_ms}ms-{}",
                concurrency.map_or("default".to_owned(), |c| c.to_string())
            );
            let dir = scratch(&label).await?;
            figures.push(drain(&dir, jobs, latency_ms, concurrency).await?);
        }
    }
    Ok(figures)
}

async fn drain(
    scratch: &Scratch,
    jobs: usize,
    latency_ms: u64,
    concurrency: Option<u32>,
) -> Result<ApiBoundFigures, BenchError> {
    let latency = Duration::from_millis(latency_ms);
    let sandbox = Sandbox::start(SandboxOptions {
        qps_limit: Some(API_RATE),
        latency: (!latency.is_zero()).then(|| Latency::fixed(latency)),
        ..SandboxOptions::default()
    })
    .await?;
    let queue = scratch.queue(Automatic).await?;
    let mut files = 0;
    let batch: Vec<NewJob> = (0..jobs)
        .map(|index| {
            let count = index % MAX_FILES + 1;
            files += count;
            NewJob {
                payload: payload(scratch, index, count),
                ..NewJob::default()
            }
        })
        .collect();
    queue.enqueue_many(&batch, crate::queue::now_ms()).await?;

    let mut config: Config = scratch.config(&sandbox.base_url(), 1);
    let defaults = Config::default();
    config.dingtalk.rate_limit_per_sec = defaults.dingtalk.rate_limit_per_sec;
    config.worker.concurrency = concurrency.or(defaults.worker.concurrency);
    let client = setup::dingtalk(&sandbox.base_url(), config.dingtalk.rate_limit_per_sec)?;
    let worker =
        setup::worker_with_client(queue.clone(), client, WorkerSettings::from_config(&config))?;
    let started = Instant::now();
    let running = Running::start(&worker);
    let total = i64::try_from(jobs).unwrap_or(i64::MAX);
    let finished = setup::wait_finished(&queue, total, FINISH_POLL, DRAIN_TIMEOUT).await;
    let elapsed = started.elapsed();
    running.stop().await;
    finished?;
    let failed = usize::try_from(queue.count_statuses(&["failed"]).await?).unwrap_or(0);
    let ends = queue
        .list(&JobFilter {
            status: Some(JobStatus::Succeeded),
            limit: total,
            ..JobFilter::default()
        })
        .await?;
    queue.close().await;
    let mut ends: Vec<i64> = ends.iter().filter_map(|job| job.finished_at).collect();
    ends.sort_unstable();
    let steady_jobs_per_sec = steady_rate(&ends);

    let requests = sandbox.requests();
    let mut calls: BTreeMap<String, f64> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.endpoint != Endpoint::OssPut) {
        *calls.entry(request.endpoint.to_string()).or_default() += 1.0;
    }
    for count in calls.values_mut() {
        *count /= jobs.max(1) as f64;
    }
    // The sandbox's throttle answer is DingTalk's: 403 `QpsLimitForAppkeyAndApi`.
    let throttled = requests
        .iter()
        .filter(|r| r.status == 403 && r.endpoint != Endpoint::OssPut)
        .count();
    let binding_calls_per_job = files as f64 / jobs.max(1) as f64;
    Ok(ApiBoundFigures {
        latency_ms,
        concurrency,
        jobs,
        files,
        failed,
        secs: elapsed.as_secs_f64(),
        jobs_per_sec: rate(jobs as f64, elapsed),
        steady_jobs_per_sec,
        theoretical_jobs_per_sec: f64::from(API_RATE) / binding_calls_per_job,
        calls_per_job: calls,
        throttled,
    })
}

/// Jobs per second between the 10th and 90th percentile of `ends` (sorted, unix ms).
fn steady_rate(ends: &[i64]) -> f64 {
    let (first, last) = (ends.len() / 10, ends.len() * 9 / 10);
    match (ends.get(first), ends.get(last)) {
        (Some(from), Some(to)) if to > from => (last - first) as f64 * 1000.0 / (to - from) as f64,
        _ => 0.0,
    }
}

/// A job attaching `count` of the scratch directory's small files.
fn payload(scratch: &Scratch, index: usize, count: usize) -> String {
    let attachments: Vec<_> = (0..count)
        .map(|k| {
            json!({
                "path": scratch.small_file(index + k),
                "name": format!("receipt-{index}-{k}.pdf"),
            })
        })
        .collect();
    json!({
        "process_code": "PROC-BENCH",
        "originator_user_id": "manager4220",
        "dept_id": -1,
        "form": [{"name": "报销事由", "value": "bench"}],
        "attachments": attachments,
    })
    .to_string()
}

/// Prints the figures and the target.
pub(crate) fn print(figures: &[ApiBoundFigures]) {
    println!(
        "== api-bound: {} calls/s per API at the sandbox and the client; jobs with 1-{MAX_FILES} files",
        API_RATE
    );
    for f in figures {
        let setting = f.concurrency.map_or("default settings".to_owned(), |c| {
            format!("concurrency {c}")
        });
        println!(
            "  {:>3} ms per call, {setting}: {} jobs ({} files) in {:.1} s; steady {:.2} jobs/s \
             of {:.2} the binding API allows ({:.3}), {:.2} over the whole drain ({:.3}); {} \
             throttled, {} failed",
            f.latency_ms,
            f.jobs,
            f.files,
            f.secs,
            f.steady_jobs_per_sec,
            f.theoretical_jobs_per_sec,
            f.ratio(),
            f.jobs_per_sec,
            f.overall_ratio(),
            f.throttled,
            f.failed
        );
        let calls: Vec<String> = f
            .calls_per_job
            .iter()
            .map(|(api, n)| format!("{api} {n:.2}"))
            .collect();
        println!("      calls per job: {}", calls.join(", "));
    }
    println!();
}

/// The target lines for the summary: default settings only.
pub(crate) fn targets(figures: &[ApiBoundFigures]) -> Vec<(bool, String)> {
    figures
        .iter()
        .filter(|f| f.concurrency.is_none())
        .map(|f| {
            (
                f.ratio() >= 0.95 && f.throttled == 0 && f.failed == 0,
                format!(
                    "api-bound steady drain ≥ 0.95 × the binding API's rate, none throttled, at \
                     {} ms per call: {:.2} of {:.2} jobs/s = {:.3} ({:.3} over the whole drain), \
                     {} throttled",
                    f.latency_ms,
                    f.steady_jobs_per_sec,
                    f.theoretical_jobs_per_sec,
                    f.ratio(),
                    f.overall_ratio(),
                    f.throttled
                ),
            )
        })
        .collect()
}
