//! Claiming due jobs under a lease, keeping leases alive, and rescuing expired ones.

use sqlx::FromRow;

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

/// One statement: picks due jobs in index order and leases them. `?1` owner, `?2` lease
/// expiry, `?3` now, `?4` queue, `?5` how many.
pub(super) const CLAIM_SQL: &str = "UPDATE jobs \
     SET status = 'running', attempt = attempt + 1, lease_owner = ?1, lease_expires_at = ?2, \
         updated_at = ?3 \
     WHERE id IN (SELECT id FROM jobs \
                  WHERE status = 'queued' AND queue = ?4 AND run_at <= ?3 \
                  ORDER BY priority DESC, run_at, id LIMIT ?5) \
     RETURNING id, attempt, uncharged_attempts, max_attempts, payload, checkpoint, \
               cancel_requested";

impl Queue {
    /// Leases up to `limit` due jobs of `queue` to `owner` until `now_ms + lease_ms`, and
    /// records a `claimed` event for each, in one transaction.
    pub async fn claim(
        &self,
        queue: &str,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut jobs: Vec<ClaimedJob> = sqlx::query_as(CLAIM_SQL)
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(queue)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        for job in &jobs {
            sqlx::query(
                "INSERT INTO job_events (job_id, at, kind, attempt) VALUES (?1, ?2, 'claimed', ?3)",
            )
            .bind(job.id)
            .bind(now_ms)
            .bind(job.attempt)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // RETURNING order is unspecified; hand jobs out in claim order.
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
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
        Ok(rescued.into_iter().map(|(id, _)| id).collect())
    }
}
