//! Adding jobs on PostgreSQL: a batch in one statement, idempotent on `idempotency_key`.

use std::collections::HashMap;

use super::PgStore;
use crate::queue::{DEFAULT_QUEUE, Enqueued, JobId, NewJob, QueueError};

/// The rows as parallel arrays (`$1` payloads, `$2` keys, `$3` queues, `$4` priorities,
/// `$5` run_at, `$6` attempt limits; `$7` now). Each row gets its id from the table's
/// sequence before the insert, so every input row knows its id whether or not it went in;
/// a row skipped for a known key leaves its id unused. Returns one row per input, in order,
/// with its id and whether it was inserted.
const INSERT_SQL: &str = "\
WITH input AS (
    SELECT nextval(pg_get_serial_sequence('jobs', 'id')) AS id, n, payload, idempotency_key,
           queue, priority, run_at, max_attempts
    FROM unnest($1::jsonb[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
         WITH ORDINALITY AS r (payload, idempotency_key, queue, priority, run_at, max_attempts, n)
), inserted AS (
    INSERT INTO jobs (id, payload, idempotency_key, queue, priority, run_at, max_attempts,
                      created_at, updated_at)
    SELECT id, payload, idempotency_key, queue, priority, run_at, max_attempts, $7, $7
    FROM input ORDER BY n
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
)
SELECT input.id, inserted.id IS NOT NULL AS created
FROM input LEFT JOIN inserted ON inserted.id = input.id
ORDER BY input.n";

/// `$1` keys: the jobs holding them.
const KEYS_SQL: &str = "SELECT id, idempotency_key FROM jobs WHERE idempotency_key = ANY($1)";

impl PgStore {
    /// Adds `jobs` in one statement: all are durable when this returns, or none.
    pub(in crate::queue) async fn enqueue_many(
        &self,
        jobs: &[NewJob],
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, QueueError> {
        let payloads: Vec<&str> = jobs.iter().map(|job| job.payload.as_str()).collect();
        let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.idempotency_key.as_deref()).collect();
        let queues: Vec<&str> = jobs
            .iter()
            .map(|job| job.queue.as_deref().unwrap_or(DEFAULT_QUEUE))
            .collect();
        let priorities: Vec<i64> = jobs.iter().map(|job| job.priority).collect();
        let run_at: Vec<i64> = jobs
            .iter()
            .map(|job| job.run_at.unwrap_or(now_ms))
            .collect();
        let limits: Vec<Option<i64>> = jobs.iter().map(|job| job.max_attempts).collect();
        let rows: Vec<(JobId, bool)> = sqlx::query_as(INSERT_SQL)
            .bind(&payloads)
            .bind(&keys)
            .bind(&queues)
            .bind(&priorities)
            .bind(&run_at)
            .bind(&limits)
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
        self.count_commit();
        if rows.len() != jobs.len() {
            return Err(QueueError::Database(sqlx::Error::RowNotFound));
        }
        // A key that did not go in is held by an earlier row of this batch, or by a job
        // already in the table, which the statement's snapshot could not name.
        let mut holders: HashMap<&str, JobId> = HashMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        for ((id, created), key) in rows.iter().zip(&keys) {
            match (created, key) {
                (true, Some(key)) => {
                    holders.entry(key).or_insert(*id);
                }
                (false, Some(key)) if !holders.contains_key(key) => unknown.push(key),
                (false, None) => return Err(QueueError::Database(sqlx::Error::RowNotFound)),
                _ => {}
            }
        }
        if !unknown.is_empty() {
            let found: Vec<(JobId, String)> = sqlx::query_as(KEYS_SQL)
                .bind(&unknown)
                .fetch_all(&self.pool)
                .await?;
            for (id, key) in &found {
                if let Some(key) = unknown.iter().find(|k| **k == key.as_str()) {
                    holders.insert(key, *id);
                }
            }
        }
        rows.iter()
            .zip(&keys)
            .map(|((id, created), key)| match (created, key) {
                (true, _) => Ok(Enqueued {
                    id: *id,
                    created: true,
                }),
                (false, Some(key)) => holders
                    .get(key)
                    .map(|id| Enqueued {
                        id: *id,
                        created: false,
                    })
                    .ok_or(QueueError::Database(sqlx::Error::RowNotFound)),
                (false, None) => Err(QueueError::Database(sqlx::Error::RowNotFound)),
            })
            .collect()
    }
}
