//! Bulk retry and cancel by filter on SQLite, and the capped count shown before them. Each
//! runs in one `BEGIN IMMEDIATE` transaction: the jobs are chosen and changed under the same
//! write lock, so no other process changes them in between.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::filter::{Scope, push_where};
use super::{JobFilter, JobId, QueueError, SqliteStore, tx};
use crate::queue::BulkAction;

/// `?1` now, `?2` the chosen ids (JSON array): each goes back to the queue at its checkpoint
/// with a fresh set of attempts, if it is still failed or cancelled.
const BULK_RETRY_SQL: &str = "\
UPDATE jobs SET status = 'queued', run_at = ?1, uncharged_attempts = attempt,
    cancel_requested = 0, finished_at = NULL, updated_at = ?1
WHERE id IN (SELECT value FROM json_each(?2)) AND (status = 'failed' OR status = 'cancelled')
RETURNING id, attempt";

/// `?1` now, `?2` `[[id, attempt], …]` of the jobs retried.
const BULK_RETRIED_EVENTS_SQL: &str = "\
INSERT INTO job_events (job_id, at, kind, attempt)
SELECT json_extract(value, '$[0]'), ?1, 'retried', json_extract(value, '$[1]')
FROM json_each(?2)";

/// `?1` now, `?2` the chosen ids, `?3` the create step: queued jobs not at the create step
/// stop at once.
const BULK_CANCEL_QUEUED_SQL: &str = "\
UPDATE jobs SET status = 'cancelled', cancel_requested = 1, updated_at = ?1, finished_at = ?1
WHERE id IN (SELECT value FROM json_each(?2)) AND status = 'queued' AND step <> ?3
RETURNING id";

/// `?1` now, `?2` the ids of the jobs cancelled at once.
const BULK_CANCELLED_EVENTS_SQL: &str = "\
INSERT INTO job_events (job_id, at, kind, error)
SELECT value, ?1, 'cancelled', 'cancelled while queued' FROM json_each(?2)";

/// `?1` now, `?2` the chosen ids: the rest (running, or queued at the create step, where a
/// create may have been sent that only the worker's reconciliation can account for) are
/// asked to stop at their next checkpoint.
const BULK_CANCEL_FLAG_SQL: &str = "\
UPDATE jobs SET cancel_requested = 1, updated_at = ?1
WHERE id IN (SELECT value FROM json_each(?2)) AND status IN ('queued', 'running')
  AND cancel_requested = 0
RETURNING id";

impl SqliteStore {
    /// How many jobs `action` would take under `filter`, up to `cap`.
    pub(in crate::queue) async fn count_for(
        &self,
        action: BulkAction,
        filter: &JobFilter,
        cap: i64,
    ) -> Result<i64, QueueError> {
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM (SELECT 1 FROM jobs");
        push_where(&mut sql, filter, Scope::of(action), false);
        sql.push(" LIMIT ").push_bind(cap).push(")");
        Ok(sql.build_query_scalar().fetch_one(&self.pool).await?)
    }

    /// Retries up to `cap` failed or cancelled jobs matching `filter`; returns how many.
    pub(in crate::queue) async fn bulk_retry(
        &self,
        filter: &JobFilter,
        cap: i64,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        tx::immediate(&self.pool, async |conn| {
            let ids = chosen(conn, filter, Scope::Retryable, cap).await?;
            let retried: Vec<(JobId, i64)> = sqlx::query_as(BULK_RETRY_SQL)
                .bind(now_ms)
                .bind(json_ids(&ids))
                .fetch_all(&mut *conn)
                .await?;
            let events = serde_json::to_string(&retried).unwrap_or_else(|_| "[]".to_owned());
            sqlx::query(BULK_RETRIED_EVENTS_SQL)
                .bind(now_ms)
                .bind(events)
                .execute(&mut *conn)
                .await?;
            Ok(retried.len() as u64)
        })
        .await
    }

    /// Cancels or flags up to `cap` queued or running jobs matching `filter`; returns how
    /// many were cancelled at once and how many were asked to stop.
    pub(in crate::queue) async fn bulk_cancel(
        &self,
        filter: &JobFilter,
        create_step: &str,
        cap: i64,
        now_ms: i64,
    ) -> Result<(u64, u64), QueueError> {
        tx::immediate(&self.pool, async |conn| {
            let ids = json_ids(&chosen(conn, filter, Scope::Cancellable, cap).await?);
            let cancelled: Vec<JobId> = sqlx::query_scalar(BULK_CANCEL_QUEUED_SQL)
                .bind(now_ms)
                .bind(&ids)
                .bind(create_step)
                .fetch_all(&mut *conn)
                .await?;
            sqlx::query(BULK_CANCELLED_EVENTS_SQL)
                .bind(now_ms)
                .bind(json_ids(&cancelled))
                .execute(&mut *conn)
                .await?;
            let flagged: Vec<JobId> = sqlx::query_scalar(BULK_CANCEL_FLAG_SQL)
                .bind(now_ms)
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?;
            Ok((cancelled.len() as u64, flagged.len() as u64))
        })
        .await
    }
}

/// The ids of up to `cap` jobs matching `filter` within `scope`, newest first.
async fn chosen(
    conn: &mut SqliteConnection,
    filter: &JobFilter,
    scope: Scope,
    cap: i64,
) -> Result<Vec<JobId>, QueueError> {
    let mut sql = QueryBuilder::<Sqlite>::new("SELECT id FROM jobs");
    push_where(&mut sql, filter, scope, false);
    sql.push(" ORDER BY id DESC LIMIT ").push_bind(cap);
    Ok(sql.build_query_scalar().fetch_all(&mut *conn).await?)
}

/// Ids as the JSON array the statements read with `json_each`.
fn json_ids(ids: &[JobId]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}
