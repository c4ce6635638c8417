//! Call slots shared by every host: the next free slot of each app's API, moved forward
//! atomically when a process takes some.

use super::PgStore;
use crate::queue::QueueError;

/// `$1` app, `$2` endpoint, `$3` now (µs), `$4` how many slots, `$5` µs between slots:
/// takes `$4` consecutive slots from the later of the next free one and now, and returns
/// the first. Concurrent takers queue on the row and each gets its own run of slots.
const TAKE_SLOTS_SQL: &str = "\
INSERT INTO dingtalk_call_slots AS s (app_key, endpoint, next_slot_us)
VALUES ($1, $2, $3 + $4 * $5)
ON CONFLICT (app_key, endpoint)
DO UPDATE SET next_slot_us = greatest(s.next_slot_us, $3) + $4 * $5
RETURNING next_slot_us - $4 * $5";

impl PgStore {
    /// Takes `count` call slots `interval_us` apart for `endpoint` of `app_key`; returns when
    /// the first is (unix µs).
    pub(in crate::queue) async fn take_slots(
        &self,
        app_key: &str,
        endpoint: &str,
        count: u32,
        interval_us: i64,
        now_us: i64,
    ) -> Result<i64, QueueError> {
        let first = sqlx::query_scalar(TAKE_SLOTS_SQL)
            .bind(app_key)
            .bind(endpoint)
            .bind(now_us)
            .bind(i64::from(count))
            .bind(interval_us)
            .fetch_one(&self.pool)
            .await?;
        self.count_commit();
        Ok(first)
    }
}
