//! One claimed job: validate, resume at the checkpoint, advance and checkpoint step by step,
//! then succeed, fail, retry later, cancel or release.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Worker;
use super::policy::{self, Action, Standing};
use super::uploads::UploadFile;
use crate::approval::{self, Attempt, Step};
use crate::queue::{ClaimedJob, Failure, Fence, Follow, QueueError, StepDone, Unstored, now_ms};

/// The step name recorded when the payload itself is at fault.
const PAYLOAD_STEP: &str = "payload";
/// The name events give a submit resumed by a later attempt: it reconciles before anything.
const RECONCILE_STEP: &str = "reconcile";
/// The label of one part's PUT in events and metrics: a part's duration is not a file's, and
/// a large file's history shows each part.
const PART_STEP: &str = "put_part";

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
    let started = Instant::now();
    let (outcome, pacing) = crate::dingtalk::measured(
        AssertUnwindSafe(drive(worker, &job, shutdown, slot).instrument(span.clone()))
            .catch_unwind(),
    )
    .await;
    worker.record_run(started.elapsed(), &pacing);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        // A bug, not the job's fault: the attempt is charged, so a job that always hits it
        // ends `failed` after its attempts instead of going round for ever.
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let _entered = span.enter();
            tracing::error!(panic = %message, "the job's runner panicked; retrying it later");
            slot.free();
            let standing = standing(worker, &job);
            let action = policy::after_panic(&message, standing, delays(worker, standing));
            finish(
                worker,
                job.fence(),
                &Unstored::default(),
                "runner",
                action,
                0,
            )
            .await
        }
    };
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
    let mut standing = standing(worker, claimed);

    let refused = |step: &str, reason: String| failure(step, reason, None, 0);
    let start = match &claimed.unreadable {
        Some(reason) => Err(refused(PAYLOAD_STEP, reason.clone())),
        None => approval::validate(
            &claimed.payload,
            &settings.attachment_field,
            &settings.upload,
        )
        .map_err(|e| refused(PAYLOAD_STEP, e.to_string()))
        .and_then(|job| {
            Step::from_checkpoint(claimed.checkpoint.as_deref())
                .map(|step| (job, step))
                .map_err(|e| refused("checkpoint", format!("checkpoint unreadable: {e}")))
        }),
    };
    let (job, mut step) = match start {
        Ok(start) => start,
        Err(refusal) => {
            tracing::warn!(step = %refusal.step, error = %refusal.message, "job refused");
            slot.free();
            return queue
                .fail(fence, &Unstored::default(), &refusal, now_ms())
                .await
                .inspect(|()| worker.inner.metrics.finished("failed"));
        }
    };
    if claimed.cancel_requested && policy::may_cancel(&step, claimed.attempt) {
        slot.free();
        return queue
            .cancel_running(fence, &Unstored::default(), now_ms())
            .await
            .inspect(|()| worker.inner.metrics.finished("cancelled"));
    }

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
            let now = now_ms();
            let follow = settings.outcome.first_check().map(|first| Follow {
                instance_id: instance_id.clone(),
                callback_url: job.payload.callback_url.clone(),
                first_check_at: now
                    .saturating_add(i64::try_from(first.as_millis()).unwrap_or(i64::MAX)),
            });
            return queue
                .succeed(
                    fence,
                    &unstored,
                    &result,
                    step.name(),
                    &step.to_checkpoint(),
                    follow,
                    now,
                )
                .await
                .inspect(|()| worker.inner.metrics.finished("succeeded"));
        }
        if shutdown.is_cancelled() {
            tracing::info!(
                step = step.name(),
                "shutting down: releasing job at its checkpoint"
            );
            return queue.release(fence, &unstored, now_ms()).await;
        }
        let label = step_label(&step, claimed.attempt);
        let started = Instant::now();
        let at = Attempt {
            attempt: claimed.attempt,
            now_ms: now_ms(),
            may_create: standing.may_create(),
        };
        // A PUT's bytes are counted as they go, for the metric and live progress.
        let upload = upload_file(&job, &step).map(|file| worker.upload(fence, file, at.now_ms));
        let sent = upload.as_ref().map(|upload| upload.sent.clone());
        let outcome = inner
            .approval
            .advance(&job, step.clone(), at, &sent.unwrap_or_default())
            .instrument(tracing::debug_span!("step", step = label))
            .await;
        drop(upload);
        let duration_ms = elapsed_ms(started);
        inner.metrics.step(label, outcome.is_ok(), duration_ms);
        match policy::after_step(&step, outcome, standing, delays(worker, standing)) {
            Action::Advance { next, store: false } => {
                tracing::debug!(step = label, next = next.name(), duration_ms, "step done");
                if !matches!(next, Step::Done { .. }) {
                    unstored.push(step_done(label, duration_ms), next.name());
                }
                step = next;
            }
            Action::Advance { next, store: true } => {
                tracing::debug!(step = label, next = next.name(), duration_ms, "step done");
                if matches!(next, Step::Submit { .. }) {
                    slot.last_step();
                }
                let done = step_done(label, duration_ms);
                let cancel = queue
                    .checkpoint(fence, &unstored, &done, next.name(), &next.to_checkpoint())
                    .await?;
                unstored.clear();
                step = next;
                if policy::cancel_at_checkpoint(&step, cancel, claimed.attempt) {
                    tracing::info!("cancel requested: stopping at this checkpoint");
                    slot.free();
                    return queue
                        .cancel_running(fence, &Unstored::default(), now_ms())
                        .await
                        .inspect(|()| worker.inner.metrics.finished("cancelled"));
                }
            }
            Action::GoBack { to, reason } => {
                standing.stale_redos += 1;
                tracing::info!(step = label, reason = %reason, back_to = to.name(), "step input went stale");
                let f = failure(label, reason.message, reason.http_status, duration_ms);
                queue
                    .step_failed(
                        fence,
                        &unstored,
                        &f,
                        to.name(),
                        &to.to_checkpoint(),
                        now_ms(),
                    )
                    .await?;
                unstored.clear();
                step = to;
                slot.not_last_step();
            }
            end @ (Action::Cancel | Action::Fail(_) | Action::RetryLater { .. }) => {
                slot.free();
                return finish(worker, fence, &unstored, label, end, duration_ms).await;
            }
        }
    }
}

