//! The worker pool: claims due jobs under a lease, runs each through the approval steps
//! with a checkpoint after every step, keeps leases alive, rescues expired ones, and drains
//! gracefully on shutdown. The only module that uses both the queue and the approval steps.

mod runner;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::approval::{Approval, UploadLimits};
use crate::config::Config;
use crate::queue::{Fence, JobId, Queue, QueueError, now_ms};

/// What the pool needs from the configuration.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The queue served.
    pub queue: String,
    /// Jobs run at once.
    pub concurrency: u32,
    /// Idle polling period.
    pub poll_interval: Duration,
    /// Lease length.
    pub lease: Duration,
    /// Attempts before a job fails, unless the job sets its own.
    pub max_attempts: u32,
    /// Backoff ceiling of the first retry.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// How long a drain may take.
    pub shutdown_grace: Duration,
    /// Default DDAttachment label.
    pub attachment_field: String,
    /// Attachment confinement and size limit.
    pub upload: UploadLimits,
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
        }
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
    settings: WorkerSettings,
    /// Identifies this process's leases (heartbeats extend them all at once).
    owner: String,
    /// Wakes the claim loop when a runner finishes or work is added in-process.
    wake: Notify,
    /// Claims in flight, so a forced stop can release them.
    running: Mutex<HashMap<JobId, Fence>>,
}

/// Why `run` stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The database failed in the claim loop.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Worker {
    /// A pool over `queue` using `approval`.
    pub fn new(queue: Queue, approval: Approval, settings: WorkerSettings) -> Worker {
        let owner = format!(
            "{}:{}:{:08x}",
            hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        Worker {
            inner: Arc::new(Inner {
                queue,
                approval,
                settings,
                owner,
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// This process's lease owner id.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Asks the claim loop to look for work now (e.g. after an in-process enqueue).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs until `shutdown` is cancelled, then drains: no new claims, in-flight jobs stop at
    /// their next step boundary and are released, all within the grace period; when it runs
    /// out (or `force` is cancelled) the remaining runners are aborted and released.
    pub async fn run(
        &self,
        shutdown: CancellationToken,
        force: CancellationToken,
    ) -> Result<(), WorkerError> {
        let inner = &self.inner;
        let semaphore = Arc::new(Semaphore::new(inner.settings.concurrency as usize));
        let mut runners = JoinSet::new();
        let maintenance = tokio::spawn(maintain(self.clone(), shutdown.clone()));
        tracing::info!(owner = %inner.owner, queue = %inner.settings.queue, concurrency = inner.settings.concurrency, "worker started");
        let outcome = self.claim_loop(&semaphore, &mut runners, &shutdown).await;
        tracing::info!(in_flight = runners.len(), "worker draining");
        let drained = tokio::select! {
            () = drain(&mut runners) => true,
            () = tokio::time::sleep(inner.settings.shutdown_grace) => false,
            () = force.cancelled() => false,
        };
        if !drained {
            runners.abort_all();
            while runners.join_next().await.is_some() {}
            self.release_all().await;
        }
        maintenance.abort();
        tracing::info!("worker stopped");
        outcome
    }

    async fn claim_loop(
        &self,
        semaphore: &Arc<Semaphore>,
        runners: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Result<(), WorkerError> {
        let inner = &self.inner;
        while !shutdown.is_cancelled() {
            while runners.try_join_next().is_some() {}
            let free = semaphore.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                let jobs = match inner
                    .queue
                    .claim(
                        &inner.settings.queue,
                        &inner.owner,
                        limit,
                        inner.settings.lease_ms(),
                        now_ms(),
                    )
                    .await
                {
                    Ok(jobs) => jobs,
                    Err(e) => {
                        tracing::error!(error = %e, "claim failed; retrying after the poll interval");
                        Vec::new()
                    }
                };
                claimed_all = jobs.len() == free;
                for job in jobs {
                    let Ok(permit) = semaphore.clone().try_acquire_owned() else {
                        // Permits only drop when runners finish, so `free` permits are there.
                        break;
                    };
                    self.track(job.fence());
                    let worker = self.clone();
                    let stop = shutdown.clone();
                    runners.spawn(async move {
                        let fence = job.fence();
                        runner::run(&worker, job, &stop).await;
                        worker.untrack(fence.id);
                        drop(permit);
                        worker.inner.wake.notify_one();
                    });
                }
            }
            if claimed_all && semaphore.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = inner.wake.notified() => {}
                () = tokio::time::sleep(inner.settings.poll_interval) => {}
            }
        }
        Ok(())
    }

    fn track(&self, fence: Fence) {
        self.running().insert(fence.id, fence);
    }

    fn untrack(&self, id: JobId) {
        self.running().remove(&id);
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Fence>> {
        // A panic while holding this lock leaves the map usable; keep going.
        self.inner.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn release_all(&self) {
        let fences: Vec<Fence> = self.running().drain().map(|(_, fence)| fence).collect();
        for fence in fences {
            match self.inner.queue.release(fence, now_ms()).await {
                Ok(()) => tracing::info!(job_id = fence.id, "released unfinished job"),
                Err(QueueError::LeaseLost { .. }) => {}
                Err(e) => {
                    tracing::warn!(job_id = fence.id, error = %e, "could not release job; its lease will expire")
                }
            }
        }
    }
}

async fn drain(runners: &mut JoinSet<()>) {
    while runners.join_next().await.is_some() {}
}

/// Heartbeats this process's leases and rescues other workers' expired ones.
async fn maintain(worker: Worker, shutdown: CancellationToken) {
    let inner = &worker.inner;
    let period = (inner.settings.lease / 3).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        if let Err(e) = inner
            .queue
            .heartbeat(&inner.owner, inner.settings.lease_ms(), now)
            .await
        {
            tracing::warn!(error = %e, "lease heartbeat failed");
        }
        if shutdown.is_cancelled() {
            continue;
        }
        match inner.queue.rescue(now).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(jobs = ?ids, "rescued jobs whose lease expired");
                inner.wake.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rescue failed"),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "host".to_string())
}
