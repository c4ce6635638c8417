//! The queue in a PostgreSQL database, for several hosts: claims skip rows other hosts hold
//! locked, an insert wakes the listening workers (`LISTEN`/`NOTIFY`), and every statement is
//! its own transaction (no transaction is ever held across a network wait).

mod admin;
mod bulk;
mod claim;
mod enqueue;
mod filter;
mod inspect;
mod listen;
mod measure;
mod outcome;
mod overview;
mod progress;
mod quota;
mod slots;
mod transition;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use super::{QueueError, check_schema_known};

pub(super) use inspect::{has_schema, inspect};

/// How a PostgreSQL queue is reached. The password never appears in its `Debug` output.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/database?sslmode=…`; a password in it is used, never shown.
    pub url: String,
    /// The password, when it is not in the URL or `PGPASSWORD` (from `password_file`).
    pub password: Option<String>,
    /// Connections this process opens at most.
    pub max_connections: u32,
    /// Whether to `LISTEN` for new jobs; off behind PgBouncer in transaction mode, where
    /// only polling finds them.
    pub listen: bool,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redacted(&self.url))
            .field("max_connections", &self.max_connections)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// `url` as given but without a password in it (`postgres://user:secret@host/db` becomes
/// `postgres://user@host/db`), for messages about a URL that may not even parse.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_owned(),
    }
}

fn describe(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username())
    )
}

/// A pool of connections to one PostgreSQL database, and the wake-ups its listener hears.
#[derive(Clone, Debug)]
pub(crate) struct PgStore {
    pool: PgPool,
    /// The database, without the password, for messages.
    name: Arc<str>,
    /// Bumped whenever a job may have become claimable (a notification, or the listener's
    /// connection coming back after it may have missed some).
    wake: Arc<watch::Sender<u64>>,
    commits: Arc<AtomicU64>,
    /// Whether the last claim got every job it asked for (see [`PgStore::claim`]).
    last_claim_full: Arc<AtomicBool>,
}

/// How long opening a connection may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the database holds this program's migration history.
const HAS_HISTORY_SQL: &str = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";
/// Up to five tables of the database, for a database that is another program's.
const SOME_TABLES_SQL: &str = "SELECT tablename::text FROM pg_tables \
     WHERE schemaname = current_schema() ORDER BY tablename LIMIT 5";
/// The migrations applied.
const APPLIED_SQL: &str = "SELECT version FROM _sqlx_migrations WHERE success";

/// The connection settings `options` describe.
fn connect_options(options: &PgOptions) -> Result<PgConnectOptions, sqlx::Error> {
    let connect = PgConnectOptions::from_str(&options.url)?.application_name("approval-worker");
    Ok(match &options.password {
        Some(password) => connect.password(password),
        None => connect,
    })
}

/// One connection outside any pool, given up after [`CONNECT_TIMEOUT`].
async fn connect_once(connect: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(connect))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

impl PgStore {
    /// Connects and applies pending migrations (under sqlx's advisory lock, so hosts that
    /// start together migrate once).
    pub(super) async fn open(options: &PgOptions) -> Result<PgStore, QueueError> {
        let connect = connect_options(options)?;
        let name: Arc<str> = describe(&connect).into();
        // One connection first: when the server is down or refuses the login, its error says
        // why, where the pool would only report that it timed out waiting.
        connect_once(&connect).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(connect)
            .await?;
        migrate(&pool, &name).await?;
        let (wake, _) = watch::channel(0);
        let wake = Arc::new(wake);
        if options.listen {
            listen::spawn(&pool, Arc::clone(&wake)).await?;
        }
        Ok(PgStore {
            pool,
            name,
            wake,
            commits: Arc::new(AtomicU64::new(0)),
            last_claim_full: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The database, without the password.
    pub(super) fn describe(&self) -> String {
        self.name.to_string()
    }

    /// Writes committed through this store since it was opened.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// One round trip.
    pub(super) async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The plan PostgreSQL chooses for a claim of 16 jobs of the default queue now, one
    /// line per plan row: it depends on the table's statistics (how many jobs are due).
    pub(super) async fn claim_plan(&self) -> Result<Vec<String>, QueueError> {
        let rows: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {}", claim::CLAIM_SQL))
            .bind(super::DEFAULT_QUEUE)
            .bind(super::now_ms())
            .bind(16_i64)
            .bind("owner")
            .bind(0_i64)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// The connection pool, for moving a queue between stores (`queue::copy`).
    pub(in crate::queue) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool; the listener stops with it.
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// The PostgreSQL schema's migrations, embedded in the binary.
pub(super) fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations/postgres")
}

/// Applies the migrations the database lacks, after making sure it is ours (empty, or with
/// this program's migration history) and not newer than this binary.
async fn migrate(pool: &PgPool, name: &str) -> Result<(), QueueError> {
    let migrator = migrator();
    let has_history: bool = sqlx::query_scalar(HAS_HISTORY_SQL).fetch_one(pool).await?;
    if !has_history {
        let tables: Vec<String> = sqlx::query_scalar(SOME_TABLES_SQL).fetch_all(pool).await?;
        if !tables.is_empty() {
            return Err(QueueError::NotOurs {
                path: name.to_owned(),
                tables: tables.join(", "),
            });
        }
    } else {
        let applied: Vec<i64> = sqlx::query_scalar(APPLIED_SQL).fetch_all(pool).await?;
        check_schema_known(&migrator, &applied, name)?;
    }
    migrator.run(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redacted("postgres://approval:hunter2@db.internal:5433/approvals?sslmode=require"),
            "postgres://approval@db.internal:5433/approvals?sslmode=require"
        );
        assert_eq!(
            redacted("postgres://db.internal/approvals"),
            "postgres://db.internal/approvals"
        );
        assert_eq!(redacted("mysql://u:p@h/d"), "mysql://u@h/d");
        assert_eq!(redacted("hunter2"), "(not a URL)");
    }
}
