//! The job queue in SQLite: the only module that speaks SQL.
//!
//! Every write after a claim is fenced on `(id, attempt, status = 'running')` and checks that
//! exactly one row changed; a write that changes nothing means another claim owns the job now
//! and surfaces as [`QueueError::LeaseLost`]. Time is always bound from Rust (`now_ms`), never
//! read inside SQL, so tests control it.

mod admin;
mod claim;
mod enqueue;
mod files;
mod inspect;
pub(crate) mod measure;
mod monitor;
mod quota;
#[cfg(test)]
mod schema_tests;
#[cfg(test)]
mod test_support;
mod text;
mod transition;
mod transition_sql;
mod tx;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use files::DbFiles;

pub use crate::clock::now_ms;
pub use admin::{EventRow, JobFilter, JobRow};
pub use claim::ClaimedJob;
pub use enqueue::{Enqueued, NewJob};
pub(crate) use inspect::{DatabaseFile, inspect_database};
pub(crate) use monitor::Depth;
pub use quota::{CallDelta, MonthlyCalls, quota_month};
pub use transition::{Failure, StepDone, Unstored};

/// How long a writer waits for another process's write lock before giving up.
pub(crate) const BUSY_TIMEOUT_SECS: u64 = 10;
/// The queue name a job gets when its producer names none.
pub(crate) const DEFAULT_QUEUE: &str = "default";

/// A job's primary key.
pub type JobId = i64;

/// Errors at the queue boundary.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// SQLite refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file could not be prepared.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The job was re-claimed (or finished) by someone else: this claim must stop quietly.
    #[error("lease lost on job {id} attempt {attempt}")]
    LeaseLost {
        /// The job.
        id: JobId,
        /// The attempt whose write was refused.
        attempt: i64,
    },
    /// The file is another program's SQLite database: it has tables but no history of this
    /// program's migrations, so nothing is added to it.
    #[error(
        "{path} is not an approval-worker database: it holds other tables ({tables}) and no \
         approval-worker schema; point [database] path at a file of its own"
    )]
    NotOurs {
        /// The file.
        path: String,
        /// Some of the tables it holds.
        tables: String,
    },
    /// No job has this id.
    #[error("no job with id {0}")]
    NotFound(JobId),
    /// The job is not in a status that allows the operation.
    #[error("job {id} is {status}: {reason}")]
    WrongStatus {
        /// The job.
        id: JobId,
        /// Its current status.
        status: String,
        /// What was refused.
        reason: &'static str,
    },
}

/// A job's lifecycle status, as stored in `jobs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for `run_at`, then for a worker.
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// The approval instance exists; `result` holds its id.
    Succeeded,
    /// Given up; `last_error` says why.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?} (expected queued, running, succeeded, failed or cancelled)")
            })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one claim of one job; every write after the claim carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub(crate) id: JobId,
    /// The attempt the claim started.
    attempt: i64,
}

/// The queue: a pool of connections to one SQLite file, and the group-commit writer that
/// every fenced transition goes through.
#[derive(Clone, Debug)]
pub struct Queue {
    pool: SqlitePool,
    writer: writer::Writer,
    commits: Arc<AtomicU64>,
    files: Arc<DbFiles>,
    /// Whether the last claim got every job it asked for (see [`Queue::claim`]).
    last_claim_full: Arc<AtomicBool>,
}

/// How [`Queue::open_with`] sets up the connection beyond the fixed pragmas.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenOptions {
    /// `PRAGMA wal_autocheckpoint` in pages; `None` keeps SQLite's default (1000), `Some(0)`
    /// turns automatic checkpoints off (the benchmark does, to measure the WAL it writes).
    pub(crate) wal_autocheckpoint_pages: Option<u32>,
}

