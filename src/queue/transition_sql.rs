//! The SQL of fenced transitions: one named statement per kind of change, and the fenced
//! insert of their events. The group-commit writer runs each statement once per batch for
//! all the batch's changes of its kind, their rows bound as one JSON array (`json_each`), so
//! the statement text is the same whatever the batch holds and stays prepared.
//!
//! Every statement changes a job only under its fence: `id`, `attempt` and
//! `status = 'running'`. It returns the rows it changed (see [`Returned`]); a fence it did
//! not change lost its lease.

use serde::Serialize;

use super::transition::{Change, EventRecord};
use super::writer::TransitionRequest;
use super::{JobId, JobStatus};

/// The events of a batch, inserted before the changes and only for jobs still running under
/// the event's fence: so exactly the events of the changes that will be made go in.
/// Rows: `[job_id, at, kind, step, attempt, duration_ms, error, http_status]`.
const EVENTS_SQL: &str = "INSERT INTO job_events \
         (job_id, at, kind, step, attempt, duration_ms, error, http_status) \
     SELECT e.job_id, e.at, e.kind, e.step, e.attempt, e.duration_ms, e.error, e.http_status \
     FROM (SELECT value ->> 0 AS job_id, value ->> 1 AS at, value ->> 2 AS kind, \
                  value ->> 3 AS step, value ->> 4 AS attempt, value ->> 5 AS duration_ms, \
                  value ->> 6 AS error, value ->> 7 AS http_status \
           FROM json_each(?)) AS e \
     JOIN jobs ON jobs.id = e.job_id AND jobs.attempt = e.attempt AND jobs.status = 'running';";

/// The job stores its next step; it keeps its lease. Rows: `[id, attempt, now, step,
/// checkpoint]`.
const CHECKPOINT_SQL: &str = "UPDATE jobs \
     SET step = c.step, checkpoint = c.checkpoint, updated_at = c.now \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS now, \
                  value ->> 3 AS step, value ->> 4 AS checkpoint \
           FROM json_each(?)) AS c \
     WHERE jobs.id = c.id AND jobs.attempt = c.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The job waits in the queue until `run_at`, at the step it reached (or the one stored).
/// Rows: `[id, attempt, now, step, run_at, last_error]`.
const RETRY_LATER_SQL: &str = "UPDATE jobs \
     SET status = 'queued', step = COALESCE(r.step, jobs.step), run_at = r.run_at, \
         last_error = r.last_error, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = r.now \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS now, \
                  value ->> 3 AS step, value ->> 4 AS run_at, value ->> 5 AS last_error \
           FROM json_each(?)) AS r \
     WHERE jobs.id = r.id AND jobs.attempt = r.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The approval instance exists: the job ends `succeeded` with its result. Rows: `[id,
/// attempt, now, step, checkpoint, result]`.
const SUCCEED_SQL: &str = "UPDATE jobs \
     SET status = 'succeeded', step = s.step, checkpoint = s.checkpoint, result = s.result, \
         last_error = NULL, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = s.now, finished_at = s.now \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS now, \
                  value ->> 3 AS step, value ->> 4 AS checkpoint, value ->> 5 AS result \
           FROM json_each(?)) AS s \
     WHERE jobs.id = s.id AND jobs.attempt = s.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The job ends `failed` or `cancelled` at the step it reached; a NULL `last_error` keeps the
/// one it had. Rows: `[id, attempt, now, status, step, last_error]`.
const FINISH_SQL: &str = "UPDATE jobs \
     SET status = f.status, step = COALESCE(f.step, jobs.step), \
         last_error = COALESCE(f.last_error, jobs.last_error), \
         lease_owner = NULL, lease_expires_at = NULL, updated_at = f.now, finished_at = f.now \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS now, \
                  value ->> 3 AS status, value ->> 4 AS step, value ->> 5 AS last_error \
           FROM json_each(?)) AS f \
     WHERE jobs.id = f.id AND jobs.attempt = f.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The job goes back to the queue at once, at the step it reached, and this attempt is not
