//! Claiming due jobs under a lease, keeping leases alive, and rescuing expired ones, with
//! several hosts claiming from one table at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::queue::{ClaimedJob, Fence, JobId, QueueError};

/// `$1` queue, `$2` now, `$3` how many, `$4` owner, `$5` lease expiry. Picks due jobs in
/// `jobs_claim`'s order, skipping rows another host is claiming (`SKIP LOCKED`, so hosts
/// never wait on each other), leases them and records their `claimed` events, all in one
/// statement. How many is bound, not computed inside, so the planner knows the claim takes
/// a handful of rows: it walks the index and joins the update by primary key.
pub(super) const CLAIM_SQL: &str = "\
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'queued' AND queue = $1 AND run_at <= $2
      AND NOT EXISTS (SELECT 1 FROM queue_pauses p WHERE p.queue = $1)
    ORDER BY priority DESC, run_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs
    SET status = 'running', attempt = jobs.attempt + 1, lease_owner = $4,
        lease_expires_at = $5, updated_at = $2
    FROM picked WHERE jobs.id = picked.id
    RETURNING jobs.id, jobs.attempt, jobs.uncharged_attempts, jobs.max_attempts,
              jobs.payload::text AS payload, jobs.checkpoint::text AS checkpoint,
              jobs.cancel_requested, jobs.priority, jobs.run_at
), events AS (
    INSERT INTO job_events (job_id, at, kind, attempt)
    SELECT id, $2, 'claimed', attempt FROM claimed
)
SELECT id, attempt, uncharged_attempts, max_attempts, payload, checkpoint, cancel_requested,
       priority, run_at
FROM claimed";

/// `$1` queue, `$2` now, `$3` at most: how many due jobs there are, up to the claim's limit,
/// through `jobs_due` (queue, run_at), which stops at the first job not yet due.
const DUE_SQL: &str = "SELECT count(*) FROM (SELECT 1 FROM jobs \
     WHERE status = 'queued' AND queue = $1 AND run_at <= $2 \
       AND NOT EXISTS (SELECT 1 FROM queue_pauses p WHERE p.queue = $1) LIMIT $3) AS due";

/// `$1` new expiry, `$2` owner, `$3` ids and `$4` attempts of the live claims: each is
/// renewed only while it is still that claim.
const HEARTBEAT_SQL: &str = "\
UPDATE jobs SET lease_expires_at = $1
FROM unnest($3::bigint[], $4::bigint[]) AS live (id, attempt)
WHERE jobs.id = live.id AND jobs.attempt = live.attempt
  AND jobs.status = 'running' AND jobs.lease_owner = $2";

/// `$1` now. Running jobs whose lease expired go back to the queue at their checkpoint,
/// their attempt uncharged, each with a `rescued` event. Rows another host is rescuing are
/// skipped, and the update checks the lease again, so a job is rescued once however many
/// hosts run this at the same moment.
const RESCUE_SQL: &str = "\
WITH expired AS (
    SELECT id FROM jobs
    WHERE status = 'running' AND lease_expires_at < $1
    FOR UPDATE SKIP LOCKED
), rescued AS (
    UPDATE jobs
    SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, run_at = $1,
        uncharged_attempts = jobs.uncharged_attempts + 1, updated_at = $1
    FROM expired
    WHERE jobs.id = expired.id AND jobs.status = 'running' AND jobs.lease_expires_at < $1
    RETURNING jobs.id, jobs.attempt
), events AS (
    INSERT INTO job_events (job_id, at, kind, attempt, error)
    SELECT id, $1, 'rescued', attempt, 'lease expired' FROM rescued
)
SELECT id FROM rescued ORDER BY id";

