//! The worker pool: claims due jobs under a lease, runs each through the approval steps
//! with a checkpoint after every step, keeps leases alive, rescues expired ones, and drains
//! gracefully on shutdown. The only module that uses both the queue and the approval steps.
//! It also reports on itself: sd_notify, metrics, `/healthz`, and the monthly call quota.

mod http;
mod maintain;
mod metrics;
mod notify;
pub(crate) mod outcome;
mod pace;
mod policy;
mod pool;
mod quota;
mod runner;
mod sizing;
mod uploads;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::approval::{Approval, UploadLimits};
use crate::config::Config;
use crate::dingtalk::{DingTalk, StreamStatus};
use crate::queue::{Fence, JobId, Queue, QueueError, now_ms};

pub(crate) use http::serve;
use metrics::{Metrics, Snapshot};
use notify::Notifier;
use quota::{CallQuota, FLUSH_INTERVAL};

/// The claim loop counts as stalled after this many status intervals without a database
/// round trip.
const STALLED_AFTER_INTERVALS: u32 = 3;

/// How long `/healthz` waits for the database: a probe must get an answer, and a database
/// that takes longer is reported unhealthy.
const HEALTH_DB_TIMEOUT: Duration = Duration::from_millis(800);

/// What the pool needs from the configuration.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The queue served.
    queue: String,
    /// Jobs run at once; `None`: sized by the rate limit (see `sizing`).
    concurrency: Option<u32>,
    /// Most jobs run at once when sized by the rate limit.
    max_concurrency: u32,
    /// Idle polling period.
    poll_interval: Duration,
    /// Lease length.
    pub lease: Duration,
    /// Attempts before a job fails, unless the job sets its own.
    max_attempts: u32,
    /// Backoff ceiling of the first retry.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// How long a drain may take.
    shutdown_grace: Duration,
    /// Default DDAttachment label.
    pub(crate) attachment_field: String,
    /// Attachment confinement and size limit.
    pub(crate) upload: UploadLimits,
    /// When an attachment goes in resumable parts, and their size.
    pub parts: crate::approval::PartPlan,
    /// The DingTalk app, whose calls count against the monthly quota.
    app_key: String,
    /// Counted DingTalk calls per month after which the pool stops claiming.
    monthly_call_budget: Option<u64>,
    /// Following created instances to their decision.
    pub(crate) outcome: outcome::OutcomeSettings,
}

