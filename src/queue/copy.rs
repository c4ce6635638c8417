//! Moving a queue: copies a SQLite queue, every job with its id, status, checkpoint (submit
//! intents included), attempts and history, and the DingTalk call tallies, into an empty
//! PostgreSQL queue, in one transaction there, and checks the counts before committing.

use sqlx::{Acquire, Row};

use super::copy_outcomes::{copy_deliveries, copy_outcomes};
use super::{Queue, QueueError, Store};

/// Rows read and written per statement.
const PAGE: i64 = 1_000;

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Copied {
    /// Jobs per status, in status order.
    pub(crate) jobs_by_status: Vec<(String, i64)>,
    /// History rows.
    pub(crate) events: i64,
    /// `dingtalk_calls` rows.
    pub(crate) call_rows: i64,
    /// Followed approvals (`outcomes` rows).
    pub(crate) outcomes: i64,
    /// Notifications (`outcome_deliveries` rows).
    pub(crate) deliveries: i64,
    /// The highest job id: the target numbers new jobs after it.
    pub(crate) highest_id: i64,
}

/// Why a copy was refused before anything was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyRefused {
    /// The source is not a SQLite queue, or the target not a PostgreSQL one.
    #[error("copy goes from a SQLite queue to a PostgreSQL one")]
    WrongStores,
    /// Workers hold leases in the source: jobs would move while they run.
    #[error(
        "{0} job(s) are running under a live lease in the SQLite queue: stop its workers \
         (they release their jobs) and copy again"
    )]
    LiveLeases(i64),
    /// The target already holds something.
    #[error(
        "the PostgreSQL queue is not empty ({jobs} jobs, {calls} call rows): copy into a new \
         database"
    )]
    TargetNotEmpty {
        /// Jobs there.
        jobs: i64,
        /// `dingtalk_calls` rows there.
        calls: i64,
    },
    /// The copy read something other than what the source held.
    #[error("the copy does not match its source ({0}); nothing was committed")]
    Mismatch(String),
    /// A row PostgreSQL cannot store.
    #[error("job {id} cannot be copied: {reason}; fix or delete it in the SQLite queue first")]
    BadRow {
        /// The job.
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<sqlx::Error> for CopyRefused {
    fn from(error: sqlx::Error) -> Self {
        CopyRefused::Queue(QueueError::Database(error))
    }
}

/// SQLite: jobs running under a lease that has not expired at `?1`.
const LIVE_LEASES_SQL: &str =
    "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND lease_expires_at >= ?1";

const SOURCE_JOBS_SQL: &str = "SELECT id, idempotency_key, queue, priority, status, step, \
     CAST(payload AS BLOB) AS payload, CAST(checkpoint AS BLOB) AS checkpoint, attempt, \
     uncharged_attempts, max_attempts, run_at, lease_owner, lease_expires_at, last_error, \
     CAST(result AS BLOB) AS result, cancel_requested, created_at, updated_at, finished_at \
     FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?2";

const SOURCE_EVENTS_SQL: &str = "SELECT id, job_id, at, kind, step, attempt, duration_ms, \
     error, http_status FROM job_events WHERE id > ?1 ORDER BY id LIMIT ?2";

const SOURCE_CALLS_SQL: &str =
    "SELECT app_key, month, endpoint, counted, calls, updated_at FROM dingtalk_calls";

const SOURCE_ROW_COUNTS_SQL: &str = "SELECT (SELECT COUNT(*) FROM job_events), \
     (SELECT COUNT(*) FROM dingtalk_calls), (SELECT COUNT(*) FROM outcomes), \
     (SELECT COUNT(*) FROM outcome_deliveries)";

const SOURCE_COUNTS_SQL: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status";

/// PostgreSQL: the jobs of one page, as parallel arrays, with their ids.
const TARGET_JOBS_SQL: &str = "\
INSERT INTO jobs (id, idempotency_key, queue, priority, status, step, payload, checkpoint,
                  attempt, uncharged_attempts, max_attempts, run_at, lease_owner,
                  lease_expires_at, last_error, result, cancel_requested, created_at,
                  updated_at, finished_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                     $6::text[], $7::jsonb[], $8::jsonb[], $9::bigint[], $10::bigint[],
                     $11::bigint[], $12::bigint[], $13::text[], $14::bigint[], $15::text[],
                     $16::jsonb[], $17::boolean[], $18::bigint[], $19::bigint[],
                     $20::bigint[])";

