//! DingTalk calls per app and month (`dingtalk_calls`), for the monthly call quota.

use serde::Serialize;
use sqlx::FromRow;

use super::{Queue, QueueError, tx};

/// DingTalk's months begin at midnight China Standard Time (UTC+8, no daylight saving).
const CHINA_OFFSET_MS: i64 = 8 * 3_600_000;

/// Calls made on one endpoint since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallDelta {
    /// The endpoint, e.g. `storage/files/commit`.
    pub endpoint: String,
    /// Whether DingTalk counts it against the monthly quota.
    pub counted: bool,
    /// How many calls to add.
    pub calls: u64,
}

/// One row of `dingtalk_calls`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, Serialize)]
pub struct MonthlyCalls {
    /// The app (its key).
    pub app_key: String,
    /// `YYYY-MM`, China Standard Time.
    month: String,
    /// The endpoint, e.g. `storage/files/commit`.
    pub endpoint: String,
    /// Whether these calls count against the quota.
    pub(crate) counted: bool,
    /// Calls so far this month.
    pub calls: i64,
}

/// The quota month (`YYYY-MM`, China Standard Time) that `now_ms` falls in.
pub fn quota_month(now_ms: i64) -> String {
    let days = (now_ms + CHINA_OFFSET_MS).div_euclid(86_400_000);
    let (year, month, _) = crate::clock::civil_from_days(days);
    format!("{year:04}-{month:02}")
}

impl Queue {
    /// Adds call tallies for `app_key` in `month` in one transaction and returns the app's
    /// counted calls of that month afterwards (all processes sharing this database included).
    pub async fn add_calls(
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
    pub(crate) async fn counted_calls(
        &self,
        app_key: &str,
        month: &str,
    ) -> Result<u64, QueueError> {
        let mut conn = self.pool.acquire().await?;
        counted_calls(&mut conn, app_key, month).await
    }

    /// Every app's and endpoint's calls in `month`.
    pub async fn monthly_calls(&self, month: &str) -> Result<Vec<MonthlyCalls>, QueueError> {
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

#[cfg(test)]
mod tests {
    use super::quota_month;

    #[test]
    fn the_quota_month_follows_china_standard_time() {
        // 2026-01-31 16:00 UTC is already February 1st in Beijing.
        assert_eq!(quota_month(1_769_875_200_000), "2026-02");
        assert_eq!(quota_month(1_769_875_199_999), "2026-01");
        assert_eq!(quota_month(0), "1970-01");
    }
}
