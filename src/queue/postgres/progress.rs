//! Live upload progress on PostgreSQL: one upsert for all of a worker's uploads, fenced on
//! each claim, and the read of one job's.

use super::PgStore;
use crate::queue::{JobId, LiveUpload, QueueError, UploadReport};

/// `$1` now, `$2`.. `$9` the reports' columns as arrays. Each lands only while its job is
/// running under that attempt.
const REPORT_UPLOADS_SQL: &str = "\
INSERT INTO upload_progress (job_id, attempt, file_index, file_count, file_name, bytes_sent,
                             bytes_total, started_at, updated_at)
SELECT jobs.id, jobs.attempt, live.file_index, live.file_count, live.file_name,
       live.bytes_sent, live.bytes_total, live.started_at, $1
FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[],
            $7::bigint[], $8::bigint[], $9::bigint[])
     AS live (id, attempt, file_index, file_count, file_name, bytes_sent, bytes_total,
              started_at)
JOIN jobs ON jobs.id = live.id AND jobs.attempt = live.attempt
WHERE jobs.status = 'running'
ON CONFLICT (job_id) DO UPDATE SET
    attempt = excluded.attempt, file_index = excluded.file_index,
    file_count = excluded.file_count, file_name = excluded.file_name,
    bytes_sent = excluded.bytes_sent, bytes_total = excluded.bytes_total,
    started_at = excluded.started_at, updated_at = excluded.updated_at";

/// `$1` the job. Its report, while the job is running under the attempt that made it.
const LIVE_UPLOAD_SQL: &str = "\
SELECT p.file_index, p.file_count, p.file_name, p.bytes_sent, p.bytes_total, p.started_at,
       p.updated_at
FROM upload_progress p JOIN jobs ON jobs.id = p.job_id
WHERE p.job_id = $1 AND jobs.attempt = p.attempt AND jobs.status = 'running'
  AND jobs.step = 'put'";

impl PgStore {
    pub(in crate::queue) async fn report_uploads(
        &self,
        reports: &[UploadReport],
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let column = |f: fn(&UploadReport) -> i64| reports.iter().map(f).collect::<Vec<i64>>();
        let names: Vec<&str> = reports.iter().map(|r| r.file_name.as_str()).collect();
        let done = sqlx::query(REPORT_UPLOADS_SQL)
            .bind(now_ms)
            .bind(column(|r| r.fence.id))
            .bind(column(|r| r.fence.attempt))
            .bind(column(|r| r.file_index))
            .bind(column(|r| r.file_count))
            .bind(names)
            .bind(column(|r| r.bytes_sent))
            .bind(column(|r| r.bytes_total))
            .bind(column(|r| r.started_at))
            .execute(&self.pool)
            .await?;
        self.count_commit();
        Ok(done.rows_affected())
    }

    pub(in crate::queue) async fn live_upload(
        &self,
        id: JobId,
    ) -> Result<Option<LiveUpload>, QueueError> {
        Ok(sqlx::query_as(LIVE_UPLOAD_SQL)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }
}
