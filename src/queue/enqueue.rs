//! Adding jobs: one at a time or in batches, idempotent on `idempotency_key`.

use std::collections::HashSet;

use sqlx::{Sqlite, Transaction};

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

/// Rows per multi-row insert (9 bound values each, far below SQLite's variable limit).
/// One statement per few hundred rows is what makes a batch cheap: through sqlx every
/// statement is a hand-off to the connection's thread.
const ROWS_PER_INSERT: usize = 256;

// The unique index on idempotency_key does the deduplication: no check-then-insert race.
// Ids are given explicitly (the next free ones, read under the write lock this transaction
// holds) so every returned id maps back to its input row; a row skipped for a known key
// leaves its id unused.
const INSERT_SQL: &str = "INSERT INTO jobs \
     (id, payload, idempotency_key, queue, priority, run_at, max_attempts, created_at, updated_at) \
     VALUES {rows} \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING id";

impl Queue {
    /// Adds one job.
    pub async fn enqueue(&self, job: &NewJob, now_ms: i64) -> Result<Enqueued, QueueError> {
        let mut out = self.enqueue_many(std::slice::from_ref(job), now_ms).await?;
        // enqueue_many returns exactly one outcome per input job.
        Ok(out.remove(0))
    }

    /// Adds many jobs in one transaction: all are durable when this returns, or none. The
    /// transaction is the group-commit writer's, shared with other writes waiting meanwhile
    /// (other producers' enqueues, claims, checkpoints).
    pub async fn enqueue_many(
        &self,
        jobs: &[NewJob],
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.writer
            .enqueue(EnqueueRequest {
                jobs: jobs.to_vec(),
                now_ms,
            })
            .await
    }
}

/// An enqueue waiting for the group-commit writer.
pub(super) struct EnqueueRequest {
    pub(super) jobs: Vec<NewJob>,
    pub(super) now_ms: i64,
}

/// Inserts the jobs of several enqueues inside the writer's transaction, a few hundred rows
/// per statement; one outcome list per request, in order.
pub(super) async fn insert_in(
    tx: &mut Transaction<'_, Sqlite>,
    requests: &[&EnqueueRequest],
) -> Result<Vec<Vec<Enqueued>>, QueueError> {
    let (max_id,): (JobId,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM jobs")
        .fetch_one(&mut **tx)
        .await?;
    let rows: Vec<(&NewJob, i64)> = requests
        .iter()
        .flat_map(|request| request.jobs.iter().map(|job| (job, request.now_ms)))
        .collect();
    let mut created = HashSet::with_capacity(rows.len());
    let mut next_id = max_id + 1;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let row = "(?,?,?,?,?,?,?,?,?)";
        let sql = INSERT_SQL.replace("{rows}", &vec![row; chunk.len()].join(","));
        let mut query = sqlx::query_as::<_, (JobId,)>(&sql);
        for (job, now_ms) in chunk {
            query = query
                .bind(next_id)
                .bind(&job.payload)
                .bind(&job.idempotency_key)
                .bind(job.queue.as_deref().unwrap_or(DEFAULT_QUEUE))
                .bind(job.priority)
                .bind(job.run_at.unwrap_or(*now_ms))
                .bind(job.max_attempts)
                .bind(now_ms)
                .bind(now_ms);
            next_id += 1;
        }
        created.extend(query.fetch_all(&mut **tx).await?.into_iter().map(|(id,)| id));
    }
    let mut ids = max_id + 1..;
    let mut out = Vec::with_capacity(requests.len());
    for request in requests {
        let mut outcomes = Vec::with_capacity(request.jobs.len());
        for (job, id) in request.jobs.iter().zip(ids.by_ref()) {
            let outcome = match (created.contains(&id), &job.idempotency_key) {
                (true, _) => Enqueued { id, created: true },
                (false, Some(key)) => {
                    let (id,): (JobId,) =
                        sqlx::query_as("SELECT id FROM jobs WHERE idempotency_key = ?1")
                            .bind(key)
                            .fetch_one(&mut **tx)
                            .await?;
                    Enqueued { id, created: false }
                }
                // DO NOTHING only skips on a key conflict, and a NULL key never conflicts.
                (false, None) => return Err(QueueError::Database(sqlx::Error::RowNotFound)),
            };
            outcomes.push(outcome);
        }
        out.push(outcomes);
    }
    Ok(out)
}
