//! The overview's reads on SQLite: jobs per queue and jobs finished per time bucket.

use super::{QueueError, SqliteStore};
use crate::queue::text::Lossy;

/// `?1` now: per queue, queued jobs (and how many are due), running jobs and failed jobs.
/// Each arm walks a partial index: jobs_due, jobs_lease, jobs_stopped (whose condition the
/// last arm carries, as SQLite needs).
const QUEUE_COUNTS_SQL: &str = "\
SELECT queue, 'queued', COUNT(*), COALESCE(SUM(run_at <= ?1), 0)
FROM jobs WHERE status = 'queued' GROUP BY queue
UNION ALL
SELECT queue, 'running', COUNT(*), 0 FROM jobs WHERE status = 'running' GROUP BY queue
UNION ALL
SELECT queue, 'failed', COUNT(*), 0 FROM jobs
WHERE (status = 'failed' OR status = 'cancelled') AND status = 'failed' GROUP BY queue";

/// `?1` from, `?2` bucket length: jobs succeeded and failed since `?1`, per bucket. The
/// first term is jobs_finished's own condition, so SQLite walks that index from `?1`.
const FINISHED_PER_BUCKET_SQL: &str = "\
SELECT status, (finished_at - ?1) / ?2, COUNT(*) FROM jobs
WHERE (status = 'succeeded' OR status = 'failed' OR status = 'cancelled')
  AND status <> 'cancelled' AND finished_at >= ?1
GROUP BY 1, 2";

impl SqliteStore {
    /// `(queue, status, jobs, due)` rows; see [`QUEUE_COUNTS_SQL`].
    pub(in crate::queue) async fn queue_counts(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(Lossy, String, i64, i64)>, QueueError> {
        Ok(sqlx::query_as(QUEUE_COUNTS_SQL)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?)
    }

    /// `(status, bucket, jobs)` rows; see [`FINISHED_PER_BUCKET_SQL`].
    pub(in crate::queue) async fn finished_per_bucket(
        &self,
        from_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(String, i64, i64)>, QueueError> {
        Ok(sqlx::query_as(FINISHED_PER_BUCKET_SQL)
            .bind(from_ms)
            .bind(bucket_ms)
            .fetch_all(&self.pool)
            .await?)
    }
}
