//! Claiming due jobs under a lease, keeping leases alive, and rescuing expired ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::FromRow;

use super::transition::Batch;
use super::{Fence, JobId, Queue, QueueError};

/// A job this worker now holds a lease on.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// This claim's attempt number (the fence for every later write).
    pub attempt: i64,
    /// Attempts that ended without being charged (shutdown, lost lease).
    pub uncharged_attempts: i64,
    /// The job's own attempt limit, if its producer set one.
    pub max_attempts: Option<i64>,
    /// The immutable input, JSON text.
    pub payload: String,
    /// The serialized step to resume from, if an earlier attempt got somewhere.
    pub checkpoint: Option<String>,
    /// Someone asked to cancel the job while it was running.
    pub cancel_requested: bool,
}

impl ClaimedJob {
    /// The fence for writes made under this claim.
    pub fn fence(&self) -> Fence {
        Fence {
            id: self.id,
            attempt: self.attempt,
        }
    }

    /// Attempts that count against `max_attempts`, this one included.
    pub fn charged_attempts(&self) -> i64 {
        self.attempt - self.uncharged_attempts
    }
}

/// One statement: picks due jobs in index order and leases them. Positional parameters
/// (it runs inside the writer's multi-statement query): owner, lease expiry, now, queue,
/// now, then queue, now and how many for the limit, and the claim's index in its batch,
/// returned to tell its rows apart. The limit is the number of due jobs up to how many
/// (counted like [`DUE_SQL`]), so the walk of `jobs_claim` stops after the due jobs and never
/// walks the jobs waiting in backoff behind them, even when fewer are due than asked for.
pub(super) const CLAIM_SQL: &str = "UPDATE jobs \
     SET status = 'running', attempt = attempt + 1, lease_owner = ?, lease_expires_at = ?, \
         updated_at = ? \
     WHERE id IN (SELECT id FROM jobs \
                  WHERE status = 'queued' AND queue = ? AND run_at <= ? \
                  ORDER BY priority DESC, run_at, id \
                  LIMIT (SELECT COUNT(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_due \
                         WHERE status = 'queued' AND queue = ? AND run_at <= ? LIMIT ?))) \
     RETURNING id, attempt, uncharged_attempts, max_attempts, payload, checkpoint, \
               cancel_requested, ? AS claim_op;";

/// The `claimed` events of the jobs the claim statement before it just leased: running,
/// leased to this owner until this expiry, updated now, and without a `claimed` event for
/// this attempt yet. Parameters: now, lease expiry, owner, now.
pub(super) const CLAIM_EVENTS_SQL: &str = "INSERT INTO job_events (job_id, at, kind, attempt) \
     SELECT id, ?, 'claimed', attempt FROM jobs \
     WHERE status = 'running' AND lease_expires_at = ? AND lease_owner = ? AND updated_at = ? \
       AND NOT EXISTS (SELECT 1 FROM job_events e \
                       WHERE e.job_id = jobs.id AND e.attempt = jobs.attempt \
                         AND e.kind = 'claimed');";

/// `?1` queue, `?2` now, `?3` at most: how many due jobs there are, up to the claim's limit.
/// It walks `jobs_due` (queue, run_at) and stops at the first job not yet due, so neither an
/// idle poll nor a claim for more jobs than are due ever walks the jobs waiting in backoff.
pub(super) const DUE_SQL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_due \
     WHERE status = 'queued' AND queue = ?1 AND run_at <= ?2 LIMIT ?3)";

/// How often [`Queue::wait_for_change`] looks for other processes' commits.
pub const CHANGE_CHECK: Duration = Duration::from_millis(50);

/// A claim waiting for the group-commit writer.
pub(super) struct ClaimRequest {
    pub(super) queue: String,
    pub(super) owner: String,
    pub(super) limit: u32,
    pub(super) lease_ms: i64,
    pub(super) now_ms: i64,
}

impl ClaimRequest {
    /// Binds [`CLAIM_SQL`] and [`CLAIM_EVENTS_SQL`] for this claim, the `index`-th of its batch.
    pub(super) fn bind<'q>(&'q self, query: Batch<'q>, index: usize) -> Batch<'q> {
        let expires = self.now_ms + self.lease_ms;
        query
            .bind(&self.owner)
            .bind(expires)
            .bind(self.now_ms)
            .bind(&self.queue)
            .bind(self.now_ms)
            .bind(&self.queue)
            .bind(self.now_ms)
            .bind(i64::from(self.limit))
            .bind(i64::try_from(index).unwrap_or(i64::MAX))
            .bind(self.now_ms)
            .bind(expires)
            .bind(&self.owner)
            .bind(self.now_ms)
    }
}

