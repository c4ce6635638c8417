//! The queue in one SQLite file, for one host: the embedded default.
//!
//! Every claim and fenced transition goes through the group-commit writer (`writer`), which
//! shares one transaction among whatever writes arrived meanwhile; reads and operator actions
//! use the pool's one connection directly.

mod admin;
mod bulk;
mod claim;
mod enqueue;
mod files;
mod filter;
mod inspect;
pub(crate) mod measure;
mod monitor;
mod outcome;
mod overview;
mod progress;
mod quota;
#[cfg(test)]
mod schema_tests;
#[cfg(test)]
pub(super) mod test_support;
mod transition_sql;
mod tx;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool};

use files::DbFiles;

use super::text;
use super::transition::{Change, EventRecord, TransitionRequest};
use super::{
    CallDelta, ClaimedJob, DEFAULT_QUEUE, Depth, Enqueued, EventRow, Fence, JobFilter, JobId,
    JobRow, JobStatus, MonthlyCalls, NewJob, QueueError, Stats, lease_lost,
};

pub(super) use inspect::inspect_database;

/// How long a writer waits for another process's write lock before giving up.
pub(crate) const BUSY_TIMEOUT_SECS: u64 = 10;

/// The writer's query; every statement in it uses positional `?` parameters.
type Batch<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// A pool of connections to one SQLite file, and the group-commit writer that every claim
/// and fenced transition goes through.
#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    writer: writer::Writer,
    commits: Arc<AtomicU64>,
    files: Arc<DbFiles>,
    /// Whether the last claim got every job it asked for (see [`SqliteStore::claim`]).
    last_claim_full: Arc<AtomicBool>,
}

/// How [`SqliteStore::open`] sets up the connection beyond the fixed pragmas.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenOptions {
    /// `PRAGMA wal_autocheckpoint` in pages; `None` keeps SQLite's default (1000), `Some(0)`
    /// turns automatic checkpoints off (the benchmark does, to measure the WAL it writes).
    pub(crate) wal_autocheckpoint_pages: Option<u32>,
}

impl SqliteStore {
    /// Opens (creating if needed, owner-only) the database file and applies pending migrations.
    pub(super) async fn open(path: &Path, open: &OpenOptions) -> Result<SqliteStore, QueueError> {
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
        Ok(SqliteStore {
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

    /// The database file, for messages.
    pub(super) fn describe(&self) -> String {
        self.files.path().display().to_string()
    }

    /// Transactions (and autocommit writes) this queue has committed since it was opened:
    /// the benchmark divides it by the jobs finished to report commits per job.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads back the connection pragmas the queue relies on, as `(name, value)` pairs.
    #[cfg(test)]
    pub(super) async fn pragmas(&self) -> Result<Vec<(String, String)>, QueueError> {
        use sqlx::Row;
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

    /// A fenced transition, through the group-commit writer. `Ok(cancel_requested)`.
    pub(super) async fn transition(&self, request: TransitionRequest) -> Result<bool, QueueError> {
        self.writer.transition(request).await
    }

    /// The connection pool, for moving a queue between stores (`queue::copy`).
    pub(in crate::queue) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, checkpointing the WAL.
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// The SQLite schema's migrations, embedded in the binary.
pub(super) fn migrator() -> sqlx::migrate::Migrator {
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
    super::check_schema_known(&migrator, &applied, &path.display().to_string())?;
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
