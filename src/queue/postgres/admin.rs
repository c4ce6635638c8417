//! Reads and operator actions on PostgreSQL: list, show, history, retry, cancel, stats,
//! prune, and the depth and counts that health and metrics read.

use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use super::filter::{Scope, push_where};
use crate::queue::pause::PausedQueue;
use crate::queue::{Depth, EventRow, JobFilter, JobId, JobRow, JobStatus, QueueError, Stats};

/// A job's columns as [`JobRow`] reads them (JSON as text).
macro_rules! job_columns {
    () => {
        "id, idempotency_key, queue, priority, status, step, payload::text AS payload, \
         checkpoint::text AS checkpoint, attempt, uncharged_attempts, max_attempts, run_at, \
         lease_owner, lease_expires_at, last_error, result::text AS result, cancel_requested, \
         created_at, updated_at, finished_at, \
         (SELECT o.outcome FROM outcomes o WHERE o.job_id = jobs.id) AS outcome"
    };
}

const GET_SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");

const EVENTS_SQL: &str = "SELECT id, job_id, at, kind, step, attempt, duration_ms, error, \
     http_status FROM job_events WHERE job_id = $1 ORDER BY id";

/// `$1` job, `$2` now: a failed or cancelled job goes back to the queue with a fresh set of
/// attempts, and its `retried` event is recorded.
const RETRY_SQL: &str = "\
WITH retried AS (
    UPDATE jobs SET status = 'queued', run_at = $2, uncharged_attempts = attempt,
        cancel_requested = false, finished_at = NULL, updated_at = $2
    WHERE id = $1 AND status IN ('failed', 'cancelled')
    RETURNING id, attempt
), events AS (
    INSERT INTO job_events (job_id, at, kind, attempt)
    SELECT id, $2, 'retried', attempt FROM retried
)
SELECT id FROM retried";

/// `$1` job, `$2` now, `$3` the create step. A queued job not at the create step is
/// cancelled at once; a running one, or a queued one at the create step (a create may have
/// been sent, which only the worker's reconciliation can tell), is flagged. Returns the
/// status afterwards, and no row for a job in any other status.
const CANCEL_SQL: &str = "\
WITH target AS (
    SELECT id, status, step FROM jobs
    WHERE id = $1 AND status IN ('queued', 'running')
    FOR UPDATE
), cancelled AS (
    UPDATE jobs SET
        status = CASE WHEN target.status = 'queued' AND target.step <> $3
                      THEN 'cancelled' ELSE jobs.status END,
        finished_at = CASE WHEN target.status = 'queued' AND target.step <> $3
                           THEN $2 ELSE jobs.finished_at END,
        cancel_requested = true, updated_at = $2
    FROM target WHERE jobs.id = target.id
    RETURNING jobs.id, jobs.status
), events AS (
    INSERT INTO job_events (job_id, at, kind, error)
    SELECT id, $2, 'cancelled', 'cancelled while queued' FROM cancelled
    WHERE status = 'cancelled'
)
SELECT status FROM cancelled";

/// Jobs per status; each status walks its own partial index.
const STATUS_COUNTS_SQL: &str = "\
SELECT 'queued', count(*) FROM jobs WHERE status = 'queued'
UNION ALL SELECT 'running', count(*) FROM jobs WHERE status = 'running'
UNION ALL SELECT status, count(*) FROM jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY status";

/// Unfinished jobs per status and step.
const BY_STEP_SQL: &str = "\
SELECT status, step, count(*) FROM jobs WHERE status IN ('queued', 'running')
GROUP BY status, step ORDER BY 1, 2";

const OLDEST_QUEUED_SQL: &str = "SELECT id, created_at FROM jobs WHERE status = 'queued' \
     ORDER BY created_at, id LIMIT 1";

/// `$1` an hour ago: jobs succeeded and failed since.
const LAST_HOUR_SQL: &str = "\
SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed')
FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at >= $1";

/// `$1` queue, `$2` now.
const DEPTH_SQL: &str = "\
SELECT count(*), count(*) FILTER (WHERE run_at <= $2), min(run_at) FILTER (WHERE run_at <= $2),
       (SELECT count(*) FROM jobs WHERE status = 'running' AND queue = $1)
FROM jobs WHERE status = 'queued' AND queue = $1";

/// Which jobs `prune` takes: `$1` finished before, `$2` the statuses. The job with the
/// highest id stays (its id must never be handed out again; the sequence does not, but the
/// SQLite store's numbering does, and a queue moved between them keeps its ids). A job whose
/// approval is still undecided, or whose decision is still to be delivered, stays too.
macro_rules! prunable {
    () => {
        "status IN ('succeeded', 'failed', 'cancelled') AND status = ANY($2) \
         AND finished_at < $1 AND id < (SELECT max(id) FROM jobs) \
         AND NOT EXISTS (SELECT 1 FROM outcomes o \
                         WHERE o.job_id = jobs.id AND o.outcome = 'pending') \
         AND NOT EXISTS (SELECT 1 FROM outcome_deliveries d \
                         WHERE d.job_id = jobs.id AND d.status = 'pending')"
    };
}

const PRUNE_SQL: &str = concat!("DELETE FROM jobs WHERE ", prunable!());
const PRUNE_COUNT_SQL: &str = concat!("SELECT count(*) FROM jobs WHERE ", prunable!());

impl PgStore {
    /// Jobs matching `filter`, newest first, from its `before_id` on.
    pub(in crate::queue) async fn list(
        &self,
        filter: &JobFilter,
    ) -> Result<Vec<JobRow>, QueueError> {
        let mut sql =
            QueryBuilder::<Postgres>::new(concat!("SELECT ", job_columns!(), " FROM jobs"));
        push_where(&mut sql, filter, Scope::All, true);
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }

    /// One job.
    pub(in crate::queue) async fn get(&self, id: JobId) -> Result<JobRow, QueueError> {
        sqlx::query_as(GET_SQL)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(QueueError::NotFound(id))
    }

    /// A job's history, oldest first.
    pub(in crate::queue) async fn events(&self, id: JobId) -> Result<Vec<EventRow>, QueueError> {
        Ok(sqlx::query_as(EVENTS_SQL)
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Re-queues a failed or cancelled job.
    pub(in crate::queue) async fn retry(&self, id: JobId, now_ms: i64) -> Result<(), QueueError> {
        let retried: Option<JobId> = sqlx::query_scalar(RETRY_SQL)
            .bind(id)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        self.count_commit();
        if retried.is_some() {
            return Ok(());
        }
        let job = self.get(id).await?;
        Err(QueueError::WrongStatus {
            id,
            status: job.status,
            reason: "only failed or cancelled jobs can be retried",
        })
    }

    /// Cancels a queued job, or flags a running one (or a queued one at `create_step`).
    pub(in crate::queue) async fn cancel(
        &self,
        id: JobId,
        create_step: &str,
        now_ms: i64,
    ) -> Result<JobStatus, QueueError> {
        let status: Option<String> = sqlx::query_scalar(CANCEL_SQL)
            .bind(id)
            .bind(now_ms)
            .bind(create_step)
            .fetch_optional(&self.pool)
            .await?;
        self.count_commit();
        match status.as_deref() {
            Some("cancelled") => Ok(JobStatus::Cancelled),
            Some("running") => Ok(JobStatus::Running),
            Some(_) => Ok(JobStatus::Queued),
            None => {
                let job = self.get(id).await?;
                Err(QueueError::WrongStatus {
                    id,
                    status: job.status,
                    reason: "only queued or running jobs can be cancelled",
                })
            }
        }
    }

    /// Counts for `stats`.
    pub(in crate::queue) async fn stats(&self, now_ms: i64) -> Result<Stats, QueueError> {
        let mut by_status = self.status_counts().await?;
        by_status.retain(|(_, jobs)| *jobs > 0);
        by_status.sort();
        let by_step: Vec<(String, String, i64)> =
            sqlx::query_as(BY_STEP_SQL).fetch_all(&self.pool).await?;
        let oldest: Option<(JobId, i64)> = sqlx::query_as(OLDEST_QUEUED_SQL)
            .fetch_optional(&self.pool)
            .await?;
        let (succeeded_last_hour, failed_last_hour): (i64, i64) = sqlx::query_as(LAST_HOUR_SQL)
            .bind(now_ms - 3_600_000)
            .fetch_one(&self.pool)
            .await?;
        Ok(Stats {
            by_status,
            by_step,
            oldest_queued_at: oldest.map(|(_, at)| at),
            oldest_queued_id: oldest.map(|(id, _)| id),
            succeeded_last_hour,
            failed_last_hour,
        })
    }

    /// Deletes (or with `dry_run` counts) finished jobs of `statuses` finished before
    /// `before_ms`, keeping the highest id.
    pub(in crate::queue) async fn prune(
        &self,
        before_ms: i64,
        statuses: &[&str],
        dry_run: bool,
    ) -> Result<u64, QueueError> {
        if dry_run {
            let count: i64 = sqlx::query_scalar(PRUNE_COUNT_SQL)
                .bind(before_ms)
                .bind(statuses)
                .fetch_one(&self.pool)
                .await?;
            return Ok(u64::try_from(count).unwrap_or(0));
        }
        let done = sqlx::query(PRUNE_SQL)
            .bind(before_ms)
            .bind(statuses)
            .execute(&self.pool)
            .await?;
        self.count_commit();
        Ok(done.rows_affected())
    }

    /// The depth of `queue` at `now_ms`.
    pub(in crate::queue) async fn depth(
        &self,
        queue: &str,
        now_ms: i64,
    ) -> Result<Depth, QueueError> {
        let (queued, due, oldest_due_at, running): (i64, i64, Option<i64>, i64) =
            sqlx::query_as(DEPTH_SQL)
                .bind(queue)
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await?;
        Ok(Depth {
            queued,
            due,
            oldest_due_at,
            running,
        })
    }

    /// Jobs per status, all queues; a finished status with no jobs may be missing.
    pub(in crate::queue) async fn status_counts(&self) -> Result<Vec<(String, i64)>, QueueError> {
        Ok(sqlx::query_as(STATUS_COUNTS_SQL)
            .fetch_all(&self.pool)
            .await?)
    }
}

/// `$1` queue, `$2` now, `$3` reason: a queue paused twice keeps its first pause.
const PAUSE_SQL: &str = "INSERT INTO queue_pauses (queue, paused_at, reason) VALUES ($1, $2, $3) \
     ON CONFLICT (queue) DO NOTHING";

const RESUME_SQL: &str = "DELETE FROM queue_pauses WHERE queue = $1";

const PAUSED_SQL: &str = "SELECT queue, paused_at, reason FROM queue_pauses ORDER BY queue";

impl PgStore {
    pub(in crate::queue) async fn pause(
        &self,
        queue: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let done = sqlx::query(PAUSE_SQL)
            .bind(queue)
            .bind(now_ms)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::queue) async fn resume(&self, queue: &str) -> Result<bool, QueueError> {
        let done = sqlx::query(RESUME_SQL)
            .bind(queue)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::queue) async fn paused(&self) -> Result<Vec<PausedQueue>, QueueError> {
        Ok(sqlx::query_as(PAUSED_SQL).fetch_all(&self.pool).await?)
    }
}