impl WorkerSettings {
    /// Settings from a validated config. Allowed directories that do not exist are dropped
    /// with a warning (nothing inside them can be attached anyway).
    pub fn from_config(config: &Config) -> WorkerSettings {
        let allowed_dirs = config
            .upload
            .allowed_dirs
            .iter()
            .filter_map(|dir| match std::fs::canonicalize(dir) {
                Ok(dir) => Some(dir),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "[upload] allowed_dirs entry not usable");
                    None
                }
            })
            .collect::<Vec<PathBuf>>();
        let w = &config.worker;
        WorkerSettings {
            queue: w.queue.clone(),
            concurrency: w.concurrency,
            max_concurrency: w.max_concurrency,
            poll_interval: Duration::from_millis(w.poll_interval_ms),
            lease: Duration::from_secs(w.lease_secs),
            max_attempts: w.max_attempts,
            backoff_base: Duration::from_secs(w.backoff_base_secs),
            backoff_max: Duration::from_secs(w.backoff_max_secs),
            shutdown_grace: Duration::from_secs(w.shutdown_grace_secs),
            attachment_field: config.dingtalk.attachment_field.clone(),
            upload: UploadLimits {
                allowed_dirs,
                max_file_bytes: config.upload.max_file_bytes,
            },
            parts: config.upload.part_plan(),
            app_key: config.dingtalk.app_key.clone(),
            monthly_call_budget: config.dingtalk.monthly_call_budget,
            outcome: outcome::OutcomeSettings::from_config(&config.outcome),
        }
    }

    /// Signs outcome notifications with `secret` (`run` reads it from `[outcome]`).
    pub fn with_webhook_secret(mut self, secret: crate::secret::Secret) -> WorkerSettings {
        self.outcome.webhook_secret = Some(secret);
        self
    }

    /// The pool's size at start: the fixed concurrency, or a start until runs are measured.
    fn initial_slots(&self) -> u32 {
        self.concurrency
            .unwrap_or_else(|| sizing::START_SLOTS.min(self.max_concurrency))
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The pool. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    approval: Approval,
    /// The DingTalk client the approval steps call through: its call tallies feed the
    /// monthly quota, and `run` checks the credentials with it.
    dingtalk: DingTalk,
    settings: WorkerSettings,
    /// Identifies this process's leases (heartbeats extend them all at once).
    owner: String,
    /// Wakes the claim loop when a runner finishes or work is added in-process.
    wake: Notify,
    /// Claims in flight, so a forced stop can release them.
    running: Mutex<HashMap<JobId, Fence>>,
    /// Runners in their last step (the create) that still hold their slot: each lets the
    /// claim loop claim one successor ahead of time.
    finishing: AtomicUsize,
    /// Claimed jobs waiting for a slot.
    parked: AtomicUsize,
    /// Step durations, retries, upload bytes.
    metrics: Metrics,
    /// The uploads running now, for the metric and progress reports.
    uploads: uploads::Uploads,
    /// What finished runs of jobs took, for the pool's size.
    sizing: Mutex<sizing::Sizing>,
    /// The pool's size now.
    slots: AtomicU32,
    /// DingTalk calls per second per API the client keeps to (0: unlimited).
    rate_per_api: u32,
    /// DingTalk calls per month, and the budget.
    quota: CallQuota,
    /// sd_notify, once `run` asks for it.
    notifier: OnceLock<Notifier>,
    /// When the claim loop last completed a database round trip; `None` until ready.
    alive_at: Mutex<Option<Instant>>,
    /// The DingTalk Stream client's state, once it runs.
    stream: OnceLock<Arc<StreamStatus>>,
}

/// What `/healthz` reports.
#[derive(Debug, Clone)]
struct Health {
    /// Startup (migrations, lease recovery) is done.
    ready: bool,
    /// A round trip to the database just now.
    database: Result<(), String>,
    /// The claim loop completed a database round trip recently.
    claim_loop_alive: bool,
    /// Seconds since it last did.
    claim_loop_idle_secs: Option<f64>,
}

impl Health {
    /// Healthy: ready, database reachable, claim loop alive.
    fn healthy(&self) -> bool {
        self.ready && self.database.is_ok() && self.claim_loop_alive
    }
}

/// Why `run` stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The database failed in the claim loop.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The database file or its WAL was deleted or replaced while the worker had it open:
    /// its progress from then on reached no one, so it stopped.
    #[error("the database was deleted or replaced under the running worker: {0}")]
    DatabaseReplaced(String),
}