impl Queue {
    /// Leases up to `limit` due jobs of `queue` to `owner` until `now_ms + lease_ms`, and
    /// records a `claimed` event for each, in one transaction (shared with whatever other
    /// writes are waiting, see the writer).
    ///
    /// After a claim that found fewer jobs than it asked for, the next one first counts the
    /// due jobs with one cheap read, and returns at once, taking no write lock, when there
    /// are none: an idle worker's polls stay reads. After a claim that got all it asked
    /// for, more are likely due, so the next one goes straight to the writer: that read
    /// would be one more hand-off to the connection's thread per claim while jobs flow.
    pub async fn claim(
        &self,
        queue: &str,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let likely_due = self.last_claim_full.load(Ordering::Relaxed);
        if !likely_due && self.due(queue, limit, now_ms).await? == 0 {
            return Ok(Vec::new());
        }
        let claimed = self
            .writer
            .claim(ClaimRequest {
                queue: queue.to_owned(),
                owner: owner.to_owned(),
                limit,
                lease_ms,
                now_ms,
            })
            .await?;
        let full = u32::try_from(claimed.len()).is_ok_and(|n| n == limit);
        self.last_claim_full.store(full, Ordering::Relaxed);
        Ok(claimed)
    }

    /// Waits until the database files change (another process committed, e.g. a producer's
    /// plain `INSERT`), or `max_wait` passes. An idle worker waits here instead of sleeping
    /// its whole poll interval, so pickup does not wait for the next poll. It looks at the
    /// files' size and mtime every [`CHANGE_CHECK`]: a `stat` on this thread, no hand-off to
    /// the connection's thread, so an idle `run` stays far below 1 % of a core. Jobs that
    /// become due by the clock alone (backoff) wait for `max_wait`. The files are first
    /// looked at when this is called, not when the future is first polled.
    pub fn wait_for_change(&self, max_wait: Duration) -> impl Future<Output = ()> + use<> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let files = Arc::clone(&self.files);
        let seen = files.fingerprint();
        async move {
            loop {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return;
                }
                tokio::time::sleep(CHANGE_CHECK.min(deadline - now)).await;
                if files.fingerprint() != seen {
                    return;
                }
            }
        }
    }

    /// How many jobs of `queue` are due at `now_ms`, counting no further than `limit`.
    pub async fn due(&self, queue: &str, limit: u32, now_ms: i64) -> Result<u32, QueueError> {
        let (due,): (i64,) = sqlx::query_as(DUE_SQL)
            .bind(queue)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await?;
        Ok(u32::try_from(due).unwrap_or(0))
    }

    /// Extends every lease `owner` holds to `now_ms + lease_ms`; returns how many.
    pub async fn heartbeat(
        &self,
        owner: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = ?1 WHERE status = 'running' AND lease_owner = ?2",
        )
        .bind(now_ms + lease_ms)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        self.count_commit();
        Ok(done.rows_affected())
    }

    /// Puts running jobs whose lease expired before `now_ms` back in the queue at their
    /// checkpoint, without charging the attempt (the worker died, not the job).
    pub async fn rescue(&self, now_ms: i64) -> Result<Vec<JobId>, QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rescued: Vec<(JobId, i64)> = sqlx::query_as(
            "UPDATE jobs \
             SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, run_at = ?1, \
                 uncharged_attempts = uncharged_attempts + 1, updated_at = ?1 \
             WHERE status = 'running' AND lease_expires_at < ?1 \
             RETURNING id, attempt",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        for (id, attempt) in &rescued {
            sqlx::query(
                "INSERT INTO job_events (job_id, at, kind, attempt, error) \
                 VALUES (?1, ?2, 'rescued', ?3, 'lease expired')",
            )
            .bind(id)
            .bind(now_ms)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.count_commit();
        Ok(rescued.into_iter().map(|(id, _)| id).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use crate::queue::measure::PlainProducer;
    use crate::queue::{NewJob, Queue, now_ms};

    fn job(run_at: Option<i64>) -> NewJob {
        NewJob {
            payload: json!({"process_code": "PROC-1"}).to_string(),
            run_at,
            ..NewJob::default()
        }
    }

    #[tokio::test]
    async fn jobs_waiting_in_backoff_are_not_counted_as_due() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("q.db")).await.unwrap();
        let now = now_ms();
        queue
            .enqueue_many(&vec![job(Some(now + 60_000)); 50], now)
            .await
            .unwrap();
        queue.enqueue_many(&vec![job(None); 3], now).await.unwrap();
        assert_eq!(queue.due("default", 16, now).await.unwrap(), 3);
        assert_eq!(queue.due("default", 2, now).await.unwrap(), 2);
        assert_eq!(queue.due("other", 16, now).await.unwrap(), 0);
        let claimed = queue.claim("default", "w", 16, 60_000, now).await.unwrap();
        assert_eq!(claimed.len(), 3);
        assert!(
            queue
                .claim("default", "w", 16, 60_000, now)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_idle_wait_ends_when_another_connection_inserts_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let queue = Queue::open(&path).await.unwrap();
        let mut producer = PlainProducer::connect(&path).await.unwrap();
        let waiting = queue.wait_for_change(Duration::from_secs(30));
        producer
            .insert(&json!({"process_code": "PROC-1"}).to_string())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends long before its 30 s");
    }
}
