//! Prometheus metrics of one pool: counters and histograms the runners update as they go, and
//! gauges read from the database and the DingTalk client at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::dingtalk::{CallCount, StreamState};
use crate::queue::Depth;

/// Every metric name starts with this.
const METRICS_PREFIX: &str = "approval_worker";
/// Step duration buckets: 10 ms doubling to ~5.5 min, which covers a token fetch and a
/// 500 MiB upload alike.
const STEP_BUCKET_START_SECS: f64 = 0.01;
const STEP_BUCKET_FACTOR: f64 = 2.0;
const STEP_BUCKET_COUNT: u16 = 16;

type Labels = Vec<(&'static str, String)>;

/// The pool's live metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    step_seconds: Family<Labels, Histogram>,
    retries: Family<Labels, Counter>,
    upload_bytes: Counter,
    decisions: Family<Labels, Counter>,
    decision_seconds: Histogram,
    finished: Family<Labels, Counter>,
    /// Steps finished (either way), so a drain can tell it is making progress.
    steps: AtomicU64,
}

/// What a scrape reads at that moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Jobs per status, all queues.
    pub(crate) by_status: Vec<(String, i64)>,
    /// The served queue's depth.
    pub(crate) depth: Depth,
    /// Now (unix ms), for ages.
    pub(crate) now_ms: i64,
    /// Jobs this process runs right now.
    pub(crate) in_flight: usize,
    pub(crate) concurrency: u32,
    /// DingTalk calls of this process, per endpoint and result.
    pub(crate) calls: Vec<CallCount>,
    /// Counted calls of this app this month (all processes, flushed or not).
    pub(crate) month_calls: u64,
    /// The configured monthly budget.
    pub(crate) budget: Option<u64>,
    /// Seconds since the claim loop last completed a database round trip.
    pub(crate) claim_loop_idle_secs: Option<f64>,
    /// The DingTalk Stream client's state, when it runs.
    pub(crate) stream: Option<StreamState>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics, registered under [`METRICS_PREFIX`].
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix(METRICS_PREFIX);
        let step_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(
                STEP_BUCKET_START_SECS,
                STEP_BUCKET_FACTOR,
                STEP_BUCKET_COUNT,
            ))
        });
        registry.register_with_unit(
            "step_duration",
            "How long each step took, by step and outcome (ok or error)",
            Unit::Seconds,
            step_seconds.clone(),
        );
        let retries = Family::<Labels, Counter>::default();
        registry.register(
            "retries",
            "Attempts that failed and were scheduled to run again, by failed step",
            retries.clone(),
        );
        let upload_bytes = Counter::default();
        registry.register_with_unit(
            "upload",
            "Attachment bytes sent to OSS, counted as they are sent (failed uploads included)",
            Unit::Bytes,
            upload_bytes.clone(),
        );
        let decisions = Family::<Labels, Counter>::default();
        registry.register(
            "decisions",
            "Approval decisions learned, by outcome (agree, refuse, terminated, deleted, unknown)",
            decisions.clone(),
        );
        // A minute doubling to about 200 days.
        let decision_seconds = Histogram::new(exponential_buckets(60.0, 2.0, 19));
        registry.register_with_unit(
            "time_to_decision",
            "From the instance's creation to its decision",
            Unit::Seconds,
            decision_seconds.clone(),
        );
        let finished = Family::<Labels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Jobs this process finished, by status (succeeded, failed, cancelled): failure-rate \
             alerts that survive prune",
            finished.clone(),
        );
        registry.register(
            "build",
            "The running build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_owned())]),
        );
        // Each status from the start, so a rate over the first failure is not a gap.
        for status in ["succeeded", "failed", "cancelled"] {
            let _ = finished.get_or_create(&vec![("status", status.to_owned())]);
        }
        Metrics {
            registry,
            step_seconds,
            finished,
            retries,
            upload_bytes,
            decisions,
            decision_seconds,
            steps: AtomicU64::new(0),
        }
    }

    /// Records one finished step: its duration.
    pub(crate) fn step(&self, name: &str, ok: bool, duration_ms: i64) {
        let outcome = if ok { "ok" } else { "error" };
        self.step_seconds
            .get_or_create(&vec![
                ("step", name.to_string()),
                ("outcome", outcome.into()),
            ])
            .observe(duration_ms.max(0) as f64 / 1000.0);
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `bytes` more sent to OSS.
    pub(crate) fn uploaded(&self, bytes: u64) {
        if bytes > 0 {
            self.upload_bytes.inc_by(bytes);
        }
    }

    /// Records an attempt that failed at `step` and waits for a retry.
    pub(crate) fn retry(&self, step: &str) {
        self.retries
            .get_or_create(&vec![("step", step.to_string())])
            .inc();
    }

    /// Counts a job this process finished with `status`.
    pub(crate) fn finished(&self, status: &str) {
        self.finished
            .get_or_create(&vec![("status", status.to_owned())])
            .inc();
    }

    /// Records a decision learned now (`now_ms`) for an instance created at `submitted_at`
    /// and decided at `decided_at` (when DingTalk said).
    pub(crate) fn decided(
        &self,
        outcome: &str,
        submitted_at: i64,
        decided_at: Option<i64>,
        now_ms: i64,
    ) {
        self.decisions
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
        if outcome != "unknown" {
            let seconds = (decided_at.unwrap_or(now_ms) - submitted_at).max(0) as f64 / 1000.0;
            self.decision_seconds.observe(seconds);
        }
    }

    /// The OpenMetrics text exposition of everything, with `snapshot` as the gauges.
    pub(crate) fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::new();
        let scraped = scrape_registry(snapshot);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &scraped);
        let _ = encode_eof(&mut out);
        out
    }
}

