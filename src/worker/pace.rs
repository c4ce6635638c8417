//! DingTalk's rate limit shared by every process on one PostgreSQL queue: call slots taken
//! from the database a few at a time, so the sum over all hosts stays within the app's limit.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::now_us;
use crate::dingtalk::SharedPace;
use crate::queue::Queue;

/// Slots taken per database round trip: about a tenth of a second of the limit, so a
/// process holds little of the budget that it might not use, and the database sees a few
/// updates a second per API.
fn batch_for(per_sec: u32) -> u32 {
    (per_sec / 10).clamp(1, 10)
}

/// How much wider than the limit slots are spaced, in parts per thousand. A call leaves a
/// few milliseconds after its slot, by an amount that varies from call to call, and DingTalk
/// counts calls in one-second windows: spaced exactly at the limit, a window that opens with
/// a late call can close after an early 21st. Twenty slots 3.5 % wider leave 35 ms of slack.
const SPACING_MARGIN_PER_MILLE: i64 = 35;

/// How late a call may leave after its slot, in µs: half the slack the margin leaves in a
/// second. Any 21 consecutive slots span more than a second by the whole slack, so calls that
/// leave at most half of it late can never put 21 into one second.
const LATENESS_US: i64 = 1_000 * SPACING_MARGIN_PER_MILLE / 2;

/// µs between slots for `per_sec` calls per second (more than 0), margin included.
fn interval_us(per_sec: u32) -> i64 {
    1_000_000 * (1_000 + SPACING_MARGIN_PER_MILLE) / (1_000 * i64::from(per_sec.max(1)))
}

/// Call slots from the database, per endpoint. A slot that has gone by unused (its caller
/// never came, or woke too late) is dropped, not used late: a late call would land next to
/// the following slot, perhaps another process's, and break the spacing. Up to
/// [`LATENESS_US`] late is tolerated.
pub(crate) struct DbPace {
    queue: Queue,
    app_key: String,
    interval_us: i64,
    batch: u32,
    /// Per endpoint, the slots this process holds, earliest first. One lock per endpoint,
    /// held while refilling, so concurrent callers take consecutive slots.
    lanes: Mutex<HashMap<&'static str, Arc<tokio::sync::Mutex<VecDeque<i64>>>>>,
}

impl DbPace {
    /// Slots for `app_key` at `per_sec` calls per second per API (more than 0).
    pub(crate) fn new(queue: Queue, app_key: String, per_sec: u32) -> DbPace {
        DbPace {
            queue,
            app_key,
            interval_us: interval_us(per_sec),
            batch: batch_for(per_sec),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    fn lane(&self, endpoint: &'static str) -> Arc<tokio::sync::Mutex<VecDeque<i64>>> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(lanes.entry(endpoint).or_default())
    }

    /// The next slot for `endpoint` (unix µs), from those held or from the database.
    async fn slot(&self, endpoint: &'static str) -> Result<i64, String> {
        let lane = self.lane(endpoint);
        let mut held = lane.lock().await;
        loop {
            let now = now_us();
            while held.front().is_some_and(|slot| *slot < now - LATENESS_US) {
                held.pop_front();
            }
            if let Some(slot) = held.pop_front() {
                return Ok(slot);
            }
            let first = self
                .queue
                .take_call_slots(&self.app_key, endpoint, self.batch, self.interval_us, now)
                .await
                .map_err(|e| e.to_string())?;
            held.extend((0..i64::from(self.batch)).map(|n| first + n * self.interval_us));
        }
    }
}

impl SharedPace for DbPace {
    fn until_slot(
        &self,
        endpoint: &'static str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            loop {
                let slot = self.slot(endpoint).await?;
                let wait = slot - now_us();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_micros(wait.unsigned_abs())).await;
                }
                // On a busy host the sleep can end well after the slot: sent now, the call
                // would crowd the next slot, perhaps another process's. The slot is given up
                // and the next one taken instead.
                if now_us() - slot <= LATENESS_US {
                    return Ok(());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{batch_for, interval_us};

    #[test]
    fn slots_are_spaced_a_little_wider_than_the_limit() {
        assert_eq!(interval_us(20), 51_750);
        assert_eq!(interval_us(1), 1_035_000);
        assert_eq!(interval_us(0), 1_035_000, "never a division by zero");
    }

    #[test]
    fn a_batch_is_a_tenth_of_a_second_of_the_limit_within_one_and_ten_slots() {
        assert_eq!(batch_for(1), 1);
        assert_eq!(batch_for(20), 2);
        assert_eq!(batch_for(45), 4);
        assert_eq!(batch_for(10_000), 10);
    }
}
