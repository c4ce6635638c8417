//! DingTalk calls per app and month (`dingtalk_calls`), for the monthly call quota.

use super::{CallDelta, MonthlyCalls, QueueError, SqliteStore, tx};

impl SqliteStore {
    /// Adds call tallies for `app_key` in `month` in one transaction and returns the app's
    /// counted calls of that month afterwards (all processes sharing this database included).
    pub(in crate::queue) async fn add_calls(
        &self,
        app_key: &str,
        month: &str,
        deltas: &[CallDelta],
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let total = tx::immediate(&self.pool, async |conn| {
            for delta in deltas.iter().filter(|d| d.calls > 0) {
                sqlx::query(
                    "INSERT INTO dingtalk_calls \
                         (app_key, month, endpoint, counted, calls, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (app_key, month, endpoint) \
                     DO UPDATE SET calls = calls + excluded.calls, updated_at = excluded.updated_at",
                )
                .bind(app_key)
                .bind(month)
                .bind(&delta.endpoint)
                .bind(delta.counted)
                .bind(i64::try_from(delta.calls).unwrap_or(i64::MAX))
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            }
            counted_calls(conn, app_key, month).await
        })
        .await?;
        self.count_commit();
        Ok(total)
    }

    /// The app's counted calls in `month`.
    pub(in crate::queue) async fn counted_calls(
        &self,
        app_key: &str,
        month: &str,
    ) -> Result<u64, QueueError> {
        let mut conn = self.pool.acquire().await?;
        counted_calls(&mut conn, app_key, month).await
    }

    /// Every app's and endpoint's calls in `month`.
    pub(in crate::queue) async fn monthly_calls(
        &self,
        month: &str,
    ) -> Result<Vec<MonthlyCalls>, QueueError> {
        Ok(sqlx::query_as(
            "SELECT app_key, month, endpoint, counted, calls FROM dingtalk_calls \
             WHERE month = ?1 ORDER BY app_key, endpoint",
        )
        .bind(month)
        .fetch_all(&self.pool)
        .await?)
    }
}

async fn counted_calls(
    conn: &mut sqlx::SqliteConnection,
    app_key: &str,
    month: &str,
) -> Result<u64, QueueError> {
    let (total,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(SUM(calls), 0) FROM dingtalk_calls \
         WHERE app_key = ?1 AND month = ?2 AND counted = 1",
    )
    .bind(app_key)
    .bind(month)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(total).unwrap_or(0))
}
