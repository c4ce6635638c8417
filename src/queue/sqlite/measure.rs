//! SQL the benchmark needs beyond the queue's API: the raw-commit ceiling on the same disk,
//! a plain-SQL producer (as another service would write), large tables built in one
//! statement, WAL checkpoints, and the event log the figures are computed from.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection};

use super::{QueueError, SqliteStore, connect_options};
use crate::queue::EventTiming;

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

impl SqliteStore {
    /// Inserts `count` queued jobs with `payload`, due at `run_at_ms`, in one
    /// `INSERT … SELECT` over a recursive CTE (a million rows take seconds, not minutes).
    pub(in crate::queue) async fn fill(
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
    pub(in crate::queue) async fn checkpoint_wal(&self) -> Result<(), QueueError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every event, oldest first.
    pub(in crate::queue) async fn event_log(&self) -> Result<Vec<EventTiming>, QueueError> {
        Ok(
            sqlx::query_as(
                "SELECT job_id, at, kind, step, duration_ms FROM job_events ORDER BY id",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// `(created_at, first claimed at)` of every job claimed at least once.
    pub(in crate::queue) async fn pickups(&self) -> Result<Vec<(i64, i64)>, QueueError> {
        Ok(sqlx::query_as(
            "SELECT j.created_at, MIN(e.at) FROM jobs j \
             JOIN job_events e ON e.job_id = j.id AND e.kind = 'claimed' \
             GROUP BY j.id ORDER BY j.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