const TARGET_EVENTS_SQL: &str = "\
INSERT INTO job_events (id, job_id, at, kind, step, attempt, duration_ms, error, http_status)
OVERRIDING SYSTEM VALUE
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                     $6::bigint[], $7::bigint[], $8::text[], $9::bigint[])";

const TARGET_CALLS_SQL: &str = "\
INSERT INTO dingtalk_calls (app_key, month, endpoint, counted, calls, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::bigint[],
                     $6::bigint[])";

/// New jobs and events are numbered after the copied ones.
const TARGET_SEQUENCES_SQL: &str = "\
SELECT setval(pg_get_serial_sequence('jobs', 'id'), greatest((SELECT max(id) FROM jobs), 1)),
       setval(pg_get_serial_sequence('job_events', 'id'),
              greatest((SELECT max(id) FROM job_events), 1))";

const TARGET_COUNTS_SQL: &str = "SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status";

/// Copies `source` (SQLite) into `target` (PostgreSQL, empty) as described in the module
/// comment. `now_ms` decides which leases are live.
pub(crate) async fn sqlite_to_postgres(
    source: &Queue,
    target: &Queue,
    now_ms: i64,
) -> Result<Copied, CopyRefused> {
    let (Store::Sqlite(source), Store::Postgres(target)) = (&source.store, &target.store) else {
        return Err(CopyRefused::WrongStores);
    };
    let mut from = source.pool().acquire().await?;
    // One read transaction: the copy is of one moment, whatever producers insert meanwhile.
    let mut from = from.begin().await?;
    let live: i64 = sqlx::query_scalar(LIVE_LEASES_SQL)
        .bind(now_ms)
        .fetch_one(&mut *from)
        .await?;
    if live > 0 {
        return Err(CopyRefused::LiveLeases(live));
    }
    let (jobs, calls): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM dingtalk_calls)")
            .fetch_one(target.pool())
            .await?;
    if jobs > 0 || calls > 0 {
        return Err(CopyRefused::TargetNotEmpty { jobs, calls });
    }
    let mut to = target.pool().begin().await?;
    let highest_id = copy_jobs(&mut from, &mut to).await?;
    let events = copy_events(&mut from, &mut to).await?;
    let call_rows = copy_calls(&mut from, &mut to).await?;
    let outcomes = copy_outcomes(&mut from, &mut to).await?;
    let deliveries = copy_deliveries(&mut from, &mut to).await?;
    sqlx::query(TARGET_SEQUENCES_SQL).execute(&mut *to).await?;
    let expected: Vec<(String, i64)> = sqlx::query_as(SOURCE_COUNTS_SQL)
        .fetch_all(&mut *from)
        .await?;
    let copied: Vec<(String, i64)> = sqlx::query_as(TARGET_COUNTS_SQL)
        .fetch_all(&mut *to)
        .await?;
    if copied != expected {
        return Err(CopyRefused::Mismatch(format!(
            "jobs by status {copied:?}, the source has {expected:?}"
        )));
    }
    let source: (i64, i64, i64, i64) = sqlx::query_as(SOURCE_ROW_COUNTS_SQL)
        .fetch_one(&mut *from)
        .await?;
    if (events, call_rows, outcomes, deliveries) != source {
        return Err(CopyRefused::Mismatch(format!(
            "{events} events, {call_rows} call rows, {outcomes} outcomes and {deliveries} \
             notifications; the source has {}, {}, {} and {}",
            source.0, source.1, source.2, source.3
        )));
    }
    to.commit().await?;
    from.commit().await?;
    Ok(Copied {
        jobs_by_status: copied,
        events,
        call_rows,
        outcomes,
        deliveries,
        highest_id,
    })
}

