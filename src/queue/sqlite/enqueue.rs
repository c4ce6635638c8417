//! Adding jobs: one at a time or in batches, idempotent on `idempotency_key`.

use std::collections::{HashMap, HashSet};

use super::Batch;
use super::{DEFAULT_QUEUE, Enqueued, JobId, NewJob, QueueError, SqliteStore};

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
     RETURNING 'inserted', id;";

// The same insert for a batch that fits one statement, numbered by SQLite under the write
// lock: the ids are the largest id before the statement plus the bound 1-based offsets. The
// scalar subquery is not correlated, so it runs once, before the first row is inserted, and
// BASE_ID_SQL, run just before in the same transaction, returns the same number to map the
// ids back. A bare MAX(id) inside the subquery is read off the end of the table. (`WHERE
// true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.)
const INSERT_AFTER_MAX_SQL: &str = "INSERT INTO jobs \
     (id, payload, idempotency_key, queue, priority, run_at, max_attempts, created_at, updated_at) \
     SELECT IFNULL((SELECT MAX(id) FROM jobs), 0) + column1, column2, column3, column4, \
            column5, column6, column7, column8, column9 \
     FROM (VALUES {rows}) WHERE true \
     ON CONFLICT (idempotency_key) DO NOTHING \
     RETURNING 'inserted', id;";

/// The largest job id before [`INSERT_AFTER_MAX_SQL`] numbers its rows after it.
pub(super) const BASE_ID_SQL: &str = "SELECT 'base_id', IFNULL((SELECT MAX(id) FROM jobs), 0);";

/// Values bound per inserted row.
const ROW_PLACEHOLDERS: &str = "(?,?,?,?,?,?,?,?,?)";

impl SqliteStore {
    /// Adds many jobs in one transaction: all are durable when this returns, or none. The
    /// transaction is the group-commit writer's, shared with other writes waiting meanwhile
    /// (other producers' enqueues, claims, checkpoints).
    pub(in crate::queue) async fn enqueue_many(
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

/// Keys looked up per statement.
const KEYS_PER_SELECT: usize = 256;

/// The rows of a batch's enqueues, with the `now` of their request.
pub(super) fn rows<'a>(requests: &[&'a EnqueueRequest]) -> Vec<(&'a NewJob, i64)> {
    requests
        .iter()
        .flat_map(|request| request.jobs.iter().map(|job| (job, request.now_ms)))
        .collect()
}

/// The insert statements for `rows` rows, `ROWS_PER_INSERT` at a time.
pub(super) fn insert_sql(rows: usize, sql: &mut String) {
    let mut left = rows;
    while left > 0 {
        let chunk = left.min(ROWS_PER_INSERT);
        sql.push_str(&INSERT_SQL.replace("{rows}", &vec![ROW_PLACEHOLDERS; chunk].join(",")));
        left -= chunk;
    }
}

/// Whether `rows` rows fit one statement, which SQLite can number itself
/// ([`insert_after_max_sql`]), so the batch needs no id read beforehand.
pub(super) fn fits_one_insert(rows: usize) -> bool {
    rows <= ROWS_PER_INSERT
}

/// [`BASE_ID_SQL`] and the one insert for `rows` rows that SQLite numbers after it; bind
/// with [`bind_inserts`] from offset 1.
pub(super) fn insert_after_max_sql(rows: usize, sql: &mut String) {
    sql.push_str(BASE_ID_SQL);
    sql.push_str(&INSERT_AFTER_MAX_SQL.replace("{rows}", &vec![ROW_PLACEHOLDERS; rows].join(",")));
}

/// Binds the inserts' rows, giving them ids (or offsets) from `first_id` on.
pub(super) fn bind_inserts<'q>(
    mut query: Batch<'q>,
    rows: &[(&'q NewJob, i64)],
    first_id: JobId,
) -> Batch<'q> {
    for ((job, now_ms), id) in rows.iter().zip(first_id..) {
        query = query
            .bind(id)
            .bind(&job.payload)
            .bind(&job.idempotency_key)
            .bind(job.queue.as_deref().unwrap_or(DEFAULT_QUEUE))
            .bind(job.priority)
            .bind(job.run_at.unwrap_or(*now_ms))
            .bind(job.max_attempts)
            .bind(*now_ms)
            .bind(*now_ms);
    }
    query
}

/// After the inserts: the id of every idempotency key in the batch (new or seen before).
pub(super) fn keys_sql(keys: usize, sql: &mut String) {
    let mut left = keys;
    while left > 0 {
        let chunk = left.min(KEYS_PER_SELECT);
        sql.push_str(&format!(
            "SELECT 'key', id, idempotency_key FROM jobs WHERE idempotency_key IN ({});",
            vec!["?"; chunk].join(",")
        ));
        left -= chunk;
    }
}

/// One outcome list per request: a row whose id came back was created, one with a key that
/// did not is the job already holding that key.
pub(super) fn outcomes(
    requests: &[&EnqueueRequest],
    first_id: JobId,
    created: &HashSet<JobId>,
    keys: &HashMap<String, JobId>,
) -> Result<Vec<Vec<Enqueued>>, QueueError> {
    let mut ids = first_id..;
    let outcomes: Vec<Vec<Enqueued>> = requests
        .iter()
        .map(|request| {
            request
                .jobs
                .iter()
                .zip(ids.by_ref())
                .map(
                    |(job, id)| match (created.contains(&id), &job.idempotency_key) {
                        (true, _) => Ok(Enqueued { id, created: true }),
                        (false, Some(key)) => keys
                            .get(key)
                            .map(|id| Enqueued {
                                id: *id,
                                created: false,
                            })
                            .ok_or(QueueError::Database(sqlx::Error::RowNotFound)),
                        // DO NOTHING only skips on a key conflict, and a NULL key never conflicts.
                        (false, None) => Err(QueueError::Database(sqlx::Error::RowNotFound)),
                    },
                )
                .collect()
        })
        .collect::<Result<_, _>>()?;
    // Every id the inserts returned belongs to an input row: otherwise the rows were not
    // numbered as expected, and no id handed out could be trusted.
    let matched = outcomes.iter().flatten().filter(|e| e.created).count();
    if matched != created.len() {
        return Err(QueueError::Database(sqlx::Error::RowNotFound));
    }
    Ok(outcomes)
}