/// Carries out an action that ends the job's time with this worker: cancel, fail or retry
/// later, recording what it did since its last write with it.
async fn finish(
    worker: &Worker,
    fence: Fence,
    unstored: &Unstored,
    step: &str,
    action: Action,
    duration_ms: i64,
) -> Result<(), QueueError> {
    let queue = &worker.inner.queue;
    let now = now_ms();
    match action {
        Action::Cancel => {
            tracing::info!("cancel requested and no instance found: cancelling");
            queue
                .cancel_running(fence, unstored, now)
                .await
                .inspect(|()| worker.inner.metrics.finished("cancelled"))
        }
        Action::Fail(reason) => {
            tracing::warn!(step, error = %reason, "job failed");
            let f = failure(step, reason.message, reason.http_status, duration_ms);
            queue
                .fail(fence, unstored, &f, now)
                .await
                .inspect(|()| worker.inner.metrics.finished("failed"))
        }
        Action::RetryLater { reason, delay } => {
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            tracing::info!(step, error = %reason, delay_ms, "step failed; retrying later");
            worker.inner.metrics.retry(step);
            let f = failure(step, reason.message, reason.http_status, duration_ms);
            // The checkpoint stays as it was: an ambiguous submit keeps its intent, so the
            // next attempt reconciles before creating.
            queue
                .retry_later(fence, unstored, &f, now.saturating_add(delay_ms), now)
                .await
        }
        // The runner's loop carries these out itself.
        Action::Advance { .. } | Action::GoBack { .. } => Ok(()),
    }
}

/// The attempt's standing as the claim found it.
fn standing(worker: &Worker, claimed: &ClaimedJob) -> Standing {
    Standing {
        attempt: claimed.attempt,
        charged: claimed.charged_attempts(),
        max_attempts: claimed
            .max_attempts
            .unwrap_or_else(|| i64::from(worker.inner.settings.max_attempts)),
        cancel_requested: claimed.cancel_requested,
        stale_redos: 0,
    }
}

/// The delays a retry of this attempt is built from: the queue's jittered backoff for the
/// attempts charged so far, and the settle time of an unanswered create.
fn delays(worker: &Worker, standing: Standing) -> policy::Delays {
    let settings = &worker.inner.settings;
    policy::Delays {
        backoff: approval::backoff(
            standing.charged,
            settings.backoff_base,
            settings.backoff_max,
            rand::random::<f64>(),
        ),
        submit_settle: worker.inner.approval.submit_settle(),
    }
}

/// The file a PUT step sends: whole, or its next part.
fn upload_file(job: &approval::Job, step: &Step) -> Option<UploadFile> {
    let (progress, size, earlier) = match step {
        Step::Put { progress, upload } => (progress, upload.size, None),
        Step::PutParts { progress, upload } => (
            progress,
            upload.size,
            Some((upload.bytes_done(), upload.started_at_ms)),
        ),
        _ => return None,
    };
    let index = progress.files.len();
    Some(UploadFile {
        index,
        count: job.attachments.len(),
        name: job
            .attachments
            .get(index)
            .map(|attachment| attachment.name.clone())
            .unwrap_or_default(),
        size,
        earlier,
    })
}

/// The step name events record for `step` run under `attempt`.
fn step_label(step: &Step, attempt: i64) -> &'static str {
    if policy::is_reconcile(step, attempt) {
        RECONCILE_STEP
    } else if matches!(step, Step::PutParts { .. }) {
        PART_STEP
    } else {
        step.name()
    }
}

fn step_done(step: &'static str, duration_ms: i64) -> StepDone {
    StepDone {
        step,
        duration_ms,
        at_ms: now_ms(),
    }
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