/// A TEXT column read as bytes, which PostgreSQL takes only as UTF-8.
fn text(
    row: &sqlx::sqlite::SqliteRow,
    column: &str,
    id: i64,
) -> Result<Option<String>, CopyRefused> {
    let bytes: Option<Vec<u8>> = row.try_get(column)?;
    bytes
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| CopyRefused::BadRow {
                id,
                reason: format!("its {column} is not valid UTF-8"),
            })
        })
        .transpose()
}

/// Copies the jobs page by page; returns the highest id.
async fn copy_jobs(
    from: &mut sqlx::SqliteConnection,
    to: &mut sqlx::PgConnection,
) -> Result<i64, CopyRefused> {
    let mut after = 0_i64;
    loop {
        let rows = sqlx::query(SOURCE_JOBS_SQL)
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *from)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(after);
        };
        after = last.try_get("id")?;
        let mut page = JobPage::default();
        for row in &rows {
            page.push(row)?;
        }
        page.insert(&mut *to).await.map_err(|e| match e {
            sqlx::Error::Database(db) => CopyRefused::BadRow {
                id: after,
                reason: format!("PostgreSQL refused a job of the page ending here: {db}"),
            },
            other => other.into(),
        })?;
    }
}

/// One page of jobs as the parallel arrays [`TARGET_JOBS_SQL`] binds.
#[derive(Default)]
struct JobPage {
    id: Vec<i64>,
    idempotency_key: Vec<Option<String>>,
    queue: Vec<Option<String>>,
    priority: Vec<i64>,
    status: Vec<Option<String>>,
    step: Vec<Option<String>>,
    payload: Vec<Option<String>>,
    checkpoint: Vec<Option<String>>,
    attempt: Vec<i64>,
    uncharged_attempts: Vec<i64>,
    max_attempts: Vec<Option<i64>>,
    run_at: Vec<i64>,
    lease_owner: Vec<Option<String>>,
    lease_expires_at: Vec<Option<i64>>,
    last_error: Vec<Option<String>>,
    result: Vec<Option<String>>,
    cancel_requested: Vec<bool>,
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    finished_at: Vec<Option<i64>>,
}

impl JobPage {
    fn push(&mut self, row: &sqlx::sqlite::SqliteRow) -> Result<(), CopyRefused> {
        let id: i64 = row.try_get("id")?;
        self.id.push(id);
        self.idempotency_key.push(text(row, "idempotency_key", id)?);
        self.queue.push(text(row, "queue", id)?);
        self.priority.push(row.try_get("priority")?);
        self.status.push(text(row, "status", id)?);
        self.step.push(text(row, "step", id)?);
        self.payload.push(text(row, "payload", id)?);
        self.checkpoint.push(text(row, "checkpoint", id)?);
        self.attempt.push(row.try_get("attempt")?);
        self.uncharged_attempts
            .push(row.try_get("uncharged_attempts")?);
        self.max_attempts.push(row.try_get("max_attempts")?);
        self.run_at.push(row.try_get("run_at")?);
        self.lease_owner.push(text(row, "lease_owner", id)?);
        self.lease_expires_at.push(row.try_get("lease_expires_at")?);
        self.last_error.push(text(row, "last_error", id)?);
        self.result.push(text(row, "result", id)?);
        self.cancel_requested.push(row.try_get("cancel_requested")?);
        self.created_at.push(row.try_get("created_at")?);
        self.updated_at.push(row.try_get("updated_at")?);
        self.finished_at.push(row.try_get("finished_at")?);
        Ok(())
    }