impl Queue {
    /// Opens (creating if needed, owner-only) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Queue, QueueError> {
        Queue::open_with(path, &OpenOptions::default()).await
    }

    /// [`Queue::open`] with extra connection settings.
    pub(crate) async fn open_with(path: &Path, open: &OpenOptions) -> Result<Queue, QueueError> {
        create_private_file(path)?;
        let mut options = connect_options(path);
        if let Some(pages) = open.wal_autocheckpoint_pages {
            options = options.pragma("wal_autocheckpoint", pages.to_string());
        }
        // One connection: SQLite has a single writer anyway, and in-process writers queueing
        // on the pool is far cheaper than them sleeping in SQLite's busy handler.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            // The default pings the connection on every acquire: a thread hand-off per
            // statement for nothing, as a local SQLite connection cannot go stale.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        migrate(&pool, path).await?;
        let commits = Arc::new(AtomicU64::new(0));
        let writer = writer::Writer::spawn(pool.clone(), Arc::clone(&commits));
        Ok(Queue {
            pool,
            writer,
            commits,
            files: Arc::new(DbFiles::new(path)),
            last_claim_full: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Why this queue's database files are no longer the ones at its path (deleted or
    /// replaced since it opened them), or `None` while they are. Two `stat` calls.
    pub(crate) fn files_replaced(&self) -> Option<String> {
        self.files.replaced()
    }

    /// Transactions (and autocommit writes) this queue has committed since it was opened:
    /// the benchmark divides it by the jobs finished to report commits per job.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads back the connection pragmas the queue relies on, as `(name, value)` pairs.
    pub async fn pragmas(&self) -> Result<Vec<(String, String)>, QueueError> {
        let mut out = Vec::new();
        let mut conn = self.pool.acquire().await?;
        for name in [
            "journal_mode",
            "synchronous",
            "busy_timeout",
            "foreign_keys",
        ] {
            let row = sqlx::query(&format!("PRAGMA {name}"))
                .fetch_one(&mut *conn)
                .await?;
            let value = match row.try_get::<i64, _>(0) {
                Ok(number) => number.to_string(),
                Err(_) => row.try_get::<String, _>(0)?,
            };
            out.push((name.to_string(), value));
        }
        Ok(out)
    }

    /// The query plan SQLite chooses for the claim, one line per plan row.
    pub async fn claim_plan(&self) -> Result<Vec<String>, QueueError> {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", claim::CLAIM_SQL))
                .bind("owner")
                .bind(0_i64)
                .bind(0_i64)
                .bind(DEFAULT_QUEUE)
                .bind(0_i64)
                .bind(DEFAULT_QUEUE)
                .bind(0_i64)
                .bind(1_i64)
                .bind(0_i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|row| row.3).collect())
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The SQLite schema's migrations, embedded in the binary.
fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations/sqlite")
}

/// Applies the migrations the database lacks. On an existing database each one is logged,
/// then the time they took: 0005 rebuilds two tables, which takes a while on a large
/// database. A new database's schema is only created (logged at debug).
async fn migrate(pool: &SqlitePool, path: &Path) -> Result<(), QueueError> {
    let migrator = migrator();
    let has_history: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema \
         WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await?;
    if !has_history {
        // An empty file is ours to fill; another program's tables are not ours to add to.
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_schema \
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 5",
        )
        .fetch_all(pool)
        .await?;
        if !tables.is_empty() {
            return Err(QueueError::NotOurs {
                path: path.display().to_string(),
                tables: tables.join(", "),
            });
        }
        migrator.run(pool).await?;
        tracing::debug!("created the database schema");
        return Ok(());
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?;
    let pending: Vec<_> = migrator
        .iter()
        .filter(|migration| !applied.contains(&migration.version))
        .collect();
    for migration in &pending {
        tracing::info!(
            version = migration.version,
            description = %migration.description,
            "applying database migration"
        );
    }
    let started = std::time::Instant::now();
    migrator.run(pool).await?;
    if !pending.is_empty() {
        tracing::info!(
            migrations = pending.len(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "database migrations applied"
        );
    }
    Ok(())
}

/// The connection settings every queue connection uses (the benchmark's raw-commit ceiling
/// uses them too, so it measures the same disk with the same durability).
pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(BUSY_TIMEOUT_SECS))
        .foreign_keys(true)
}

/// Creates the database file with mode 0600 before SQLite does, so the data (and the WAL,
/// which SQLite creates with the database's mode) is never readable by other users.
fn create_private_file(path: &Path) -> Result<(), QueueError> {
    let open_error = |source| QueueError::Open {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(open_error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(open_error(e)),
    }
}

fn lease_lost(fence: Fence) -> QueueError {
    QueueError::LeaseLost {
        id: fence.id,
        attempt: fence.attempt,
    }
}
