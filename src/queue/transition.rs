//! Fenced writes a claim makes: checkpoint, retry later, succeed, fail, release, cancel.
//! Each is built here as one [`TransitionRequest`]: the change of the job row and the events
//! recording it, which the store writes in one transaction or not at all.

use super::{Fence, Follow, JobId, JobStatus, Queue, QueueError};

/// The kinds of `job_events` rows these writes record. `claimed`, `rescued` and `retried`
/// rows are written by the claim, rescue and retry statements themselves (the schema's CHECK
/// lists every kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A step finished and its output was checkpointed.
    StepDone,
    /// A step failed and the job took another path within the same attempt.
    StepFailed,
    /// The attempt failed and the job waits for `run_at`.
    RetryScheduled,
    /// A worker gave the job back unfinished (shutdown), uncharged.
    Released,
    /// The approval instance exists.
    Succeeded,
    /// The job gave up.
    Failed,
    /// The job stopped on request.
    Cancelled,
}

impl EventKind {
    /// The stored spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::StepDone => "step_done",
            EventKind::StepFailed => "step_failed",
            EventKind::RetryScheduled => "retry_scheduled",
            EventKind::Released => "released",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
        }
    }
}

/// What went wrong in a step, as recorded in `last_error` and the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// The step that failed.
    pub step: String,
    /// A readable reason (never a credential).
    pub message: String,
    /// The HTTP status DingTalk or OSS answered, if any.
    pub http_status: Option<u16>,
    /// How long the step ran.
    pub duration_ms: i64,
}

/// A step that finished without a checkpoint of its own (redoing it costs less than the
/// write would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDone {
    /// The step's name.
    pub step: &'static str,
    /// How long it ran.
    pub duration_ms: i64,
    /// When it finished (unix ms).
    pub at_ms: i64,
}

/// What a running job did since its last write. The next write records it: a `step_done`
/// event per step, in order and with the time it finished, so the history stays complete;
/// and the step reached, which a retry, failure, release or cancel stores as the job's
/// `step` (the step it was in, for humans and SQL; the checkpoint stays the last stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unstored {
    /// Steps finished without a checkpoint of their own, oldest first.
    done: Vec<StepDone>,
    /// The step the job went on to after them.
    reached: Option<&'static str>,
}

impl Unstored {
    /// Records that `done` finished and the job went on to `reached`.
    pub fn push(&mut self, done: StepDone, reached: &'static str) {
        self.done.push(done);
        self.reached = Some(reached);
    }

    /// Forgets what a write has just recorded.
    pub(crate) fn clear(&mut self) {
        self.done.clear();
        self.reached = None;
    }
}

/// One event row, owned so it can wait in the writer's queue.
#[derive(Debug, Clone)]
pub(super) struct EventRecord {
    pub(super) job_id: JobId,
    pub(super) attempt: i64,
    pub(super) at: i64,
    pub(super) kind: EventKind,
    pub(super) step: Option<String>,
    pub(super) duration_ms: Option<i64>,
    pub(super) error: Option<String>,
    pub(super) http_status: Option<u16>,
}

impl EventRecord {
    fn plain(fence: Fence, kind: EventKind, now_ms: i64) -> Self {
        EventRecord {
            job_id: fence.id,
            attempt: fence.attempt,
            at: now_ms,
            kind,
            step: None,
            duration_ms: None,
            error: None,
            http_status: None,
        }
    }

    fn failure(fence: Fence, kind: EventKind, failure: &Failure, now_ms: i64) -> Self {
        EventRecord {
            step: Some(failure.step.clone()),
            duration_ms: Some(failure.duration_ms),
            error: Some(failure.message.clone()),
            http_status: failure.http_status,
            ..EventRecord::plain(fence, kind, now_ms)
        }
    }
}

/// A fenced change of one job plus the events recording it (steps done since the last
/// write, then the change itself), inserted only if the change is.
pub(super) struct TransitionRequest {
    pub(super) fence: Fence,
    pub(super) change: Change,
    pub(super) events: Vec<EventRecord>,
    /// The step a retry, failure, release or cancel stores (see `Unstored`).
    pub(super) reached: Option<&'static str>,
    pub(super) now_ms: i64,
}

/// What a fenced transition changes on the job row; each kind has a statement per store.
pub(super) enum Change {
    /// The next step and its checkpoint (after a step, or back to an earlier one); the lease
    /// is kept. Answers `cancel_requested`.
    Checkpoint { step: String, checkpoint: String },
    /// Queued again until `run_at_ms`.
    RetryLater { run_at_ms: i64, last_error: String },
    /// The instance exists; `step` is the final step's name. With `follow`, the instance's
    /// outcome row goes in with it.
    Succeed {
        step: String,
        result: String,
        checkpoint: String,
        follow: Option<Follow>,
    },
    /// Failed or cancelled.
    Finish {
        status: JobStatus,
        last_error: Option<String>,
    },
    /// Queued again at once, uncharged.
    Release,
}

