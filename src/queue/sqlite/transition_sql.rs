//! The SQL of fenced transitions: one named statement per kind of change, and the fenced
//! insert of their events. The group-commit writer runs each statement once per batch for
//! all the batch's changes of its kind, one `VALUES` row per change.
//!
//! Every statement changes a job only under its fence: `id`, `attempt` and
//! `status = 'running'`. It returns the rows it changed, each named `'changed'`; a fence it
//! did not change lost its lease. Row counts are padded to a power of two with rows whose
//! id no job has (see [`PADDING_ID`]), so a handful of statement texts covers every batch
//! and they stay prepared: through sqlx, preparing costs more than the padding rows.

use super::{Batch, Change, EventRecord, JobId, TransitionRequest};
use crate::queue::Follow;

/// The id of a padding row: no job has it, so it joins nothing.
const PADDING_ID: JobId = -1;

/// The events of a batch, inserted before the changes and only for jobs still running under
/// the event's fence: so exactly the events of the changes that will be made go in.
const EVENTS_SQL: &str = "WITH e (job_id, at, kind, step, attempt, duration_ms, error, http_status) \
         AS (VALUES {rows}) \
     INSERT INTO job_events (job_id, at, kind, step, attempt, duration_ms, error, http_status) \
     SELECT e.job_id, e.at, e.kind, e.step, e.attempt, e.duration_ms, e.error, e.http_status \
     FROM e JOIN jobs ON jobs.id = e.job_id AND jobs.attempt = e.attempt \
         AND jobs.status = 'running';";

/// The outcome rows of succeeding jobs that follow their instance, inserted before the
/// changes and, like the events, only for jobs still running under the change's fence.
const FOLLOW_SQL: &str = "WITH f (id, attempt, now, instance_id, callback_url, first_check_at) \
         AS (VALUES {rows}) \
     INSERT INTO outcomes (job_id, instance_id, submitted_at, next_check_at, callback_url, \
         updated_at) \
     SELECT f.id, f.instance_id, f.now, f.first_check_at, f.callback_url, f.now \
     FROM f JOIN jobs ON jobs.id = f.id AND jobs.attempt = f.attempt \
         AND jobs.status = 'running' \
     WHERE f.instance_id IS NOT NULL \
     ON CONFLICT DO NOTHING;";

/// Values per follow row.
const FOLLOW_VALUES: usize = 6;

/// The job stores its next step; it keeps its lease.
const CHECKPOINT_SQL: &str = "WITH c (id, attempt, now, step, checkpoint) AS (VALUES {rows}) \
     UPDATE jobs SET step = c.step, checkpoint = c.checkpoint, updated_at = c.now \
     FROM c WHERE jobs.id = c.id AND jobs.attempt = c.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The job waits in the queue until `run_at`, at the step it reached (or the one stored).
const RETRY_LATER_SQL: &str = "WITH r (id, attempt, now, step, run_at, last_error) \
         AS (VALUES {rows}) \
     UPDATE jobs SET status = 'queued', step = COALESCE(r.step, jobs.step), run_at = r.run_at, \
         last_error = r.last_error, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = r.now \
     FROM r WHERE jobs.id = r.id AND jobs.attempt = r.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The approval instance exists: the job ends `succeeded` with its result.
const SUCCEED_SQL: &str = "WITH s (id, attempt, now, step, checkpoint, result) \
         AS (VALUES {rows}) \
     UPDATE jobs SET status = 'succeeded', step = s.step, checkpoint = s.checkpoint, \
         result = s.result, last_error = NULL, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = s.now, finished_at = s.now \
     FROM s WHERE jobs.id = s.id AND jobs.attempt = s.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The job ends `failed` or `cancelled` at the step it reached; a NULL `last_error` keeps the
/// one it had.
const FINISH_SQL: &str = "WITH f (id, attempt, now, status, step, last_error) \
         AS (VALUES {rows}) \
     UPDATE jobs SET status = f.status, step = COALESCE(f.step, jobs.step), \
         last_error = COALESCE(f.last_error, jobs.last_error), \
         lease_owner = NULL, lease_expires_at = NULL, updated_at = f.now, finished_at = f.now \
     FROM f WHERE jobs.id = f.id AND jobs.attempt = f.attempt AND jobs.status = 'running' \
     RETURNING 'changed', jobs.id, jobs.cancel_requested;";

/// The job goes back to the queue at once, at the step it reached, and this attempt is not
/// charged (the worker stopped, not the job).
const RELEASE_SQL: &str = "WITH r (id, attempt, now, step) AS (VALUES {rows}) \
     UPDATE jobs SET status = 'queued', step = COALESCE(r.step, jobs.step), run_at = r.now, \
         uncharged_attempts = jobs.uncharged_attempts + 1, \
         lease_owner = NULL, lease_expires_at = NULL, updated_at = r.now \
     FROM r WHERE jobs.id = r.id AND jobs.attempt = r.attempt AND jobs.status = 'running' \
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

    /// The statement and the values of one of its rows.
    fn sql(self) -> (&'static str, usize) {
        match self {
            Kind::Checkpoint => (CHECKPOINT_SQL, 5),
            Kind::RetryLater => (RETRY_LATER_SQL, 6),
            Kind::Succeed => (SUCCEED_SQL, 6),
            Kind::Finish => (FINISH_SQL, 6),
            Kind::Release => (RELEASE_SQL, 4),
        }
    }
}

