//! The dashboard scenario's table: a month of a busy queue in a few `INSERT … SELECT`
//! statements (as claims.rs builds its tables), and the query plans of the jobs list.
//!
//! Jobs are spread evenly over the last 30 days, ids in creation order. Of every 100 jobs, 5
//! failed (at the create step, after two attempts that failed at upload_info), 2 wait in
//! backoff at their fourth attempt, 1 was cancelled and the rest succeeded; the newest 16
//! are running and the 200 before them are queued and due. Queues: `default` (4 in 7),
//! `expenses`, `contracts` and `bulk-import` (1 in 7 each; `bulk-import` is paused). A third
//! of the succeeded jobs have an outcome row: of those 10 % refused, 5 % terminated, 15 %
//! still pending, the rest agreed. Every job that ran has its history: 7 events for a
//! success, 15 for a failure, 8 for a job in backoff.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Sqlite};

use super::super::BenchError;

/// How far back the jobs go.
const SPAN_MS: i64 = 30 * 86_400_000;
/// The queue the scenario pauses.
pub(super) const PAUSED_QUEUE: &str = "bulk-import";

/// `?1` jobs, `?2` the first job's creation time less one step, `?3` ms between jobs,
/// `?4` now. `kind` is the job's part of the mix (`backoff`: queued, waiting to retry).
const JOBS_SQL: &str = "\
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1),
j AS (
  SELECT i, ?2 + i * ?3 AS t,
    CASE WHEN i > ?1 - 16 THEN 'running'
         WHEN i > ?1 - 216 THEN 'queued'
         WHEN i % 100 < 5 THEN 'failed'
         WHEN i % 100 < 7 THEN 'backoff'
         WHEN i % 100 = 7 THEN 'cancelled'
         ELSE 'succeeded' END AS kind
  FROM n)
INSERT INTO jobs (id, idempotency_key, queue, status, step, payload, attempt, run_at,
    lease_owner, lease_expires_at, last_error, result, created_at, updated_at, finished_at)
SELECT i, 'expense-' || i,
  CASE WHEN i % 7 < 4 THEN 'default' WHEN i % 7 = 4 THEN 'expenses'
       WHEN i % 7 = 5 THEN 'contracts' ELSE 'bulk-import' END,
  CASE kind WHEN 'backoff' THEN 'queued' ELSE kind END,
  CASE kind WHEN 'running' THEN 'put' WHEN 'failed' THEN 'submit'
       WHEN 'backoff' THEN 'upload_info' WHEN 'succeeded' THEN 'done' ELSE 'space' END,
  json_object('process_code', 'PROC-EXPENSE-' || (i % 12), 'originator_user_id', 'user' || (i % 500),
    'dept_id', 1000 + i % 40,
    'form', json_array(json_object('name', '报销事由', 'value', 'Travel ' || i),
                       json_object('name', '金额', 'value', (i % 90000) / 10.0)),
    'attachments', json_array(json_object('path', '/var/spool/approvals/' || i || '/receipt.pdf',
                                          'name', 'receipt-' || i || '.pdf'))),
  CASE kind WHEN 'running' THEN 1 WHEN 'failed' THEN 3 WHEN 'backoff' THEN 4
       WHEN 'succeeded' THEN 1 ELSE 0 END,
  CASE kind WHEN 'backoff' THEN ?4 + 60000 + (i % 3600) * 1000 WHEN 'queued' THEN ?4 - 1000
       ELSE t END,
  CASE kind WHEN 'running' THEN 'bench-host:4242' END,
  CASE kind WHEN 'running' THEN ?4 + 60000 END,
  CASE kind
    WHEN 'failed' THEN 'processinstance/create: HTTP 400: invalidParameter.form: 表单校验失败 (request id 7D2C' || i || ')'
    WHEN 'backoff' THEN 'upload_info: HTTP 503: ServiceUnavailable (request id 51AF' || i || ')' END,
  CASE kind WHEN 'succeeded' THEN json_object('instance_id', 'inst-' || i) END,
  t,
  CASE kind WHEN 'succeeded' THEN t + 3000 + i % 7000 WHEN 'failed' THEN t + 60000
       WHEN 'cancelled' THEN t + 30000 ELSE t END,
  CASE kind WHEN 'succeeded' THEN t + 3000 + i % 7000 WHEN 'failed' THEN t + 60000
       WHEN 'cancelled' THEN t + 30000 END
FROM j";

