//! Reads and operator actions for the command line: list, show, history, retry, cancel,
//! stats and prune.

use sqlx::{QueryBuilder, Sqlite};

use super::filter::{Scope, push_where};
use super::text::Lossy;
use super::{EventRow, JobFilter, JobId, JobRow, JobStatus, QueueError, SqliteStore, Stats, tx};
use crate::queue::pause::PausedQueue;

const JOB_COLUMNS: &str = "id, idempotency_key, queue, priority, status, step, payload, checkpoint, \
     attempt, uncharged_attempts, max_attempts, run_at, lease_owner, lease_expires_at, \
     last_error, result, cancel_requested, created_at, updated_at, finished_at, \
     (SELECT o.outcome FROM outcomes o WHERE o.job_id = jobs.id) AS outcome";

impl SqliteStore {
    /// Jobs matching `filter`, newest first, from its `before_id` on.
    pub(in crate::queue) async fn list(
        &self,
        filter: &JobFilter,
    ) -> Result<Vec<JobRow>, QueueError> {
        let mut sql = QueryBuilder::<Sqlite>::new(format!("SELECT {JOB_COLUMNS} FROM jobs"));
        push_where(&mut sql, filter, Scope::All, true);
        // Running jobs are few and jobs_lease holds them: `+id` keeps SQLite from walking
        // every job by id for a page of them, so it reads that index and sorts what it finds.
        let order = if filter.status == Some(JobStatus::Running) {
            " ORDER BY +id DESC LIMIT "
        } else {
            " ORDER BY id DESC LIMIT "
        };
        sql.push(order).push_bind(filter.limit);
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }

    /// One job.
    pub(in crate::queue) async fn get(&self, id: JobId) -> Result<JobRow, QueueError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
        sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(QueueError::NotFound(id))
    }

    /// A job's history, oldest first.
    pub(in crate::queue) async fn events(&self, id: JobId) -> Result<Vec<EventRow>, QueueError> {
        Ok(sqlx::query_as(
            "SELECT id, job_id, at, kind, step, attempt, duration_ms, error, http_status \
             FROM job_events WHERE job_id = ?1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Re-queues a failed or cancelled job at its checkpoint with a fresh set of attempts.
    pub(in crate::queue) async fn retry(&self, id: JobId, now_ms: i64) -> Result<(), QueueError> {
        let retried = tx::immediate(&self.pool, async |conn| {
            let attempt: Option<i64> = sqlx::query_scalar(
                "UPDATE jobs SET status = 'queued', run_at = ?1, uncharged_attempts = attempt, \
                     cancel_requested = 0, finished_at = NULL, updated_at = ?1 \
                 WHERE id = ?2 AND status IN ('failed', 'cancelled') \
                 RETURNING attempt",
            )
            .bind(now_ms)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(attempt) = attempt {
                sqlx::query(
                    "INSERT INTO job_events (job_id, at, kind, attempt) \
                     VALUES (?1, ?2, 'retried', ?3)",
                )
                .bind(id)
                .bind(now_ms)
                .bind(attempt)
                .execute(&mut *conn)
                .await?;
            }
            Ok(attempt.is_some())
        })
        .await?;
        if retried {
            return Ok(());
        }
        let job = self.get(id).await?;
        Err(QueueError::WrongStatus {
            id,
            status: job.status,
            reason: "only failed or cancelled jobs can be retried",
        })
    }

    /// Cancels a queued job at once, or asks a running one to stop at its next checkpoint.
    /// A queued job stored at `create_step` (a create may have been sent) is flagged and stays
    /// queued: the worker reconciles, then adopts the instance or cancels. Returns the status
    /// afterwards.
    pub(in crate::queue) async fn cancel(
        &self,
        id: JobId,
        create_step: &str,
        now_ms: i64,
    ) -> Result<JobStatus, QueueError> {
        let status = tx::immediate(&self.pool, async |conn| {
            // A queued job at the create step may have sent a create whose answer was lost:
            // only the worker's reconciliation can tell, so it is flagged like a running job,
            // not stopped.
            let queued = sqlx::query(
                "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, updated_at = ?1, \
                     finished_at = ?1 \
                 WHERE id = ?2 AND status = 'queued' AND step <> ?3",
            )
            .bind(now_ms)
            .bind(id)
            .bind(create_step)
            .execute(&mut *conn)
            .await?;
            if queued.rows_affected() == 1 {
                sqlx::query(
                    "INSERT INTO job_events (job_id, at, kind, error) \
                     VALUES (?1, ?2, 'cancelled', 'cancelled while queued')",
                )
                .bind(id)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
                return Ok(Some(JobStatus::Cancelled));
            }
            let flagged: Option<String> = sqlx::query_scalar(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ?1 \
                 WHERE id = ?2 AND status IN ('running', 'queued') \
                 RETURNING status",
            )
            .bind(now_ms)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            Ok(flagged.map(|status| match status.as_str() {
                "running" => JobStatus::Running,
                _ => JobStatus::Queued,
            }))
        })
        .await?;
        if let Some(status) = status {
            return Ok(status);
        }
        let job = self.get(id).await?;
        Err(QueueError::WrongStatus {
            id,
            status: job.status,
            reason: "only queued or running jobs can be cancelled",
        })
    }

    /// Counts for `stats`.
    pub(in crate::queue) async fn stats(&self, now_ms: i64) -> Result<Stats, QueueError> {
        let mut by_status = self.status_counts().await?;
        by_status.retain(|(_, jobs)| *jobs > 0);
        by_status.sort();
        // One query per status, so each walks its own partial index (jobs_due, jobs_lease).
        let by_step: Vec<(String, Lossy, i64)> = sqlx::query_as(
            "SELECT 'queued', step, COUNT(*) FROM jobs WHERE status = 'queued' GROUP BY step \
             UNION ALL \
             SELECT 'running', step, COUNT(*) FROM jobs WHERE status = 'running' GROUP BY step \
             ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        let by_step = by_step
            .into_iter()
            .map(|(status, step, jobs)| (status, Option::from(step).unwrap_or_default(), jobs))
            .collect();
        let oldest: Option<(JobId, i64)> = sqlx::query_as(
            "SELECT id, created_at FROM jobs WHERE status = 'queued' \
             ORDER BY created_at, id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        // The index's own WHERE term first, so SQLite walks jobs_finished from the hour's start.
        let (succeeded_last_hour, failed_last_hour): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(status = 'succeeded'), 0), COALESCE(SUM(status = 'failed'), 0) \
             FROM jobs WHERE (status = 'succeeded' OR status = 'failed' OR status = 'cancelled') \
               AND status <> 'cancelled' AND finished_at >= ?1",
        )
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

    /// Deletes finished jobs of `statuses` that finished before `before_ms`, keeping the
    /// highest id; with `dry_run` only counts them.
    pub(in crate::queue) async fn prune(
        &self,
        before_ms: i64,
        statuses: &[&str],
        dry_run: bool,
    ) -> Result<u64, QueueError> {
        let statuses = serde_json::to_string(statuses).unwrap_or_else(|_| "[]".to_owned());
        if dry_run {
            let count: i64 = sqlx::query_scalar(PRUNE_COUNT_SQL)
                .bind(before_ms)
                .bind(&statuses)
                .fetch_one(&self.pool)
                .await?;
            return Ok(u64::try_from(count).unwrap_or(0));
        }
        let done = sqlx::query(PRUNE_SQL)
            .bind(before_ms)
            .bind(&statuses)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Which jobs `prune` takes: `?1` finished before, `?2` the statuses as a JSON array. The
/// first term is `jobs_finished`'s own condition, so SQLite walks that index. A job whose
/// approval is still undecided, or whose decision is still to be delivered, stays.
macro_rules! prunable {
    () => {
        "(status = 'succeeded' OR status = 'failed' OR status = 'cancelled') \
         AND status IN (SELECT value FROM json_each(?2)) AND finished_at < ?1 \
         AND id < (SELECT MAX(id) FROM jobs) \
         AND NOT EXISTS (SELECT 1 FROM outcomes o \
                         WHERE o.job_id = jobs.id AND o.outcome = 'pending') \
         AND NOT EXISTS (SELECT 1 FROM outcome_deliveries d \
                         WHERE d.job_id = jobs.id AND d.status = 'pending')"
    };
}

const PRUNE_SQL: &str = concat!("DELETE FROM jobs WHERE ", prunable!());
const PRUNE_COUNT_SQL: &str = concat!("SELECT COUNT(*) FROM jobs WHERE ", prunable!());

/// `?1` queue, `?2` now, `?3` reason: a queue paused twice keeps its first pause.
const PAUSE_SQL: &str = "INSERT INTO queue_pauses (queue, paused_at, reason) VALUES (?1, ?2, ?3) \
     ON CONFLICT (queue) DO NOTHING";

const RESUME_SQL: &str = "DELETE FROM queue_pauses WHERE queue = ?1";

const PAUSED_SQL: &str = "SELECT queue, paused_at, reason FROM queue_pauses ORDER BY queue";

impl SqliteStore {
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
