//! SQL the benchmark needs beyond the queue's API: the raw-commit ceiling on the same disk,
//! a plain-SQL producer (as another service would write), large tables built in one
//! statement, WAL checkpoints, and the event log the figures are computed from.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::{Connection, FromRow, SqliteConnection};

use super::{Queue, QueueError, connect_options};

/// Commits `commits` single-row inserts, one autocommit each, into a fresh table in a new
/// file at `path`, through sqlx with the queue's connection settings. Returns the time taken.
pub(crate) async fn raw_commits(path: &Path, commits: u32) -> Result<Duration, QueueError> {
    let mut conn = SqliteConnection::connect_with(&connect_options(path)).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS ceiling (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)")
        .execute(&mut conn)
        .await?;
    let started = Instant::now();
    for at in 0..commits {
        sqlx::query("INSERT INTO ceiling (at) VALUES (?1)")
            .bind(i64::from(at))
            .execute(&mut conn)
            .await?;
    }
    let elapsed = started.elapsed();
    conn.close().await?;
    Ok(elapsed)
}

/// A producer that is not the queue: one connection and the plain `INSERT` the README
/// documents for other services, relying on the schema's defaults.
#[derive(Debug)]
pub(crate) struct PlainProducer {
    conn: SqliteConnection,
}

impl PlainProducer {
    /// Connects to an existing queue database.
    pub(crate) async fn connect(path: &Path) -> Result<PlainProducer, QueueError> {
        let options = connect_options(path).create_if_missing(false);
        Ok(PlainProducer {
            conn: SqliteConnection::connect_with(&options).await?,
        })
    }

    /// `INSERT INTO jobs (payload) VALUES (?)`, autocommit.
    pub(crate) async fn insert(&mut self, payload: &str) -> Result<(), QueueError> {
        sqlx::query("INSERT INTO jobs (payload) VALUES (?1)")
            .bind(payload)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }
}

/// One row of `job_events`, as the benchmark reads them.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct EventTiming {
    pub(crate) job_id: i64,
    /// Unix ms.
    pub(crate) at: i64,
    pub(crate) kind: String,
    pub(crate) step: Option<String>,
    /// How long the step ran.
    pub(crate) duration_ms: Option<i64>,
}

impl Queue {
    /// Inserts `count` queued jobs with `payload`, due at `run_at_ms`, in one
    /// `INSERT … SELECT` over a recursive CTE (a million rows take seconds, not minutes).
    pub(crate) async fn fill(
        &self,
        count: u64,
        payload: &str,
        run_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
             INSERT INTO jobs (payload, run_at, created_at, updated_at) \
             SELECT ?2, ?3, ?4, ?4 FROM n",
        )
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .bind(payload)
        .bind(run_at_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.count_commit();
        Ok(())
    }

    /// Checkpoints the WAL into the database and truncates it to zero bytes.
    pub(crate) async fn checkpoint_wal(&self) -> Result<(), QueueError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every event, oldest first.
    pub(crate) async fn event_log(&self) -> Result<Vec<EventTiming>, QueueError> {
        Ok(
            sqlx::query_as(
                "SELECT job_id, at, kind, step, duration_ms FROM job_events ORDER BY id",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// `(created_at, first claimed at)` of every job claimed at least once.
    pub(crate) async fn pickups(&self) -> Result<Vec<(i64, i64)>, QueueError> {
        Ok(sqlx::query_as(
            "SELECT j.created_at, MIN(e.at) FROM jobs j \
             JOIN job_events e ON e.job_id = j.id AND e.kind = 'claimed' \
             GROUP BY j.id ORDER BY j.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many jobs have one of `statuses`, from one read of the counts per status (each
    /// status through its partial index, as the metrics count).
    pub(crate) async fn count_statuses(&self, statuses: &[&str]) -> Result<i64, QueueError> {
        Ok(self
            .status_counts()
            .await?
            .into_iter()
            .filter(|(name, _)| statuses.contains(&name.as_str()))
            .map(|(_, jobs)| jobs)
            .sum())
    }
}