/// Each job's history from a template per part of the mix. `CROSS JOIN` keeps jobs the
/// outer loop, so the events of one job get consecutive ids, as a worker writes them.
const EVENTS_SQL: &str = "\
WITH t(kind, seq, ev, step, attempt, dur, error, http) AS (VALUES
  ('succeeded', 0, 'claimed', NULL, 1, NULL, NULL, NULL),
  ('succeeded', 1, 'step_done', 'space', 1, 180, NULL, NULL),
  ('succeeded', 2, 'step_done', 'upload_info', 1, 90, NULL, NULL),
  ('succeeded', 3, 'step_done', 'put', 1, 420, NULL, NULL),
  ('succeeded', 4, 'step_done', 'commit', 1, 110, NULL, NULL),
  ('succeeded', 5, 'step_done', 'submit', 1, 350, NULL, NULL),
  ('succeeded', 6, 'succeeded', NULL, 1, NULL, NULL, NULL),
  ('failed', 0, 'claimed', NULL, 1, NULL, NULL, NULL),
  ('failed', 1, 'step_done', 'space', 1, 170, NULL, NULL),
  ('failed', 2, 'step_failed', 'upload_info', 1, 30000, 'upload_info: HTTP 503: ServiceUnavailable (request id 51AF00)', 503),
  ('failed', 3, 'retry_scheduled', 'upload_info', 1, 5000, NULL, NULL),
  ('failed', 4, 'claimed', NULL, 2, NULL, NULL, NULL),
  ('failed', 5, 'step_done', 'space', 2, 160, NULL, NULL),
  ('failed', 6, 'step_failed', 'upload_info', 2, 30000, 'upload_info: HTTP 503: ServiceUnavailable (request id 51AF01)', 503),
  ('failed', 7, 'retry_scheduled', 'upload_info', 2, 10000, NULL, NULL),
  ('failed', 8, 'claimed', NULL, 3, NULL, NULL, NULL),
  ('failed', 9, 'step_done', 'space', 3, 150, NULL, NULL),
  ('failed', 10, 'step_done', 'upload_info', 3, 95, NULL, NULL),
  ('failed', 11, 'step_done', 'put', 3, 410, NULL, NULL),
  ('failed', 12, 'step_done', 'commit', 3, 120, NULL, NULL),
  ('failed', 13, 'step_failed', 'submit', 3, 340, 'processinstance/create: HTTP 400: invalidParameter.form: 表单校验失败 (request id 7D2C00)', 400),
  ('failed', 14, 'failed', 'submit', 3, NULL, 'processinstance/create: HTTP 400: invalidParameter.form: 表单校验失败 (request id 7D2C00)', NULL),
  ('backoff', 0, 'claimed', NULL, 3, NULL, NULL, NULL),
  ('backoff', 1, 'step_done', 'space', 3, 170, NULL, NULL),
  ('backoff', 2, 'step_failed', 'upload_info', 3, 30000, 'upload_info: HTTP 503: ServiceUnavailable (request id 51AF02)', 503),
  ('backoff', 3, 'retry_scheduled', 'upload_info', 3, 20000, NULL, NULL),
  ('backoff', 4, 'claimed', NULL, 4, NULL, NULL, NULL),
  ('backoff', 5, 'step_done', 'space', 4, 165, NULL, NULL),
  ('backoff', 6, 'step_failed', 'upload_info', 4, 30000, 'upload_info: HTTP 503: ServiceUnavailable (request id 51AF03)', 503),
  ('backoff', 7, 'retry_scheduled', 'upload_info', 4, 40000, NULL, NULL),
  ('cancelled', 0, 'cancelled', NULL, NULL, NULL, 'cancelled while queued', NULL),
  ('running', 0, 'claimed', NULL, 1, NULL, NULL, NULL),
  ('running', 1, 'step_done', 'space', 1, 175, NULL, NULL),
  ('running', 2, 'step_done', 'upload_info', 1, 88, NULL, NULL))
INSERT INTO job_events (job_id, at, kind, step, attempt, duration_ms, error, http_status)
SELECT j.id, j.created_at + t.seq * 500, t.ev, t.step, t.attempt, t.dur, t.error, t.http
FROM jobs j CROSS JOIN t
WHERE t.kind = CASE WHEN j.status = 'queued' AND j.attempt > 0 THEN 'backoff' ELSE j.status END
ORDER BY j.id, t.seq";

/// `?1` now: outcome rows for a third of the succeeded jobs.
const OUTCOMES_SQL: &str = "\
INSERT INTO outcomes (job_id, instance_id, outcome, submitted_at, decided_at, learned_at,
    learned_from, records, checks, next_check_at, updated_at)
SELECT id, 'inst-' || id, o, finished_at,
  CASE WHEN o <> 'pending' THEN finished_at + 3600000 END,
  CASE WHEN o <> 'pending' THEN finished_at + 3600500 END,
  CASE WHEN o <> 'pending' THEN 'stream' END,
  json_object('tasks', json_array(json_object('userId', 'manager' || (id % 50),
      'status', CASE WHEN o = 'pending' THEN 'RUNNING' ELSE 'COMPLETED' END, 'result', o)),
    'operationRecords', json_array()),
  CASE WHEN o = 'pending' THEN 3 ELSE 1 END,
  CASE WHEN o = 'pending' THEN ?1 + (id % 86400) * 1000 END,
  COALESCE(finished_at, ?1)