impl Worker {
    /// A pool over `queue` using `approval`, whose steps call DingTalk through `dingtalk`
    /// (a clone of the same client).
    pub fn new(
        queue: Queue,
        approval: Approval,
        dingtalk: DingTalk,
        settings: WorkerSettings,
    ) -> Worker {
        let owner = format!(
            "{}:{}:{:08x}",
            hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        let quota = CallQuota::new(settings.app_key.clone(), settings.monthly_call_budget);
        // On PostgreSQL the processes sharing the queue may be on several hosts, all calling
        // as one app: DingTalk's limit is paced through the database instead of per process.
        let per_sec = dingtalk.rate_limit_per_sec();
        if queue.shares_call_slots() && per_sec > 0 {
            let pace = pace::DbPace::new(queue.clone(), settings.app_key.clone(), per_sec);
            dingtalk.share_pace(Arc::new(pace));
        }
        let slots = settings.initial_slots();
        Worker {
            inner: Arc::new(Inner {
                queue,
                approval: approval.with_parts(settings.parts),
                dingtalk,
                settings,
                owner,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                finishing: AtomicUsize::new(0),
                parked: AtomicUsize::new(0),
                metrics: Metrics::new(),
                uploads: uploads::Uploads::default(),
                sizing: Mutex::new(sizing::Sizing::default()),
                slots: AtomicU32::new(slots),
                rate_per_api: per_sec,
                quota,
                notifier: OnceLock::new(),
                alive_at: Mutex::new(None),
                stream: OnceLock::new(),
            }),
        }
    }

    /// Reports the Stream client's state in the metrics from now on.
    pub(crate) fn watch_stream(&self, status: Arc<StreamStatus>) {
        let _ = self.inner.stream.set(status);
    }

    /// The Stream client's state now, once the outcome tasks started it (the benchmark checks
    /// the socket was open while it measured).
    pub(crate) fn stream_state(&self) -> Option<crate::dingtalk::StreamState> {
        self.inner.stream.get().map(|status| status.now())
    }

    /// Speaks sd_notify from now on if systemd started the process (`NOTIFY_SOCKET`).
    pub(crate) fn speak_sd_notify(&self) {
        let _ = self.inner.notifier.set(Notifier::from_env());
    }

    fn notifier(&self) -> &Notifier {
        static DISABLED: OnceLock<Notifier> = OnceLock::new();
        self.inner
            .notifier
            .get()
            .unwrap_or_else(|| DISABLED.get_or_init(Notifier::disabled))
    }

    /// The OpenMetrics text of the pool, with gauges read from the database now.
    async fn render_metrics(&self) -> Result<String, QueueError> {
        let inner = &self.inner;
        let now = now_ms();
        let by_status = inner.queue.status_counts().await?;
        let depth = inner.queue.depth(&inner.settings.queue, now).await?;
        let dingtalk = &inner.dingtalk;
        let snapshot = Snapshot {
            by_status,
            depth,
            now_ms: now,
            in_flight: self.running().len(),
            concurrency: inner.slots.load(Ordering::Acquire),
            calls: dingtalk.call_counts(),
            month_calls: inner.quota.used(dingtalk),
            budget: inner.quota.budget(),
            claim_loop_idle_secs: self.idle().map(|idle| idle.as_secs_f64()),
            stream: inner.stream.get().map(|status| status.now()),
        };
        Ok(inner.metrics.render(&snapshot))
    }

    /// Database reachable, claim loop alive.
    async fn health(&self) -> Health {
        let idle = self.idle();
        let stalled_after = self.notifier().status_interval() * STALLED_AFTER_INTERVALS;
        Health {
            ready: idle.is_some(),
            database: match tokio::time::timeout(HEALTH_DB_TIMEOUT, self.inner.queue.ping()).await {
                Ok(answer) => answer.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} ms (another process may hold the database's write lock)",
                    HEALTH_DB_TIMEOUT.as_millis()
                )),
            },
            claim_loop_alive: idle.is_some_and(|idle| idle <= stalled_after),
            claim_loop_idle_secs: idle.map(|idle| idle.as_secs_f64()),
        }
    }

    fn idle(&self) -> Option<Duration> {
        self.alive_at().map(|at| at.elapsed())
    }

    fn alive_at(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A plain timestamp: a panic elsewhere cannot leave it half-written.
        self.inner
            .alive_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn mark_alive(&self) {
        *self.alive_at() = Some(Instant::now());
    }

    /// The DingTalk client the pool uses (shared token cache and rate limiter).
    pub(crate) fn dingtalk(&self) -> &crate::dingtalk::DingTalk {
        &self.inner.dingtalk
    }

    /// Asks the claim loop to look for work now (e.g. after an in-process enqueue).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Counts `fence` as driven by a runner of this process until the guard is dropped:
    /// when the runner ends in any way, a panic included. Only these leases are renewed.
    fn track(&self, fence: Fence) -> Tracked {
        self.running().insert(fence.id, fence);
        Tracked {
            worker: self.clone(),
            fence,
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Fence>> {
        // A panic while holding this lock leaves the map usable; keep going.
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A claim a runner of this process is driving; see [`Worker::track`].
struct Tracked {
    worker: Worker,
    fence: Fence,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut running = self.worker.running();
        if running.get(&self.fence.id) == Some(&self.fence) {
            running.remove(&self.fence.id);
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "host".to_string())
}