    async fn insert(&self, to: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query(TARGET_JOBS_SQL)
            .bind(&self.id)
            .bind(&self.idempotency_key)
            .bind(&self.queue)
            .bind(&self.priority)
            .bind(&self.status)
            .bind(&self.step)
            .bind(&self.payload)
            .bind(&self.checkpoint)
            .bind(&self.attempt)
            .bind(&self.uncharged_attempts)
            .bind(&self.max_attempts)
            .bind(&self.run_at)
            .bind(&self.lease_owner)
            .bind(&self.lease_expires_at)
            .bind(&self.last_error)
            .bind(&self.result)
            .bind(&self.cancel_requested)
            .bind(&self.created_at)
            .bind(&self.updated_at)
            .bind(&self.finished_at)
            .execute(&mut *to)
            .await?;
        Ok(())
    }
}

/// Copies the history page by page; returns how many rows.
async fn copy_events(
    from: &mut sqlx::SqliteConnection,
    to: &mut sqlx::PgConnection,
) -> Result<i64, CopyRefused> {
    let (mut after, mut copied) = (0_i64, 0_i64);
    loop {
        let rows: Vec<EventRow> = sqlx::query_as(SOURCE_EVENTS_SQL)
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *from)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = last.id;
        copied += i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let mut page = EventPage::default();
        for row in rows {
            page.push(row);
        }
        sqlx::query(TARGET_EVENTS_SQL)
            .bind(&page.id)
            .bind(&page.job_id)
            .bind(&page.at)
            .bind(&page.kind)
            .bind(&page.step)
            .bind(&page.attempt)
            .bind(&page.duration_ms)
            .bind(&page.error)
            .bind(&page.http_status)
            .execute(&mut *to)
            .await?;
    }
}

/// One history row as SQLite holds it (text decoded without failing, as listings do).
#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    job_id: i64,
    at: i64,
    kind: super::text::Lossy,
    step: super::text::Lossy,
    attempt: Option<i64>,
    duration_ms: Option<i64>,
    error: super::text::Lossy,
    http_status: Option<i64>,
}

/// One page of history as the parallel arrays [`TARGET_EVENTS_SQL`] binds.
#[derive(Default)]
struct EventPage {
    id: Vec<i64>,
    job_id: Vec<i64>,
    at: Vec<i64>,
    kind: Vec<Option<String>>,
    step: Vec<Option<String>>,
    attempt: Vec<Option<i64>>,
    duration_ms: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    http_status: Vec<Option<i64>>,
}

impl EventPage {
    fn push(&mut self, row: EventRow) {
        self.id.push(row.id);
        self.job_id.push(row.job_id);
        self.at.push(row.at);
        self.kind.push(row.kind.into());
        self.step.push(row.step.into());
        self.attempt.push(row.attempt);
        self.duration_ms.push(row.duration_ms);
        self.error.push(row.error.into());
        self.http_status.push(row.http_status);
    }
}

/// One row of `dingtalk_calls`.
#[derive(sqlx::FromRow)]
struct CallRow {
    app_key: String,
    month: String,
    endpoint: String,
    counted: bool,
    calls: i64,
    updated_at: i64,
}

/// Copies the call tallies (a few rows per app and month); returns how many rows.
async fn copy_calls(
    from: &mut sqlx::SqliteConnection,
    to: &mut sqlx::PgConnection,
) -> Result<i64, CopyRefused> {
    let rows: Vec<CallRow> = sqlx::query_as(SOURCE_CALLS_SQL)
        .fetch_all(&mut *from)
        .await?;
    let column = |f: fn(&CallRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let number = |f: fn(&CallRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    sqlx::query(TARGET_CALLS_SQL)
        .bind(column(|r| r.app_key.clone()))
        .bind(column(|r| r.month.clone()))
        .bind(column(|r| r.endpoint.clone()))
        .bind(rows.iter().map(|r| r.counted).collect::<Vec<bool>>())
        .bind(number(|r| r.calls))
        .bind(number(|r| r.updated_at))
        .execute(&mut *to)
        .await?;
    Ok(i64::try_from(rows.len()).unwrap_or(i64::MAX))
}