FROM (SELECT id, finished_at,
        CASE (id / 3) % 20 WHEN 0 THEN 'refuse' WHEN 1 THEN 'refuse' WHEN 2 THEN 'terminated'
             WHEN 3 THEN 'pending' WHEN 4 THEN 'pending' WHEN 5 THEN 'pending'
             ELSE 'agree' END AS o
      FROM jobs WHERE status = 'succeeded' AND id % 3 = 0)";

/// A failed job in the middle of the table (older jobs are no closer to the cache).
pub(super) fn failed_id(jobs: i64) -> i64 {
    (jobs / 2) / 100 * 100 + 1
}

/// A succeeded job with an outcome row in the middle of the table.
pub(super) fn succeeded_id(jobs: i64) -> i64 {
    (jobs / 2) / 300 * 300 + 30
}

/// Fills the empty queue database at `path` (schema made by `Queue::open`, queue closed):
/// `jobs` jobs with their events and outcomes, then back to WAL mode with the WAL empty.
/// Returns how long it took.
pub(super) async fn fill(path: &Path, jobs: i64, now_ms: i64) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .foreign_keys(true);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    // A rollback journal while filling: the new pages go to the file once, not through a
    // WAL as large as the database. The queue's own WAL mode is put back afterwards.
    sqlx::raw_sql("PRAGMA journal_mode = DELETE; PRAGMA cache_size = -262144")
        .execute(&mut conn)
        .await?;
    let step_ms = (SPAN_MS / jobs.max(1)).max(1);
    let first = now_ms - SPAN_MS - step_ms;
    sqlx::query(JOBS_SQL)
        .bind(jobs)
        .bind(first)
        .bind(step_ms)
        .bind(now_ms)
        .execute(&mut conn)
        .await?;
    sqlx::query(EVENTS_SQL).execute(&mut conn).await?;
    sqlx::query(OUTCOMES_SQL)
        .bind(now_ms)
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql("PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(started.elapsed())
}

/// One jobs-list statement as the queue builds it (`queue/sqlite/filter.rs` and the list in
/// `queue/sqlite/admin.rs`), with its arguments: what `plans` explains.
pub(super) struct ListQuery {
    /// The page it serves.
    pub(super) page: &'static str,
    /// The statement's `WHERE` terms after `1 = 1`, with `?` parameters.
    pub(super) terms: &'static str,
    pub(super) args: Vec<Arg>,
    /// A count (the bulk confirmation) instead of a page of rows.
    pub(super) count: bool,
}

/// An argument of a [`ListQuery`].
pub(super) enum Arg {
    Text(&'static str),
    Int(i64),
}

/// The list's columns, as the queue selects them (the outcome is a probe per row).
const LIST_COLUMNS: &str = "id, idempotency_key, queue, priority, status, step, payload, \
     checkpoint, attempt, uncharged_attempts, max_attempts, run_at, lease_owner, \
     lease_expires_at, last_error, result, cancel_requested, created_at, updated_at, \
     finished_at, (SELECT o.outcome FROM outcomes o WHERE o.job_id = jobs.id) AS outcome";

/// SQLite's plan for each of `queries`, one line per plan row, joined with ` | `.
pub(super) async fn plans(
    path: &Path,
    queries: &[ListQuery],
) -> Result<Vec<(String, String)>, BenchError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(true);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let mut out = Vec::new();
    for query in queries {
        let sql = if query.count {
            format!(
                "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE 1 = 1{} LIMIT ?)",
                query.terms
            )
        } else {
            // As the store orders a list of running jobs (see its `list`).
            let order = if query.terms.contains("status = 'running'") {
                "+id"
            } else {
                "id"
            };
            format!(
                "EXPLAIN QUERY PLAN SELECT {LIST_COLUMNS} FROM jobs WHERE 1 = 1{} \
                 ORDER BY {order} DESC LIMIT ?",
                query.terms
            )
        };
        let mut statement = sqlx::query_as::<Sqlite, (i64, i64, i64, String)>(&sql);
        for arg in &query.args {
            statement = match arg {
                Arg::Text(text) => statement.bind(*text),
                Arg::Int(number) => statement.bind(*number),
            };
        }
        let rows = statement.bind(51_i64).fetch_all(&mut conn).await?;
        let plan: Vec<String> = rows.into_iter().map(|row| row.3).collect();
        out.push((query.page.to_owned(), plan.join(" | ")));
    }
    conn.close().await?;
    Ok(out)
}