/// Values per event row.
const EVENT_VALUES: usize = 8;

/// The statements of `transitions`, events first, as one SQL text to append to the batch;
/// bind them with [`bind`].
pub(super) fn statements_sql(transitions: &[&TransitionRequest]) -> String {
    let mut sql = String::new();
    if transitions.is_empty() {
        return sql;
    }
    let events: usize = transitions.iter().map(|r| r.events.len()).sum();
    sql.push_str(&EVENTS_SQL.replace("{rows}", &placeholders(padded(events), EVENT_VALUES)));
    let follows = follows(transitions).count();
    if follows > 0 {
        sql.push_str(&FOLLOW_SQL.replace("{rows}", &placeholders(padded(follows), FOLLOW_VALUES)));
    }
    for kind in Kind::ALL {
        let rows = of_kind(transitions, kind).count();
        if rows > 0 {
            let (statement, values) = kind.sql();
            sql.push_str(&statement.replace("{rows}", &placeholders(padded(rows), values)));
        }
    }
    sql
}

/// Binds the values of [`statements_sql`], padding rows included, in its order.
pub(super) fn bind<'q>(mut query: Batch<'q>, transitions: &[&'q TransitionRequest]) -> Batch<'q> {
    if transitions.is_empty() {
        return query;
    }
    let events: Vec<&EventRecord> = transitions.iter().flat_map(|r| &r.events).collect();
    for event in &events {
        query = query
            .bind(event.job_id)
            .bind(event.at)
            .bind(event.kind.as_str())
            .bind(event.step.as_deref())
            .bind(event.attempt)
            .bind(event.duration_ms)
            .bind(event.error.as_deref())
            .bind(event.http_status);
    }
    query = pad(query, events.len(), EVENT_VALUES);
    let mut follow_rows = 0;
    for (request, follow) in follows(transitions) {
        query = query
            .bind(request.fence.id)
            .bind(request.fence.attempt)
            .bind(request.now_ms)
            .bind(follow.instance_id.as_str())
            .bind(follow.callback_url.as_deref())
            .bind(follow.first_check_at);
        follow_rows += 1;
    }
    if follow_rows > 0 {
        query = pad(query, follow_rows, FOLLOW_VALUES);
    }
    for kind in Kind::ALL {
        let mut rows = 0;
        for request in of_kind(transitions, kind) {
            query = bind_row(query, request);
            rows += 1;
        }
        if rows > 0 {
            query = pad(query, rows, kind.sql().1);
        }
    }
    query
}

/// One change's row, in the order of its statement's columns.
fn bind_row<'q>(query: Batch<'q>, request: &'q TransitionRequest) -> Batch<'q> {
    let query = query
        .bind(request.fence.id)
        .bind(request.fence.attempt)
        .bind(request.now_ms);
    let reached = request.reached;
    match &request.change {
        Change::Checkpoint { step, checkpoint } => {
            query.bind(step.as_str()).bind(checkpoint.as_str())
        }
        Change::RetryLater {
            run_at_ms,
            last_error,
        } => query
            .bind(reached)
            .bind(*run_at_ms)
            .bind(last_error.as_str()),
        Change::Succeed {
            step,
            result,
            checkpoint,
            ..
        } => query
            .bind(step.as_str())
            .bind(checkpoint.as_str())
            .bind(result.as_str()),
        Change::Finish { status, last_error } => query
            .bind(status.as_str())
            .bind(reached)
            .bind(last_error.as_deref()),
        Change::Release => query.bind(reached),
    }
}

/// The succeeding changes that follow their instance, with what they follow.
fn follows<'a, 'q>(
    transitions: &'a [&'q TransitionRequest],
) -> impl Iterator<Item = (&'q TransitionRequest, &'q Follow)> + 'a {
    transitions
        .iter()
        .filter_map(|request| match &request.change {
            Change::Succeed {
                follow: Some(follow),
                ..
            } => Some((*request, follow)),
            _ => None,
        })
}

fn of_kind<'a, 'q>(
    transitions: &'a [&'q TransitionRequest],
    kind: Kind,
) -> impl Iterator<Item = &'q TransitionRequest> + 'a {
    transitions
        .iter()
        .copied()
        .filter(move |request| Kind::of(&request.change) == kind)
}

/// Binds padding rows after `rows` real ones: the padding id, then NULLs.
fn pad(mut query: Batch<'_>, rows: usize, values: usize) -> Batch<'_> {
    for _ in rows..padded(rows) {
        query = query.bind(PADDING_ID);
        for _ in 1..values {
            query = query.bind(None::<i64>);
        }
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
