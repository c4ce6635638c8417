//! Bulk retry and cancel by filter on PostgreSQL, and the capped count shown before them.
//! Each is one statement: the chosen rows are locked (`FOR UPDATE`), changed under a status
//! fence, and their events written, all in its own transaction.

use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use super::filter::{Scope, push_where};
use crate::queue::{BulkAction, JobFilter, QueueError};

impl PgStore {
    /// How many jobs `action` would take under `filter`, up to `cap`.
    pub(in crate::queue) async fn count_for(
        &self,
        action: BulkAction,
        filter: &JobFilter,
        cap: i64,
    ) -> Result<i64, QueueError> {
        let mut sql = QueryBuilder::<Postgres>::new("SELECT count(*) FROM (SELECT 1 FROM jobs");
        push_where(&mut sql, filter, Scope::of(action), false);
        sql.push(" LIMIT ").push_bind(cap).push(") AS capped");
        Ok(sql.build_query_scalar().fetch_one(&self.pool).await?)
    }

    /// Retries up to `cap` failed or cancelled jobs matching `filter`; returns how many.
    pub(in crate::queue) async fn bulk_retry(
        &self,
        filter: &JobFilter,
        cap: i64,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let mut sql = QueryBuilder::<Postgres>::new("WITH target AS (SELECT id FROM jobs");
        push_where(&mut sql, filter, Scope::Retryable, false);
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(cap)
            .push(
                " FOR UPDATE), retried AS (\
                 UPDATE jobs SET status = 'queued', uncharged_attempts = attempt, \
                 cancel_requested = false, finished_at = NULL, run_at = ",
            )
            .push_bind(now_ms)
            .push(", updated_at = ")
            .push_bind(now_ms)
            .push(
                " FROM target WHERE jobs.id = target.id \
                   AND jobs.status IN ('failed', 'cancelled') \
                 RETURNING jobs.id, jobs.attempt), \
                 events AS (INSERT INTO job_events (job_id, at, kind, attempt) SELECT id, ",
            )
            .push_bind(now_ms)
            .push(", 'retried', attempt FROM retried) SELECT count(*) FROM retried");
        let retried: i64 = sql.build_query_scalar().fetch_one(&self.pool).await?;
        self.count_commit();
        Ok(u64::try_from(retried).unwrap_or(0))
    }

    /// Cancels or flags up to `cap` queued or running jobs matching `filter`; returns how
    /// many were cancelled at once and how many were asked to stop. A queued job not at
    /// `create_step` is cancelled; a running one, or a queued one at `create_step` (a create
    /// may have been sent, which only the worker's reconciliation can tell), is flagged.
    pub(in crate::queue) async fn bulk_cancel(
        &self,
        filter: &JobFilter,
        create_step: &str,
        cap: i64,
        now_ms: i64,
    ) -> Result<(u64, u64), QueueError> {
        let mut sql = QueryBuilder::<Postgres>::new("WITH target AS (SELECT id FROM jobs");
        push_where(&mut sql, filter, Scope::Cancellable, false);
        // SET reads the row as it was, so both CASEs see the status before the update.
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(cap)
            .push(
                " FOR UPDATE), changed AS (UPDATE jobs SET \
                 status = CASE WHEN jobs.status = 'queued' AND jobs.step <> ",
            )
            .push_bind(create_step)
            .push(
                " THEN 'cancelled' ELSE jobs.status END, \
                 finished_at = CASE WHEN jobs.status = 'queued' AND jobs.step <> ",
            )
            .push_bind(create_step)
            .push(" THEN ")
            .push_bind(now_ms)
            .push(" ELSE jobs.finished_at END, cancel_requested = true, updated_at = ")
            .push_bind(now_ms)
            .push(
                " FROM target WHERE jobs.id = target.id \
                   AND jobs.status IN ('queued', 'running') AND NOT jobs.cancel_requested \
                 RETURNING jobs.id, jobs.status), \
                 events AS (INSERT INTO job_events (job_id, at, kind, error) SELECT id, ",
            )
            .push_bind(now_ms)
            .push(
                ", 'cancelled', 'cancelled while queued' FROM changed \
                 WHERE status = 'cancelled') \
                 SELECT count(*) FILTER (WHERE status = 'cancelled'), \
                        count(*) FILTER (WHERE status <> 'cancelled') FROM changed",
            );
        let (cancelled, flagged): (i64, i64) = sql.build_query_as().fetch_one(&self.pool).await?;
        self.count_commit();
        Ok((
            u64::try_from(cancelled).unwrap_or(0),
            u64::try_from(flagged).unwrap_or(0),
        ))
    }
}
