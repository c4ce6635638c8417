//! Fenced writes a claim makes: checkpoint, retry later, succeed, fail, release, cancel.
//! Each changes the job row and records its event in one transaction (the group-commit
//! writer's, shared with other jobs' writes that arrived meanwhile).

use sqlx::Sqlite;
use sqlx::sqlite::SqliteArguments;

use super::writer::TransitionRequest;
use super::{Fence, JobId, Queue, QueueError};

/// The kinds of rows in `job_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A worker leased the job.
    Claimed,
    /// A step finished and its output was checkpointed.
    StepDone,
    /// A step failed and the job took another path within the same attempt.
    StepFailed,
    /// The attempt failed and the job waits for `run_at`.
    RetryScheduled,
    /// An expired lease was taken back.
    Rescued,
    /// A worker gave the job back unfinished (shutdown), uncharged.
    Released,
    /// The approval instance exists.
    Succeeded,
    /// The job gave up.
    Failed,
    /// The job stopped on request.
    Cancelled,
    /// An operator re-queued a finished job.
    Retried,
}

impl EventKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Claimed => "claimed",
            EventKind::StepDone => "step_done",
            EventKind::StepFailed => "step_failed",
            EventKind::RetryScheduled => "retry_scheduled",
            EventKind::Rescued => "rescued",
            EventKind::Released => "released",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
            EventKind::Retried => "retried",
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
    pub fn clear(&mut self) {
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

/// What a fenced transition changes on the job row.
pub(super) enum Change {
    /// Next step and its checkpoint; answers `cancel_requested`.
    Checkpoint { step: String, checkpoint: String },
    /// Back to an earlier step within the attempt.
    StepFailed { step: String, checkpoint: String },
    /// Queued again until `run_at_ms`.
    RetryLater { run_at_ms: i64, last_error: String },
    /// The instance exists.
    Succeed { result: String, checkpoint: String },
    /// Failed or cancelled.
    Finish {
        status: &'static str,
        last_error: Option<String>,
    },
    /// Queued again at once, uncharged.
    Release,
}

/// Transitions (and their events) per statement; a batch with more takes several.
const TRANSITIONS_PER_STATEMENT: usize = 64;
/// Values bound per event row and per transition row.
const EVENT_VALUES: usize = 8;
const TRANSITION_VALUES: usize = 12;

/// The fenced event insert. It runs before the update in the same statement list, so it sees
/// each job still `running` under the fence exactly when the update will change it; rows
/// for other jobs (lease lost, or padding with id -1) join nothing and are not inserted.
const EVENTS_SQL: &str = "WITH e(job_id, at, kind, step, attempt, duration_ms, error, http_status) \
     AS (VALUES {rows}) \
     INSERT INTO job_events (job_id, at, kind, step, attempt, duration_ms, error, http_status) \
     SELECT e.job_id, e.at, e.kind, e.step, e.attempt, e.duration_ms, e.error, e.http_status \
     FROM e JOIN jobs ON jobs.id = e.job_id AND jobs.attempt = e.attempt \
         AND jobs.status = 'running';";

/// Every kind of fenced change as one statement: a NULL in `v` leaves the column alone, a
/// new status ends the lease, a final status sets `finished_at`.
const TRANSITIONS_SQL: &str = "WITH v(id, attempt, now, status, step, checkpoint, result, run_at, \
         last_error, clear_error, uncharge, finished) AS (VALUES {rows}) \
     UPDATE jobs SET status = COALESCE(v.status, jobs.status), \
         step = COALESCE(v.step, jobs.step), \
         checkpoint = COALESCE(v.checkpoint, jobs.checkpoint), \
         result = COALESCE(v.result, jobs.result), \
         run_at = COALESCE(v.run_at, jobs.run_at), \
         last_error = CASE WHEN v.clear_error THEN NULL \
             ELSE COALESCE(v.last_error, jobs.last_error) END, \
         lease_owner = CASE WHEN v.status IS NULL THEN jobs.lease_owner END, \
         lease_expires_at = CASE WHEN v.status IS NULL THEN jobs.lease_expires_at END, \
         uncharged_attempts = jobs.uncharged_attempts + v.uncharge, \
         updated_at = v.now, \
         finished_at = CASE WHEN v.finished THEN v.now ELSE jobs.finished_at END \
     FROM v WHERE jobs.id = v.id AND jobs.attempt = v.attempt AND jobs.status = 'running' \
     RETURNING jobs.id AS changed_id, jobs.cancel_requested;";

/// One transition as the columns of `v` in [`TRANSITIONS_SQL`].
struct Columns<'a> {
    status: Option<&'a str>,
    step: Option<&'a str>,
    checkpoint: Option<&'a str>,
    result: Option<&'a str>,
    run_at: Option<i64>,
    last_error: Option<&'a str>,
    clear_error: bool,
    uncharge: i64,
    finished: bool,
}

