//! DingTalk calls per app and month on PostgreSQL: every host adds its tallies to the same
//! rows, so the monthly budget is the app's, not one host's.

use super::PgStore;
use crate::queue::{CallDelta, MonthlyCalls, QueueError};

/// `$1` app, `$2` month, `$3` endpoints, `$4` counted flags, `$5` calls, `$6` now: adds the
/// tallies, one upsert for all endpoints.
const ADD_CALLS_SQL: &str = "\
INSERT INTO dingtalk_calls (app_key, month, endpoint, counted, calls, updated_at)
SELECT $1, $2, endpoint, counted, calls, $6
FROM unnest($3::text[], $4::boolean[], $5::bigint[]) AS d (endpoint, counted, calls)
ON CONFLICT (app_key, month, endpoint)
DO UPDATE SET calls = dingtalk_calls.calls + excluded.calls, updated_at = excluded.updated_at";

/// `$1` app, `$2` month.
const COUNTED_CALLS_SQL: &str = "SELECT coalesce(sum(calls), 0)::bigint FROM dingtalk_calls \
     WHERE app_key = $1 AND month = $2 AND counted";

/// `$1` month.
const MONTHLY_CALLS_SQL: &str = "SELECT app_key, month, endpoint, counted, calls \
     FROM dingtalk_calls WHERE month = $1 ORDER BY app_key, endpoint";

impl PgStore {
    /// Adds call tallies and returns the app's counted calls of `month` afterwards, every
    /// host's included.
    pub(in crate::queue) async fn add_calls(
        &self,
        app_key: &str,
        month: &str,
        deltas: &[CallDelta],
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let deltas: Vec<&CallDelta> = deltas.iter().filter(|d| d.calls > 0).collect();
        let endpoints: Vec<&str> = deltas.iter().map(|d| d.endpoint.as_str()).collect();
        let counted: Vec<bool> = deltas.iter().map(|d| d.counted).collect();
        let calls: Vec<i64> = deltas
            .iter()
            .map(|d| i64::try_from(d.calls).unwrap_or(i64::MAX))
            .collect();
        if !deltas.is_empty() {
            sqlx::query(ADD_CALLS_SQL)
                .bind(app_key)
                .bind(month)
                .bind(&endpoints)
                .bind(&counted)
                .bind(&calls)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
            self.count_commit();
        }
        // Read after the upsert committed: other hosts' tallies are in it too.
        self.counted_calls(app_key, month).await
    }

    /// The app's counted calls in `month`.
    pub(in crate::queue) async fn counted_calls(
        &self,
        app_key: &str,
        month: &str,
    ) -> Result<u64, QueueError> {
        let total: i64 = sqlx::query_scalar(COUNTED_CALLS_SQL)
            .bind(app_key)
            .bind(month)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// Every app's and endpoint's calls in `month`.
    pub(in crate::queue) async fn monthly_calls(
        &self,
        month: &str,
    ) -> Result<Vec<MonthlyCalls>, QueueError> {
        Ok(sqlx::query_as(MONTHLY_CALLS_SQL)
            .bind(month)
            .fetch_all(&self.pool)
            .await?)
    }
}