/// charged (the worker stopped, not the job). Rows: `[id, attempt, now, step]`.
const RELEASE_SQL: &str = "UPDATE jobs \
     SET status = 'queued', step = COALESCE(r.step, jobs.step), run_at = r.now, \
         uncharged_attempts = jobs.uncharged_attempts + 1, \
         lease_owner = NULL, lease_expires_at = NULL, updated_at = r.now \
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS now, \
                  value ->> 3 AS step \
           FROM json_each(?)) AS r \
     WHERE jobs.id = r.id AND jobs.attempt = r.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The kinds of change, each with its statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Checkpoint,
    RetryLater,
    Succeed,
    Finish,
    Release,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Checkpoint,
        Kind::RetryLater,
        Kind::Succeed,
        Kind::Finish,
        Kind::Release,
    ];

    fn of(change: &Change) -> Kind {
        match change {
            Change::Checkpoint { .. } => Kind::Checkpoint,
            Change::RetryLater { .. } => Kind::RetryLater,
            Change::Succeed { .. } => Kind::Succeed,
            Change::Finish { .. } => Kind::Finish,
            Change::Release => Kind::Release,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Kind::Checkpoint => CHECKPOINT_SQL,
            Kind::RetryLater => RETRY_LATER_SQL,
            Kind::Succeed => SUCCEED_SQL,
            Kind::Finish => FINISH_SQL,
            Kind::Release => RELEASE_SQL,
        }
    }
}

/// One row of a change's statement, in the order its `value ->> N` columns read.
#[derive(Serialize)]
#[serde(untagged)]
enum Row<'a> {
    Checkpoint(JobId, i64, i64, &'a str, &'a str),
    RetryLater(JobId, i64, i64, Option<&'a str>, i64, &'a str),
    Succeed(JobId, i64, i64, &'a str, &'a str, &'a str),
    Finish(JobId, i64, i64, &'a str, Option<&'a str>, Option<&'a str>),
    Release(JobId, i64, i64, Option<&'a str>),
}

fn row(request: &TransitionRequest) -> Row<'_> {
    let (id, attempt, now) = (request.fence.id, request.fence.attempt, request.now_ms);
    let reached = request.reached;
    match &request.change {
        Change::Checkpoint { step, checkpoint } => {
            Row::Checkpoint(id, attempt, now, step, checkpoint)
        }
        Change::RetryLater {
            run_at_ms,
            last_error,
        } => Row::RetryLater(id, attempt, now, reached, *run_at_ms, last_error),
        Change::Succeed {
            step,
            result,
            checkpoint,
        } => Row::Succeed(id, attempt, now, step, checkpoint, result),
        Change::Finish { status, last_error } => Row::Finish(
            id,
            attempt,
            now,
            JobStatus::as_str(*status),
            reached,
            last_error.as_deref(),
        ),
        Change::Release => Row::Release(id, attempt, now, reached),
    }
}

/// An event row as [`EVENTS_SQL`] reads it.
#[derive(Serialize)]
struct EventRow<'a>(
    JobId,
    i64,
    &'a str,
    Option<&'a str>,
    i64,
    Option<i64>,
    Option<&'a str>,
    Option<u16>,
);

impl<'a> From<&'a EventRecord> for EventRow<'a> {
    fn from(e: &'a EventRecord) -> Self {
        EventRow(
            e.job_id,
            e.at,
            e.kind.as_str(),
            e.step.as_deref(),
            e.attempt,
            e.duration_ms,
            e.error.as_deref(),
            e.http_status,
        )
    }
}

/// The statements for `transitions` (events first), each with its one JSON parameter, to be
/// appended to the writer's batch.
pub(super) fn statements(transitions: &[&TransitionRequest]) -> Vec<(&'static str, String)> {
    if transitions.is_empty() {
        return Vec::new();
    }
    let events: Vec<EventRow<'_>> = transitions
        .iter()
        .flat_map(|request| request.events.iter().map(EventRow::from))
        .collect();
    let mut statements = vec![(EVENTS_SQL, json(&events))];
    for kind in Kind::ALL {
        let rows: Vec<Row<'_>> = transitions
            .iter()
            .filter(|request| Kind::of(&request.change) == kind)
            .map(|request| row(request))
            .collect();
        if !rows.is_empty() {
            statements.push((kind.sql(), json(&rows)));
        }
    }
    statements
}

fn json<T: Serialize>(rows: &[T]) -> String {
    // Tuples of numbers, strings and options: serializing them cannot fail.
    serde_json::to_string(rows).unwrap_or_else(|_| "[]".to_owned())
}