impl Queue {
    /// Writes `change` with the events of the `earlier` steps and then its own `event`.
    /// Every public transition takes `earlier`: what the job did since its last write.
    async fn transition(
        &self,
        fence: Fence,
        earlier: &Unstored,
        change: Change,
        event: EventRecord,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let mut events: Vec<EventRecord> = earlier
            .done
            .iter()
            .map(|done| EventRecord {
                step: Some(done.step.to_owned()),
                duration_ms: Some(done.duration_ms),
                ..EventRecord::plain(fence, EventKind::StepDone, done.at_ms)
            })
            .collect();
        events.push(event);
        let request = TransitionRequest {
            fence,
            change,
            events,
            reached: earlier.reached,
            now_ms,
        };
        on_store!(self, store => store.transition(request).await)
    }

    /// Stores the next step once `done` finished (at `done.at_ms`, which is also the write's
    /// time). Returns whether a cancel was requested meanwhile, so the runner can stop at this
    /// checkpoint without another read.
    pub async fn checkpoint(
        &self,
        fence: Fence,
        earlier: &Unstored,
        done: &StepDone,
        next_step: &str,
        checkpoint_json: &str,
    ) -> Result<bool, QueueError> {
        let event = EventRecord {
            step: Some(done.step.to_owned()),
            duration_ms: Some(done.duration_ms),
            ..EventRecord::plain(fence, EventKind::StepDone, done.at_ms)
        };
        let change = Change::Checkpoint {
            step: next_step.to_owned(),
            checkpoint: checkpoint_json.to_owned(),
        };
        self.transition(fence, earlier, change, event, done.at_ms)
            .await
    }

    /// Records a step failure the job recovers from within this attempt (for example an
    /// expired upload ticket sending it back to `upload_info`), with the step to go back to.
    pub(crate) async fn step_failed(
        &self,
        fence: Fence,
        earlier: &Unstored,
        failure: &Failure,
        next_step: &str,
        checkpoint_json: &str,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let event = EventRecord::failure(fence, EventKind::StepFailed, failure, now_ms);
        let change = Change::Checkpoint {
            step: next_step.to_owned(),
            checkpoint: checkpoint_json.to_owned(),
        };
        self.transition(fence, earlier, change, event, now_ms)
            .await?;
        Ok(())
    }

    /// Puts the job back in the queue until `run_at_ms`, keeping its checkpoint.
    pub async fn retry_later(
        &self,
        fence: Fence,
        earlier: &Unstored,
        failure: &Failure,
        run_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let event = EventRecord::failure(fence, EventKind::RetryScheduled, failure, now_ms);
        let change = Change::RetryLater {
            run_at_ms,
            last_error: failure.message.clone(),
        };
        self.transition(fence, earlier, change, event, now_ms)
            .await?;
        Ok(())
    }

    /// Finishes the job: the instance exists. `final_step` and `checkpoint_json` are the
    /// final step's name and checkpoint; with `follow`, the instance is followed to its
    /// decision from this same write.
    #[allow(clippy::too_many_arguments)]
    pub async fn succeed(
        &self,
        fence: Fence,
        earlier: &Unstored,
        result_json: &str,
        final_step: &str,
        checkpoint_json: &str,
        follow: Option<Follow>,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let event = EventRecord::plain(fence, EventKind::Succeeded, now_ms);
        let change = Change::Succeed {
            step: final_step.to_owned(),
            result: result_json.to_owned(),
            checkpoint: checkpoint_json.to_owned(),
            follow,
        };
        self.transition(fence, earlier, change, event, now_ms)
            .await?;
        Ok(())
    }

    /// Gives up on the job.
    pub async fn fail(
        &self,
        fence: Fence,
        earlier: &Unstored,
        failure: &Failure,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let event = EventRecord::failure(fence, EventKind::Failed, failure, now_ms);
        let change = Change::Finish {
            status: JobStatus::Failed,
            last_error: Some(failure.message.clone()),
        };
        self.transition(fence, earlier, change, event, now_ms)
            .await?;
        Ok(())
    }

    /// Stops the job because a cancel was requested (called only at a step boundary).
    pub async fn cancel_running(
        &self,
        fence: Fence,
        earlier: &Unstored,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let event = EventRecord {
            error: Some("cancel requested".to_owned()),
            ..EventRecord::plain(fence, EventKind::Cancelled, now_ms)
        };
        let change = Change::Finish {
            status: JobStatus::Cancelled,
            last_error: None,
        };
        self.transition(fence, earlier, change, event, now_ms)
            .await?;
        Ok(())
    }

    /// Gives the job back unfinished (shutdown): queued again at once at its checkpoint, and
    /// the attempt is not charged.
    pub async fn release(
        &self,
        fence: Fence,
        earlier: &Unstored,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let event = EventRecord::plain(fence, EventKind::Released, now_ms);
        self.transition(fence, earlier, Change::Release, event, now_ms)
            .await?;
        Ok(())
    }
}
