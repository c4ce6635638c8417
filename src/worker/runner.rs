//! One claimed job: validate, resume at the checkpoint, advance and checkpoint step by step,
//! then succeed, fail, retry later, cancel or release.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Worker;
use crate::approval::{self, Attempt, Step, StepError};
use crate::queue::{ClaimedJob, Failure, Fence, QueueError, StepDone, Unstored, now_ms};

/// Stale-input redos (expired ticket, consumed uploadKey) allowed within one attempt before
/// the job waits for a later attempt instead.
const MAX_STALE_REDOS_PER_ATTEMPT: u32 = 3;
/// The step name recorded when the payload itself is at fault.
const PAYLOAD_STEP: &str = "payload";
/// The name events give a submit resumed by a later attempt: it reconciles before anything.
const RECONCILE_STEP: &str = "reconcile";
/// Attempts beyond `max_attempts` a job may still make while a create it sent is
/// unresolved: only reconciliation can tell whether the approval exists, so failing the job
/// before it has looked would report a failure that may be a success.
const EXTRA_RECONCILE_ATTEMPTS: i64 = 3;

/// A runner's place among the worker's `concurrency` slots.
pub(super) struct Slot<'a> {
    permit: Option<OwnedSemaphorePermit>,
    wake: &'a Notify,
    finishing: &'a AtomicUsize,
    /// Whether this runner counts in `finishing`.
    last_step: bool,
}

impl<'a> Slot<'a> {
    /// Holds `permit` until [`Slot::free`]; `wake` tells the claim loop a slot is free or
    /// about to be, `finishing` counts the runners in their last step.
    pub(super) fn new(
        permit: OwnedSemaphorePermit,
        wake: &'a Notify,
        finishing: &'a AtomicUsize,
    ) -> Self {
        Self {
            permit: Some(permit),
            wake,
            finishing,
            last_step: false,
        }
    }

    /// The job is about to make its last call: the claim loop may claim its successor now,
    /// which then waits for this slot instead of claiming once it is free.
    pub(super) fn last_step(&mut self) {
        if self.permit.is_some() && !self.last_step {
            self.last_step = true;
            self.finishing.fetch_add(1, Ordering::AcqRel);
            self.wake.notify_one();
        }
    }

