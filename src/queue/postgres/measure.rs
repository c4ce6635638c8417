//! The benchmark's bulk insert and event reads on PostgreSQL.

use super::PgStore;
use crate::queue::{EventTiming, QueueError};

/// `$1` how many, `$2` payload, `$3` run_at, `$4` now.
const FILL_SQL: &str = "INSERT INTO jobs (payload, run_at, created_at, updated_at) \
     SELECT $2::jsonb, $3, $4, $4 FROM generate_series(1, $1)";

const EVENT_LOG_SQL: &str =
    "SELECT job_id, at, kind, step, duration_ms FROM job_events ORDER BY id";

const PICKUPS_SQL: &str = "SELECT j.created_at, min(e.at) FROM jobs j \
     JOIN job_events e ON e.job_id = j.id AND e.kind = 'claimed' \
     GROUP BY j.id ORDER BY j.id";

impl PgStore {
    /// Inserts `count` queued jobs with `payload`, due at `run_at_ms`.
    pub(in crate::queue) async fn fill(
        &self,
        count: u64,
        payload: &str,
        run_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        sqlx::query(FILL_SQL)
            .bind(i64::try_from(count).unwrap_or(i64::MAX))
            .bind(payload)
            .bind(run_at_ms)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        self.count_commit();
        Ok(())
    }

    /// Every event, oldest first.
    pub(in crate::queue) async fn event_log(&self) -> Result<Vec<EventTiming>, QueueError> {
        Ok(sqlx::query_as(EVENT_LOG_SQL).fetch_all(&self.pool).await?)
    }

    /// `(created_at, first claimed at)` of every job claimed at least once.
    pub(in crate::queue) async fn pickups(&self) -> Result<Vec<(i64, i64)>, QueueError> {
        Ok(sqlx::query_as(PICKUPS_SQL).fetch_all(&self.pool).await?)
    }
}