impl PgStore {
    /// Leases up to `limit` due jobs of `queue` to `owner` and records their `claimed`
    /// events, in one statement.
    ///
    /// After a claim that found fewer jobs than it asked for, the next one first counts the
    /// due jobs (one cheap read) and returns at once when there are none, so an idle
    /// worker's polls write nothing; otherwise it asks for no more than are due, so its walk
    /// of `jobs_claim` stops after them instead of going on through the jobs waiting in
    /// backoff. After a full claim more are likely due, and it claims straight away.
    pub(in crate::queue) async fn claim(
        &self,
        queue: &str,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let mut take = i64::from(limit);
        if !self.last_claim_full.load(Ordering::Relaxed) {
            take = sqlx::query_scalar(DUE_SQL)
                .bind(queue)
                .bind(now_ms)
                .bind(take)
                .fetch_one(&self.pool)
                .await?;
            if take == 0 {
                return Ok(Vec::new());
            }
        }
        let rows = sqlx::query(CLAIM_SQL)
            .bind(queue)
            .bind(now_ms)
            .bind(take)
            .bind(owner)
            .bind(now_ms + lease_ms)
            .fetch_all(&self.pool)
            .await?;
        self.count_commit();
        let mut claimed: Vec<(i64, i64, ClaimedJob)> = rows
            .iter()
            .map(|row| Ok((row.try_get("priority")?, row.try_get("run_at")?, read(row)?)))
            .collect::<Result<_, QueueError>>()?;
        // In claim order, as the walk found them (sorting the few rows here keeps a Sort
        // node out of the statement's plan).
        claimed.sort_by_key(|(priority, run_at, job)| (-priority, *run_at, job.id));
        let full = i64::try_from(claimed.len()).is_ok_and(|n| n == i64::from(limit));
        self.last_claim_full.store(full, Ordering::Relaxed);
        Ok(claimed.into_iter().map(|(_, _, job)| job).collect())
    }

    /// Waits for the listener's next wake-up, or `max_wait`. Without a listener (`listen =
    /// false`) this is the poll interval.
    pub(in crate::queue) fn wait_for_change(
        &self,
        max_wait: Duration,
    ) -> impl Future<Output = ()> + Send + use<> {
        // A new receiver has seen the current generation: only a later bump ends the wait.
        let mut wake = self.wake.subscribe();
        async move {
            let _ = tokio::time::timeout(max_wait, wake.changed()).await;
        }
    }

    /// Extends the leases of `fences` to `now_ms + lease_ms`; returns how many.
    pub(in crate::queue) async fn heartbeat(
        &self,
        owner: &str,
        fences: &[Fence],
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let ids: Vec<i64> = fences.iter().map(|fence| fence.id).collect();
        let attempts: Vec<i64> = fences.iter().map(|fence| fence.attempt).collect();
        let done = sqlx::query(HEARTBEAT_SQL)
            .bind(now_ms + lease_ms)
            .bind(owner)
            .bind(&ids)
            .bind(&attempts)
            .execute(&self.pool)
            .await?;
        self.count_commit();
        Ok(done.rows_affected())
    }

    /// Puts running jobs whose lease expired before `now_ms` back in the queue.
    pub(in crate::queue) async fn rescue(&self, now_ms: i64) -> Result<Vec<JobId>, QueueError> {
        let rescued = sqlx::query_scalar(RESCUE_SQL)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
        self.count_commit();
        Ok(rescued)
    }
}

/// A row of [`CLAIM_SQL`]. PostgreSQL refuses text that is not UTF-8 and JSON that does not
/// parse on the way in, so every claimed row reads; a payload that is not a valid job is
/// the runner's to fail, with the reason.
fn read(row: &PgRow) -> Result<ClaimedJob, QueueError> {
    Ok(ClaimedJob {
        id: row.try_get("id")?,
        attempt: row.try_get("attempt")?,
        uncharged_attempts: row.try_get("uncharged_attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        payload: row.try_get("payload")?,
        checkpoint: row.try_get("checkpoint")?,
        cancel_requested: row.try_get("cancel_requested")?,
        unreadable: None,
    })
}
