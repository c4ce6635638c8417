//! Live upload progress on SQLite: one upsert for all of a worker's uploads, fenced on each
//! claim, and the read of one job's.

use serde_json::json;

use super::SqliteStore;
use crate::queue::{JobId, LiveUpload, QueueError, UploadReport};

/// `?1` now, `?2` the reports as a JSON array of [id, attempt, file_index, file_count,
/// file_name, bytes_sent, bytes_total, started_at]. Each lands only while its job is running
/// under that attempt.
const REPORT_UPLOADS_SQL: &str = "\
INSERT INTO upload_progress (job_id, attempt, file_index, file_count, file_name, bytes_sent, \
                             bytes_total, started_at, updated_at) \
SELECT jobs.id, jobs.attempt, json_extract(live.value, '$[2]'), json_extract(live.value, '$[3]'), \
       json_extract(live.value, '$[4]'), json_extract(live.value, '$[5]'), json_extract(live.value, '$[6]'), \
       json_extract(live.value, '$[7]'), ?1 \
FROM json_each(?2) AS live \
JOIN jobs ON jobs.id = json_extract(live.value, '$[0]') AND jobs.attempt = json_extract(live.value, '$[1]') \
WHERE jobs.status = 'running' \
ON CONFLICT (job_id) DO UPDATE SET \
    attempt = excluded.attempt, file_index = excluded.file_index, \
    file_count = excluded.file_count, file_name = excluded.file_name, \
    bytes_sent = excluded.bytes_sent, bytes_total = excluded.bytes_total, \
    started_at = excluded.started_at, updated_at = excluded.updated_at";

/// `?1` the job. Its report, while the job is running under the attempt that made it.
const LIVE_UPLOAD_SQL: &str = "\
SELECT p.file_index, p.file_count, p.file_name, p.bytes_sent, p.bytes_total, p.started_at, \
       p.updated_at \
FROM upload_progress p JOIN jobs ON jobs.id = p.job_id \
WHERE p.job_id = ?1 AND jobs.attempt = p.attempt AND jobs.status = 'running' \
  AND jobs.step = 'put'";

impl SqliteStore {
    pub(in crate::queue) async fn report_uploads(
        &self,
        reports: &[UploadReport],
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let rows: Vec<_> = reports
            .iter()
            .map(|r| {
                json!([
                    r.fence.id,
                    r.fence.attempt,
                    r.file_index,
                    r.file_count,
                    r.file_name,
                    r.bytes_sent,
                    r.bytes_total,
                    r.started_at
                ])
            })
            .collect();
        let done = sqlx::query(REPORT_UPLOADS_SQL)
            .bind(now_ms)
            .bind(serde_json::Value::Array(rows).to_string())
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
