//! Adding jobs: one at a time or in batches, idempotent on `idempotency_key`.

use super::{DEFAULT_QUEUE, JobId, Queue, QueueError};

/// A job to add. The payload is stored as given (it must be valid JSON; the table checks).
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    /// The job's input, JSON text.
    pub payload: String,
    /// A repeat with the same key returns the existing job instead of adding one.
    pub idempotency_key: Option<String>,
    /// Queue name; `None` is the default queue.
    pub queue: Option<String>,
    /// Higher runs first.
    pub priority: i64,
    /// Earliest start (unix ms); `None` is now.
    pub run_at: Option<i64>,
    /// Attempts before the job fails; `None` is the worker's configured value.
    pub max_attempts: Option<i64>,
}

/// The outcome of adding one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Enqueued {
    /// The job's id (the existing one when the idempotency key was seen before).
    pub id: JobId,
    /// False when an existing job with the same idempotency key was returned.
    pub created: bool,
}

// The unique index on idempotency_key does the deduplication: no check-then-insert race.
const INSERT_SQL: &str = "INSERT INTO jobs \
     (payload, idempotency_key, queue, priority, run_at, max_attempts, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id";

impl Queue {
    /// Adds one job.
    pub async fn enqueue(&self, job: &NewJob, now_ms: i64) -> Result<Enqueued, QueueError> {
        let mut out = self.enqueue_many(std::slice::from_ref(job), now_ms).await?;
        // enqueue_many returns exactly one outcome per input job.
        Ok(out.remove(0))
    }

    /// Adds many jobs in one transaction: all are durable when this returns, or none.
    pub async fn enqueue_many(
        &self,
        jobs: &[NewJob],
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            let inserted: Option<(JobId,)> = sqlx::query_as(INSERT_SQL)
                .bind(&job.payload)
                .bind(&job.idempotency_key)
                .bind(job.queue.as_deref().unwrap_or(DEFAULT_QUEUE))
                .bind(job.priority)
                .bind(job.run_at.unwrap_or(now_ms))
                .bind(job.max_attempts)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = match (inserted, &job.idempotency_key) {
                (Some((id,)), _) => Enqueued { id, created: true },
                (None, Some(key)) => {
                    let (id,): (JobId,) =
                        sqlx::query_as("SELECT id FROM jobs WHERE idempotency_key = ?1")
                            .bind(key)
                            .fetch_one(&mut *tx)
                            .await?;
                    Enqueued { id, created: false }
                }
                // DO NOTHING only skips on a key conflict, and a NULL key never conflicts.
                (None, None) => return Err(QueueError::Database(sqlx::Error::RowNotFound)),
            };
            out.push(outcome);
        }
        tx.commit().await?;
        Ok(out)
    }
}