impl<'a> Columns<'a> {
    fn of(request: &'a TransitionRequest) -> Self {
        let none = Columns {
            status: None,
            step: None,
            checkpoint: None,
            result: None,
            run_at: None,
            last_error: None,
            clear_error: false,
            uncharge: 0,
            finished: false,
        };
        match &request.change {
            Change::Checkpoint { step, checkpoint } | Change::StepFailed { step, checkpoint } => {
                Columns {
                    step: Some(step),
                    checkpoint: Some(checkpoint),
                    ..none
                }
            }
            Change::RetryLater {
                run_at_ms,
                last_error,
            } => Columns {
                status: Some("queued"),
                step: request.reached,
                run_at: Some(*run_at_ms),
                last_error: Some(last_error),
                ..none
            },
            Change::Succeed { result, checkpoint } => Columns {
                status: Some("succeeded"),
                step: Some("done"),
                checkpoint: Some(checkpoint),
                result: Some(result),
                clear_error: true,
                finished: true,
                ..none
            },
            Change::Finish { status, last_error } => Columns {
                status: Some(status),
                step: request.reached,
                last_error: last_error.as_deref(),
                finished: true,
                ..none
            },
            Change::Release => Columns {
                status: Some("queued"),
                step: request.reached,
                run_at: Some(request.now_ms),
                uncharge: 1,
                ..none
            },
        }
    }
}

/// The transitions of a batch, `TRANSITIONS_PER_STATEMENT` at a time.
pub(super) fn chunks<'a>(
    transitions: &'a [&'a TransitionRequest],
) -> impl Iterator<Item = &'a [&'a TransitionRequest]> {
    transitions.chunks(TRANSITIONS_PER_STATEMENT)
}

/// The writer's query; every statement in it uses positional `?` parameters.
pub(super) type Batch<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// The events insert followed by the update, two statements of the writer's one query. Row
/// counts are padded to powers of two with rows that match no job, so a handful of distinct
/// statements covers every batch and stays prepared.
pub(super) fn statement_sql(events: usize, updates: usize) -> String {
    let mut sql = String::new();
    if events > 0 {
        sql.push_str(&EVENTS_SQL.replace("{rows}", &placeholders(padded(events), EVENT_VALUES)));
    }
    if updates > 0 {
        sql.push_str(
            &TRANSITIONS_SQL.replace("{rows}", &placeholders(padded(updates), TRANSITION_VALUES)),
        );
    }
    sql
}

/// Binds the rows of [`statement_sql`], padding included.
pub(super) fn bind_rows<'q>(
    mut query: Batch<'q>,
    events: &[&'q EventRecord],
    updates: &[&'q TransitionRequest],
) -> Batch<'q> {
    let event_rows = padded(events.len());
    let update_rows = padded(updates.len());
    for index in 0..event_rows {
        query = match events.get(index) {
            Some(event) => query
                .bind(event.job_id)
                .bind(event.at)
                .bind(event.kind.as_str())
                .bind(event.step.as_deref())
                .bind(event.attempt)
                .bind(event.duration_ms)
                .bind(event.error.as_deref())
                .bind(event.http_status),
            None => bind_nulls(query.bind(PADDING_ID), EVENT_VALUES - 1),
        };
    }
    for index in 0..update_rows {
        query = match updates.get(index) {
            Some(request) => {
                let c = Columns::of(request);
                query
                    .bind(request.fence.id)
                    .bind(request.fence.attempt)
                    .bind(request.now_ms)
                    .bind(c.status)
                    .bind(c.step)
                    .bind(c.checkpoint)
                    .bind(c.result)
                    .bind(c.run_at)
                    .bind(c.last_error)
                    .bind(c.clear_error)
                    .bind(c.uncharge)
                    .bind(c.finished)
            }
            None => bind_nulls(query.bind(PADDING_ID), TRANSITION_VALUES - 1),
        };
    }
    query
}

/// The id of padding rows: no job has it.
const PADDING_ID: JobId = -1;

fn bind_nulls(mut query: Batch<'_>, count: usize) -> Batch<'_> {
    for _ in 0..count {
        query = query.bind(None::<i64>);
    }
    query
}

fn padded(count: usize) -> usize {
    if count == 0 {
        0
    } else {
        count.next_power_of_two()
    }
}

fn placeholders(rows: usize, values: usize) -> String {
    let row = format!("({})", vec!["?"; values].join(","));
    vec![row; rows].join(",")
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
        self.writer
            .transition(TransitionRequest {
                fence,
                change,
                events,
                reached: earlier.reached,
                now_ms,
            })
            .await
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
    pub async fn step_failed(
        &self,
        fence: Fence,
        earlier: &Unstored,
        failure: &Failure,
        next_step: &str,
        checkpoint_json: &str,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let event = EventRecord::failure(fence, EventKind::StepFailed, failure, now_ms);
        let change = Change::StepFailed {
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

    /// Finishes the job: the instance exists. `checkpoint_json` is the final step.
    pub async fn succeed(
        &self,
        fence: Fence,
        earlier: &Unstored,
        result_json: &str,
        checkpoint_json: &str,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let event = EventRecord::plain(fence, EventKind::Succeeded, now_ms);
        let change = Change::Succeed {
            result: result_json.to_owned(),
            checkpoint: checkpoint_json.to_owned(),
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
            status: "failed",
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
            status: "cancelled",
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