    /// The job went back to an earlier step: its slot is not about to be free after all.
    pub(super) fn not_last_step(&mut self) {
        if self.last_step {
            self.last_step = false;
            self.finishing.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Gives the slot back to the claim loop; later calls do nothing.
    pub(super) fn free(&mut self) {
        if self.permit.take().is_some() {
            self.not_last_step();
            self.wake.notify_one();
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.free();
    }
}

/// Runs one claimed job until it leaves this worker's hands. Before the checkpoint that
/// precedes its create, the job tells the claim loop through `slot` that it is in its last
/// step: its successor's claim then joins that checkpoint's group commit, and the successor
/// waits for this slot instead of claiming once it is free. `slot` is freed before the job's
/// last write (success, failure, retry, cancel) rather than after it: that write is all the
/// job has left to do, so a claim that had to wait for the slot goes into the same group
/// commit instead of the next one. A release at shutdown keeps it: no claim follows.
pub(super) async fn run(
    worker: &Worker,
    job: ClaimedJob,
    shutdown: &CancellationToken,
    slot: &mut Slot<'_>,
) {
    let span = tracing::info_span!("job", job_id = job.id, attempt = job.attempt);
    let outcome = drive(worker, &job, shutdown, slot)
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    match outcome {
        Ok(()) => {}
        Err(QueueError::LeaseLost { .. }) => {
            tracing::warn!("lease lost: another claim owns this job now; stopping quietly");
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record the job's progress; its lease will expire and it will be rescued")
        }
    }
}

async fn drive(
    worker: &Worker,
    claimed: &ClaimedJob,
    shutdown: &CancellationToken,
    slot: &mut Slot<'_>,
) -> Result<(), QueueError> {
    let inner = &worker.inner;
    let settings = &inner.settings;
    let queue = &inner.queue;
    let fence = claimed.fence();

    let job = match approval::validate(
        &claimed.payload,
        &settings.attachment_field,
        &settings.upload,
    ) {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!(error = %e, "payload refused");
            slot.free();
            return queue
                .fail(
                    fence,
                    &Unstored::default(),
                    &failure(PAYLOAD_STEP, e.to_string(), None, 0),
                    now_ms(),
                )
                .await;
        }
    };
    let mut step = match Step::from_checkpoint(claimed.checkpoint.as_deref()) {
        Ok(step) => step,
        Err(e) => {
            let message = format!("checkpoint unreadable: {e}");
            slot.free();
            return queue
                .fail(
                    fence,
                    &Unstored::default(),
                    &failure("checkpoint", message, None, 0),
                    now_ms(),
                )
                .await;
        }
    };
    if claimed.cancel_requested && may_cancel(&step, claimed.attempt) {
        slot.free();
        return queue
            .cancel_running(fence, &Unstored::default(), now_ms())
            .await;
    }

    let mut redos = 0;
    // What the job did since its last write; that write records it.
    let mut unstored = Unstored::default();
    loop {
        if let Step::Done {
            instance_id, files, ..
        } = &step
        {
            let result = approval::result_json(instance_id, files).to_string();
            tracing::info!(instance_id = %instance_id, "approval instance created");
            slot.free();
            return queue
                .succeed(fence, &unstored, &result, &step.to_checkpoint(), now_ms())
                .await;
        }
        if shutdown.is_cancelled() {
            tracing::info!(
                step = step.name(),
                "shutting down: releasing job at its checkpoint"
            );
            return queue.release(fence, &unstored, now_ms()).await;
        }
        let started = Instant::now();
        let at = Attempt {
            attempt: claimed.attempt,
            now_ms: now_ms(),
            // A cancelled job that may have sent a create only looks for its instance.
            may_create: !claimed.cancel_requested
                && claimed.charged_attempts() <= max_attempts(worker, claimed),
        };
        let done_step = step_label(&step, claimed.attempt);
        let outcome = inner
            .approval
            .advance(&job, step.clone(), at)
            .instrument(tracing::debug_span!("step", step = done_step))
            .await;
        let duration_ms = elapsed_ms(started);
        inner
            .metrics
            .step(done_step, &step, outcome.is_ok(), duration_ms);
        match outcome {
            Ok(next) => {
                tracing::debug!(
                    step = done_step,
                    next = next.name(),
                    duration_ms,
                    "step done"
                );
                let done = matches!(next, Step::Done { .. });
                // A created instance goes straight to `succeed` (one write); an adopted one
                // gets its own event first, so the history shows the reconciliation.
                if done && done_step != RECONCILE_STEP {
                    step = next;
                    continue;
                }
                let finished = StepDone {
                    step: done_step,
                    duration_ms,
                    at_ms: now_ms(),
                };
                if !step.must_store(&next) {
                    unstored.push(finished, next.name());
                    step = next;
                    continue;
                }
                if matches!(next, Step::Submit { .. }) {
                    slot.last_step();
                }
                let cancel = queue
                    .checkpoint(
                        fence,
                        &unstored,
                        &finished,
                        next.name(),
                        &next.to_checkpoint(),
                    )
                    .await?;
                unstored.clear();
                step = next;
                if cancel && !done && may_cancel(&step, claimed.attempt) {
                    tracing::info!("cancel requested: stopping at this checkpoint");
                    slot.free();
                    return queue
                        .cancel_running(fence, &Unstored::default(), now_ms())
                        .await;
                }
            }
            Err(StepError::Stale { reason, back_to }) if redos < MAX_STALE_REDOS_PER_ATTEMPT => {
                redos += 1;
                tracing::info!(step = done_step, reason = %reason, back_to = back_to.name(), "step input went stale");
                let f = failure(done_step, reason.message, reason.http_status, duration_ms);
                queue
                    .step_failed(
                        fence,
                        &unstored,
                        &f,
                        back_to.name(),
                        &back_to.to_checkpoint(),
                        now_ms(),
                    )
                    .await?;
                unstored.clear();
                step = *back_to;
                slot.not_last_step();
            }
            Err(StepError::Permanent(reason))
                if claimed.cancel_requested && done_step == RECONCILE_STEP =>
            {
                tracing::info!(reason = %reason, "cancel requested and no instance found: cancelling");
                slot.free();
                return queue.cancel_running(fence, &unstored, now_ms()).await;
            }
            Err(error) => {
                let failed = (done_step, error, duration_ms);
                slot.free();
                return give_up_or_retry(worker, claimed, fence, &unstored, failed).await;
            }
        }
    }
}

/// A cancel may stop the job unless a create may already have been sent by an earlier
/// attempt: then only reconciliation can tell, and finishing is the truthful outcome.
fn may_cancel(step: &Step, attempt: i64) -> bool {
    !is_reconcile(step, attempt)
}

/// A submit whose intent an earlier attempt armed: its create may have been sent.
fn is_reconcile(step: &Step, attempt: i64) -> bool {
    matches!(step, Step::Submit { intent, .. } if intent.attempt != attempt)
}

/// The step name events record for `step` run under `attempt`.
fn step_label(step: &Step, attempt: i64) -> &'static str {
    if is_reconcile(step, attempt) {
        RECONCILE_STEP
    } else {
        step.name()
    }
}

fn max_attempts(worker: &Worker, claimed: &ClaimedJob) -> i64 {
    claimed
        .max_attempts
        .unwrap_or_else(|| i64::from(worker.inner.settings.max_attempts))
}

async fn give_up_or_retry(
    worker: &Worker,
    claimed: &ClaimedJob,
    fence: Fence,
    unstored: &Unstored,
    (step_name, error, duration_ms): (&str, StepError, i64),
) -> Result<(), QueueError> {
    let inner = &worker.inner;
    let settings = &inner.settings;
    let reason = error.reason().clone();
    let now = now_ms();
    if let StepError::Permanent(_) = error {
        tracing::warn!(step = step_name, error = %reason, "job failed permanently");
        let f = failure(step_name, reason.message, reason.http_status, duration_ms);
        return inner.queue.fail(fence, unstored, &f, now).await;
    }
    // A create that may have been sent and is not yet reconciled keeps the job going a
    // little longer: the next attempt looks before it gives up (and creates nothing more).
    let unresolved = matches!(error, StepError::Ambiguous(_)) || step_name == RECONCILE_STEP;
    let limit = max_attempts(worker, claimed)
        + if unresolved {
            EXTRA_RECONCILE_ATTEMPTS
        } else {
            0
        };
    if claimed.charged_attempts() >= limit {
        tracing::warn!(step = step_name, error = %reason, "job failed: attempts exhausted");
        let unknown = if unresolved {
            "; an approval instance may exist: `retry` reconciles before creating"
        } else {
            ""
        };
        let message = format!(
            "gave up after {} attempts: {}{unknown}",
            claimed.charged_attempts(),
            reason.message
        );
        let f = failure(step_name, message, reason.http_status, duration_ms);
        return inner.queue.fail(fence, unstored, &f, now).await;
    }
    let backoff = approval::backoff(
        claimed.charged_attempts(),
        settings.backoff_base,
        settings.backoff_max,
        rand::random::<f64>(),
    );
    let delay = inner.approval.retry_delay(&error, backoff);
    tracing::info!(step = step_name, error = %error, delay_ms = delay.as_millis() as u64, "step failed; retrying later");
    let f = failure(
        step_name,
        error.to_string(),
        reason.http_status,
        duration_ms,
    );
    let run_at = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    // The checkpoint stays as it was: an ambiguous submit keeps its intent, so the next
    // attempt reconciles before creating.
    inner.metrics.retry(step_name);
    inner
        .queue
        .retry_later(fence, unstored, &f, run_at, now)
        .await
}

fn failure(step: &str, message: String, http_status: Option<u16>, duration_ms: i64) -> Failure {
    Failure {
        step: step.to_string(),
        message,
        http_status,
        duration_ms,
    }
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}
