//! Reads and bulk writes for the benchmark, on either store.

use sqlx::FromRow;

use super::{Queue, QueueError};

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
    /// Inserts `count` queued jobs with `payload`, due at `run_at_ms`, in one statement (a
    /// million rows take seconds, not minutes).
    pub(crate) async fn fill(
        &self,
        count: u64,
        payload: &str,
        run_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        on_store!(self, store => store.fill(count, payload, run_at_ms, now_ms).await)
    }

    /// Before a measurement of the bytes written: a SQLite queue checkpoints its WAL into
    /// the database and truncates it to zero bytes. PostgreSQL's WAL is the server's and
    /// shared with every other database, so there is nothing of the queue's own to reset.
    pub(crate) async fn checkpoint_wal(&self) -> Result<(), QueueError> {
        match self.sqlite() {
            Some(store) => store.checkpoint_wal().await,
            None => Ok(()),
        }
    }

    /// Every event, oldest first.
    pub(crate) async fn event_log(&self) -> Result<Vec<EventTiming>, QueueError> {
        on_store!(self, store => store.event_log().await)
    }

    /// `(created_at, first claimed at)` of every job claimed at least once.
    pub(crate) async fn pickups(&self) -> Result<Vec<(i64, i64)>, QueueError> {
        on_store!(self, store => store.pickups().await)
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
