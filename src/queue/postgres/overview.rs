//! The overview's reads on PostgreSQL: jobs per queue and jobs finished per time bucket.

use super::PgStore;
use crate::queue::QueueError;
use crate::queue::text::Lossy;

/// `$1` now: per queue, queued jobs (and how many are due), running jobs and failed jobs,
/// each through its partial index (jobs_due, jobs_lease, jobs_stopped).
const QUEUE_COUNTS_SQL: &str = "\
SELECT queue, 'queued', count(*), count(*) FILTER (WHERE run_at <= $1)
FROM jobs WHERE status = 'queued' GROUP BY queue
UNION ALL
SELECT queue, 'running', count(*), 0 FROM jobs WHERE status = 'running' GROUP BY queue
UNION ALL
SELECT queue, 'failed', count(*), 0 FROM jobs
WHERE status IN ('failed', 'cancelled') AND status = 'failed' GROUP BY queue";

/// `$1` from, `$2` bucket length: jobs succeeded and failed since `$1`, per bucket, through
/// jobs_finished.
const FINISHED_PER_BUCKET_SQL: &str = "\
SELECT status, (finished_at - $1) / $2, count(*) FROM jobs
WHERE status IN ('succeeded', 'failed') AND finished_at >= $1
GROUP BY 1, 2";

impl PgStore {
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
