//! The pool's life: start-up (lease recovery, READY), the claim loop with its status reports
//! and budget check, and the drain on shutdown (STOPPING, forced stop, releasing leases).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::notify::{STOP_MARGIN, status_line};
use super::{Worker, WorkerError, maintain, outcome, runner};
use crate::queue::{Fence, QueueError, Unstored, now_ms};

/// How long a stop forced by a second signal may still spend on the database.
const FORCED_STOP_BUDGET: Duration = Duration::from_secs(1);
/// How often the database's files are checked for being deleted or replaced.
const FILE_CHECK: Duration = Duration::from_millis(500);

impl Worker {
    /// Runs until `shutdown` is cancelled, then drains: no new claims, in-flight jobs stop at
    /// their next step boundary and are released, all within the grace period; when it runs
    /// out (or `force` is cancelled) the remaining runners are aborted and released. If the
    /// database's files are deleted or replaced meanwhile, it stops at once and returns
    /// [`WorkerError::DatabaseReplaced`]: nothing it writes would reach anyone any more.
    pub async fn run(
        &self,
        shutdown: CancellationToken,
        force: CancellationToken,
    ) -> Result<(), WorkerError> {
        let inner = &self.inner;
        let (shutdown, force) = (shutdown.child_token(), force.child_token());
        let watcher = tokio::spawn(watch_files(self.clone(), shutdown.clone(), force.clone()));
        self.start_up().await;
        let slots = inner.slots.load(Ordering::Acquire);
        let semaphore = Arc::new(Semaphore::new(slots as usize));
        let sizing = inner.settings.concurrency.is_none().then(|| {
            tokio::spawn(
                self.clone()
                    .adapt(Arc::clone(&semaphore), inner.settings.max_concurrency),
            )
        });
        let mut runners = JoinSet::new();
        let maintenance = tokio::spawn(maintain::maintain(self.clone(), shutdown.clone()));
        let following = tokio::spawn(outcome::follow(
            outcome::Following::new(self),
            shutdown.clone(),
        ));
        tracing::info!(owner = %inner.owner, queue = %inner.settings.queue, concurrency = slots, sized_by_rate_limit = sizing.is_some(), max_concurrency = inner.settings.max_concurrency, "worker started");
        let outcome = self.claim_loop(&semaphore, &mut runners, &shutdown).await;
        tracing::info!(in_flight = runners.len(), "worker draining");
        let forced = !self.drain(&mut runners, &force).await;
        if forced {
            // Read before the runners stop: each forgets its claim when it is dropped.
            let unfinished: Vec<Fence> = self.running().values().copied().collect();
            runners.abort_all();
            while runners.join_next().await.is_some() {}
            self.release_all(unfinished, force.is_cancelled()).await;
        }
        maintenance.abort();
        if let Some(sizing) = sizing {
            sizing.abort();
        }
        // Whatever the outcome tasks had in hand is fenced or acked only after its commit:
        // cut short, it is read, sent or delivered again.
        following.abort();
        watcher.abort();
        *self.alive_at() = None;
        if let Some(reason) = inner.queue.files_replaced() {
            return Err(WorkerError::DatabaseReplaced(reason));
        }
        let flushed =
            tokio::time::timeout(last_writes_budget(force.is_cancelled()), self.flush_calls());
        match flushed.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not record the last DingTalk call counts")
            }
            Err(_) => tracing::warn!(
                "the database did not answer: the last DingTalk call counts are not recorded"
            ),
        }
        tracing::info!("worker stopped");
        outcome
    }

    /// Takes back expired leases and reads the month's call count, then tells systemd the
    /// pool is ready. Failures are logged: the claim loop retries them, and systemd's
    /// watchdog notices if the database stays away.
    async fn start_up(&self) {
        let inner = &self.inner;
        match inner.queue.rescue(now_ms()).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(jobs = ?ids, "rescued jobs whose lease expired");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "lease recovery failed"),
        }
        if let Err(e) = self.flush_calls().await {
            tracing::warn!(error = %e, "could not read this month's DingTalk call count");
        }
        let depth = inner
            .queue
            .depth(&inner.settings.queue, now_ms())
            .await
            .unwrap_or_default();
        self.mark_alive();
        let quota = inner.quota.usage(&inner.dingtalk);
        self.notifier().ready(&status_line(
            0,
            inner.slots.load(Ordering::Acquire),
            &depth,
            quota,
        ));
    }

    /// Writes this process's DingTalk call tallies to the database.
    pub(super) async fn flush_calls(&self) -> Result<u64, QueueError> {
        let inner = &self.inner;
        inner
            .quota
            .flush(&inner.queue, &inner.dingtalk, now_ms())
            .await
    }

    async fn claim_loop(
        &self,
        semaphore: &Arc<Semaphore>,
        runners: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Result<(), WorkerError> {
        let inner = &self.inner;
        let mut status_tick = tokio::time::interval(self.notifier().status_interval());
        status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The claim's last round trip succeeded (or none was needed).
        let mut claim_ok = true;
        let mut budget_reached = false;
        while !shutdown.is_cancelled() {
            while runners.try_join_next().is_some() {}
            let free = self.claimable(semaphore);
            let mut claimed_all = false;
            let exhausted = inner.quota.exhausted(&inner.dingtalk);
            self.log_budget(&mut budget_reached, exhausted);
            if free > 0 && exhausted.is_none() {
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
                    Ok(jobs) => {
                        claim_ok = true;
                        self.mark_alive();
                        jobs
                    }
                    Err(e) => {
                        claim_ok = false;
                        tracing::error!(error = %e, "claim failed; retrying after the poll interval");
                        Vec::new()
                    }
                };
                claimed_all = jobs.len() == free;
                for job in jobs {
                    let tracked = self.track(job.fence());
                    let parked = Parked::new(self);
                    let worker = self.clone();
                    let stop = shutdown.clone();
                    let semaphore = Arc::clone(semaphore);
                    runners.spawn(async move {
                        let fence = job.fence();
                        // A job claimed ahead waits here for the slot its predecessor frees.
                        let permit = tokio::select! {
                            biased;
                            permit = semaphore.acquire_owned() => permit.ok(),
                            () = stop.cancelled() => None,
                        };
                        drop(parked);
                        match permit {
                            Some(permit) => {
                                let inner = &worker.inner;
                                let mut slot =
                                    runner::Slot::new(permit, &inner.wake, &inner.finishing);
                                runner::run(&worker, job, &stop, &mut slot).await;
                            }
                            // Shutdown came first: back to the queue, uncharged, having
                            // called nothing.
                            None => {
                                worker
                                    .release(
                                        fence,
                                        "released a job claimed ahead before it started",
                                    )
                                    .await
                            }
                        }
                        drop(tracked);
                    });
                }
            }
            if claimed_all && self.claimable(semaphore) > 0 {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = inner.wake.notified() => {}
                () = inner.queue.wait_for_change(inner.settings.poll_interval) => {}
                _ = status_tick.tick() => self.report_status(claim_ok).await,
            }
        }
        Ok(())
    }

    /// How many jobs the claim loop may claim now: the free slots, plus one successor for
    /// each runner in its last step, less the claimed jobs already waiting for a slot.
    fn claimable(&self, semaphore: &Semaphore) -> usize {
        let inner = &self.inner;
        (semaphore.available_permits() + inner.finishing.load(Ordering::Acquire))
            .saturating_sub(inner.parked.load(Ordering::Acquire))
    }

    /// One database round trip for the status line; the watchdog is pinged only when it and
    /// the last claim succeeded, so a wedged database gets the service restarted.
    async fn report_status(&self, claim_ok: bool) {
        let inner = &self.inner;
        match inner.queue.depth(&inner.settings.queue, now_ms()).await {
            Ok(depth) => {
                self.mark_alive();
                let quota = inner.quota.usage(&inner.dingtalk);
                let line = status_line(
                    self.running().len(),
                    inner.slots.load(Ordering::Acquire),
                    &depth,
                    quota,
                );
                self.notifier().status(&line, claim_ok);
            }
            Err(e) => {
                tracing::warn!(error = %e, "status query failed");
                self.notifier()
                    .status(&format!("database unavailable: {e}"), false);
            }
        }
    }

    fn log_budget(&self, reached: &mut bool, exhausted: Option<(u64, u64)>) {
        match (exhausted, *reached) {
            (Some((used, budget)), false) => tracing::warn!(
                used,
                budget,
                "monthly DingTalk call budget reached: not claiming until the month ends \
                 (China Standard Time) or [dingtalk] monthly_call_budget is raised"
            ),
            (None, true) => {
                tracing::info!("monthly DingTalk call budget available again: claiming")
            }
            _ => {}
        }
        *reached = exhausted.is_some();
    }

    /// Waits for the runners within the grace period. Tells systemd it is stopping and asks
    /// for stop time up to the grace deadline, again each time a job leaves (progress).
    /// Returns false when the grace ran out or `force` fired.
    async fn drain(&self, runners: &mut JoinSet<()>, force: &CancellationToken) -> bool {
        let grace = self.inner.settings.shutdown_grace;
        let deadline = Instant::now() + grace;
        let status = |left: usize| format!("stopping: draining {left} in-flight jobs");
        let extend = || deadline.saturating_duration_since(Instant::now()) + STOP_MARGIN;
        let in_flight = runners.len();
        self.notifier()
            .stopping(&status(in_flight), (in_flight > 0).then(extend));
        loop {
            tokio::select! {
                joined = runners.join_next() => match joined {
                    None => return true,
                    Some(_) if !runners.is_empty() => {
                        self.notifier().extend(&status(runners.len()), extend());
                    }
                    Some(_) => {}
                },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = runners.len(), grace_secs = grace.as_secs(), "grace period over: stopping in-flight jobs");
                    return false;
                }
                () = force.cancelled() => return false,
            }
        }
    }

    /// Releases the claims whose runners were stopped, all at once (they share one commit),
    /// giving up after [`last_writes_budget`]: their leases then expire and they are rescued.
    async fn release_all(&self, unfinished: Vec<Fence>, forced: bool) {
        let count = unfinished.len();
        let releases = unfinished
            .into_iter()
            .map(|fence| self.release(fence, "released unfinished job"));
        let budget = last_writes_budget(forced);
        if tokio::time::timeout(budget, futures_util::future::join_all(releases))
            .await
            .is_err()
        {
            tracing::warn!(
                jobs = count,
                budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                "the database did not answer in time: unreleased jobs are rescued when their leases expire"
            );
        }
    }

    /// Gives a claimed job back to the queue at its checkpoint, uncharged, logging `released`
    /// when it went back; a lease already lost needs nothing.
    async fn release(&self, fence: Fence, released: &str) {
        match self
            .inner
            .queue
            .release(fence, &Unstored::default(), now_ms())
            .await
        {
            Ok(()) => tracing::info!(job_id = fence.id, "{released}"),
            Err(QueueError::LeaseLost { .. }) => {}
            Err(e) => {
                tracing::warn!(job_id = fence.id, error = %e, "could not release job; its lease will expire")
            }
        }
    }
}

/// How long the writes after the runners stopped (releases, call counts) may take: a second
/// signal asks to stop at once, so then only briefly, whoever holds the database's lock.
fn last_writes_budget(forced: bool) -> Duration {
    if forced {
        FORCED_STOP_BUDGET
    } else {
        Duration::from_secs(crate::queue::BUSY_TIMEOUT_SECS)
    }
}

/// Stops the worker at once (no drain) when its database files are deleted or replaced.
async fn watch_files(worker: Worker, shutdown: CancellationToken, force: CancellationToken) {
    let mut tick = tokio::time::interval(FILE_CHECK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(reason) = worker.inner.queue.files_replaced() {
            tracing::error!(%reason, "the database this worker has open is gone: stopping now");
            shutdown.cancel();
            force.cancel();
            return;
        }
    }
}

/// Counts one claimed job as waiting for a slot until dropped: when it gets one, or when its
/// task ends otherwise (released at shutdown, or aborted).
struct Parked(Worker);

impl Parked {
    fn new(worker: &Worker) -> Self {
        worker.inner.parked.fetch_add(1, Ordering::AcqRel);
        Self(worker.clone())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.inner.parked.fetch_sub(1, Ordering::AcqRel);
    }
}
