//! Fenced transitions on PostgreSQL: one statement per kind of change, which updates the job
//! under its fence and inserts the events recording it only if the job changed.
//!
//! Each statement's first three parameters are the fence and the time (`$1` id, `$2`
//! attempt, `$3` now), `$4`…`$9` the events as parallel arrays (at, kind, step, duration,
//! error, HTTP status; see [`EVENTS`]), and from `$10` on the change's own values. It
//! returns `cancel_requested` when the job changed, and no row when the fence failed.

use super::PgStore;
use crate::queue::transition::{Change, EventRecord, TransitionRequest};
use crate::queue::{QueueError, lease_lost};

/// The tail every statement shares: the events of the change, in their order, for the job
/// the `changed` part updated (none when it updated nothing), then `$more`: further
/// statements on that row, each as `, name AS (…)`.
macro_rules! with_events {
    ($change:literal) => {
        with_events!($change, "")
    };
    ($change:literal, $more:literal) => {
        concat!(
            "WITH changed AS (",
            $change,
            " WHERE jobs.id = $1 AND jobs.attempt = $2 AND jobs.status = 'running'
  RETURNING jobs.id, jobs.attempt, jobs.cancel_requested
), events AS (
    INSERT INTO job_events (job_id, at, kind, step, attempt, duration_ms, error, http_status)
    SELECT changed.id, e.at, e.kind, e.step, changed.attempt, e.duration_ms, e.error,
           e.http_status
    FROM changed,
         unnest($4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::bigint[])
             WITH ORDINALITY AS e (at, kind, step, duration_ms, error, http_status, n)
    ORDER BY e.n
)",
            $more,
            "
SELECT cancel_requested FROM changed"
        )
    };
}

/// The job stores its next step (`$10`) and checkpoint (`$11`); it keeps its lease.
const CHECKPOINT_SQL: &str =
    with_events!("UPDATE jobs SET step = $10, checkpoint = $11::jsonb, updated_at = $3");

/// The job waits in the queue until `$11`, at the step it reached (`$10`, or the one
/// stored), with `$12` as its last error.
const RETRY_LATER_SQL: &str = with_events!(
    "UPDATE jobs SET status = 'queued', step = COALESCE($10, jobs.step), run_at = $11,
        last_error = $12, lease_owner = NULL, lease_expires_at = NULL, updated_at = $3"
);

/// The approval instance exists: the job ends `succeeded` at step `$10` with checkpoint
/// `$11` and result `$12`; when `$13` names the instance, its outcome row goes in too,
/// pending, with the job's callback URL `$14` and its first read due at `$15`.
const SUCCEED_SQL: &str = with_events!(
    "UPDATE jobs SET status = 'succeeded', step = $10, checkpoint = $11::jsonb,
        result = $12::jsonb, last_error = NULL, lease_owner = NULL, lease_expires_at = NULL,
        updated_at = $3, finished_at = $3",
    ", followed AS (
    INSERT INTO outcomes (job_id, instance_id, submitted_at, next_check_at, callback_url,
                          updated_at)
    SELECT changed.id, $13, $3, $15, $14, $3 FROM changed WHERE $13::text IS NOT NULL
    ON CONFLICT DO NOTHING
)"
);

/// The job ends with status `$11` (failed or cancelled) at the step it reached (`$10`); a
/// NULL `$12` keeps the last error it had.
const FINISH_SQL: &str = with_events!(
    "UPDATE jobs SET status = $11, step = COALESCE($10, jobs.step),
        last_error = COALESCE($12, jobs.last_error), lease_owner = NULL,
        lease_expires_at = NULL, updated_at = $3, finished_at = $3"
);

/// The job goes back to the queue at once at the step it reached (`$10`), and this attempt
/// is not charged (the worker stopped, not the job).
const RELEASE_SQL: &str = with_events!(
    "UPDATE jobs SET status = 'queued', step = COALESCE($10, jobs.step), run_at = $3,
        uncharged_attempts = jobs.uncharged_attempts + 1, lease_owner = NULL,
        lease_expires_at = NULL, updated_at = $3"
);

/// The events of a transition as the parallel arrays `$4`…`$9` bind.
#[derive(Default)]
struct Events {
    at: Vec<i64>,
    kind: Vec<&'static str>,
    step: Vec<Option<String>>,
    duration_ms: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    http_status: Vec<Option<i64>>,
}

impl Events {
    fn of(records: &[EventRecord]) -> Events {
        let mut events = Events::default();
        for record in records {
            events.at.push(record.at);
            events.kind.push(record.kind.as_str());
            events.step.push(record.step.clone());
            events.duration_ms.push(record.duration_ms);
            events.error.push(record.error.clone());
            events.http_status.push(record.http_status.map(i64::from));
        }
        events
    }
}

impl PgStore {
    /// Writes `request` in one statement. `Ok(cancel_requested)`, or
    /// [`QueueError::LeaseLost`] when the fence no longer holds.
    pub(in crate::queue) async fn transition(
        &self,
        request: TransitionRequest,
    ) -> Result<bool, QueueError> {
        let TransitionRequest {
            fence,
            change,
            events,
            reached,
            now_ms,
        } = request;
        let events = Events::of(&events);
        let sql = match &change {
            Change::Checkpoint { .. } => CHECKPOINT_SQL,
            Change::RetryLater { .. } => RETRY_LATER_SQL,
            Change::Succeed { .. } => SUCCEED_SQL,
            Change::Finish { .. } => FINISH_SQL,
            Change::Release => RELEASE_SQL,
        };
        let query = sqlx::query_scalar::<_, bool>(sql)
            .bind(fence.id)
            .bind(fence.attempt)
            .bind(now_ms)
            .bind(&events.at)
            .bind(&events.kind)
            .bind(&events.step)
            .bind(&events.duration_ms)
            .bind(&events.error)
            .bind(&events.http_status);
        let query = match change {
            Change::Checkpoint { step, checkpoint } => query.bind(step).bind(checkpoint),
            Change::RetryLater {
                run_at_ms,
                last_error,
            } => query.bind(reached).bind(run_at_ms).bind(last_error),
            Change::Succeed {
                step,
                result,
                checkpoint,
                follow,
            } => {
                let (instance_id, callback_url, first_check_at) = match follow {
                    Some(f) => (Some(f.instance_id), f.callback_url, Some(f.first_check_at)),
                    None => (None, None, None),
                };
                query
                    .bind(step)
                    .bind(checkpoint)
                    .bind(result)
                    .bind(instance_id)
                    .bind(callback_url)
                    .bind(first_check_at)
            }
            Change::Finish { status, last_error } => {
                query.bind(reached).bind(status.as_str()).bind(last_error)
            }
            Change::Release => query.bind(reached),
        };
        let cancel_requested = query.fetch_optional(&self.pool).await?;
        self.count_commit();
        cancel_requested.ok_or_else(|| lease_lost(fence))
    }
}