/// Gauges and the DingTalk call counters, built fresh for one scrape.
fn scrape_registry(snapshot: &Snapshot) -> Registry {
    let mut registry = Registry::with_prefix(METRICS_PREFIX);
    let jobs = Family::<Labels, Gauge>::default();
    for (status, count) in &snapshot.by_status {
        jobs.get_or_create(&vec![("status", status.clone())])
            .set(*count);
    }
    registry.register("jobs", "Jobs in the database by status", jobs);
    let gauge = |value: i64| {
        let gauge = Gauge::<i64>::default();
        gauge.set(value);
        gauge
    };
    registry.register(
        "queue_depth",
        "Queued jobs of the served queue that are due and wait for a worker",
        gauge(snapshot.depth.due),
    );
    let oldest_secs = snapshot
        .depth
        .oldest_due_at
        .map_or(0.0, |at| (snapshot.now_ms - at).max(0) as f64 / 1000.0);
    let oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    oldest.set(oldest_secs);
    registry.register_with_unit(
        "oldest_waiting_job_age",
        "How long the oldest due job of the served queue has waited for a worker",
        Unit::Seconds,
        oldest,
    );
    registry.register(
        "running_jobs",
        "Jobs this process holds a claim on, including those claimed ahead that wait for a slot",
        gauge(i64::try_from(snapshot.in_flight).unwrap_or(i64::MAX)),
    );
    registry.register(
        "concurrency",
        "Jobs this process may run at once",
        gauge(i64::from(snapshot.concurrency)),
    );
    if let Some(stream) = &snapshot.stream {
        registry.register(
            "stream_connected",
            "1 while the DingTalk Stream socket is open",
            gauge(i64::from(stream.connected)),
        );
        let counter = |value: u64| {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            counter
        };
        registry.register(
            "stream_reconnects",
            "DingTalk Stream sockets opened after the first",
            counter(stream.reconnects()),
        );
        registry.register(
            "stream_events",
            "Approval instance events received from the DingTalk Stream, redeliveries included",
            counter(stream.events),
        );
    }
    let calls = Family::<Labels, Counter>::default();
    let throttles = Family::<Labels, Counter>::default();
    for count in &snapshot.calls {
        let endpoint = ("endpoint", count.endpoint.to_string());
        calls
            .get_or_create(&vec![endpoint.clone(), ("result", count.result.clone())])
            .inc_by(count.calls);
        if count.throttled {
            throttles.get_or_create(&vec![endpoint]).inc_by(count.calls);
        }
    }
    registry.register(
        "dingtalk_calls",
        "DingTalk calls by endpoint and result (ok, DingTalk's error code, transport or decode)",
        calls,
    );
    registry.register(
        "dingtalk_throttles",
        "DingTalk answers asking this app to slow down, by endpoint",
        throttles,
    );
    registry.register(
        "dingtalk_month_calls",
        "Calls counted against DingTalk's monthly quota this month (China Standard Time), all processes",
        gauge(i64::try_from(snapshot.month_calls).unwrap_or(i64::MAX)),
    );
    if let Some(budget) = snapshot.budget {
        registry.register(
            "dingtalk_month_call_budget",
            "The configured monthly_call_budget",
            gauge(i64::try_from(budget).unwrap_or(i64::MAX)),
        );
    }
    if let Some(idle) = snapshot.claim_loop_idle_secs {
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        gauge.set(idle);
        registry.register_with_unit(
            "claim_loop_idle",
            "Time since the claim loop last completed a database round trip",
            Unit::Seconds,
            gauge,
        );
    }
    registry
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_lists_gauges_counters_and_histograms_once_each() {
        let metrics = Metrics::new();
        metrics.step("space", true, 120);
        metrics.retry("put");
        metrics.uploaded(1_500);
        metrics.uploaded(500);
        let text = metrics.render(&Snapshot {
            by_status: vec![("queued".into(), 3), ("succeeded".into(), 7)],
            depth: Depth {
                queued: 3,
                due: 2,
                oldest_due_at: Some(1_000),
                running: 1,
            },
            now_ms: 61_000,
            calls: vec![CallCount {
                endpoint: "storage/files/commit",
                result: "ok".into(),
                throttled: false,
                sent: true,
                calls: 4,
            }],
            ..Snapshot::default()
        });
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        for line in [
            "approval_worker_jobs{status=\"succeeded\"} 7",
            "approval_worker_queue_depth 2",
            "approval_worker_oldest_waiting_job_age_seconds 60.0",
            "approval_worker_dingtalk_calls_total{endpoint=\"storage/files/commit\",result=\"ok\"} 4",
            "approval_worker_retries_total{step=\"put\"} 1",
            "approval_worker_upload_bytes_total 2000",
            "approval_worker_step_duration_seconds_count{step=\"space\",outcome=\"ok\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
