//! DingTalk calls per app and month, for the monthly call quota: the tallies workers add and
//! the month they fall in, whichever store keeps them.

use serde::Serialize;
use sqlx::FromRow;

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
