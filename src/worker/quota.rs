//! The monthly DingTalk call quota: adds this process's call tallies to the database every few
//! seconds, and tells the claim loop when the configured budget is used up.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dingtalk::{CallCount, DingTalk};
use crate::queue::{CallDelta, Queue, QueueError, quota_month};

/// How often call tallies are written: a handful of upserts in one transaction, not one write
/// per call. A crash loses at most this much counting.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Tallies written so far and the month's total as last read.
#[derive(Debug, Default)]
struct Flushed {
    /// Per endpoint: calls already added to the database.
    calls: BTreeMap<&'static str, u64>,
    /// The month of `month_total`.
    month: String,
    /// Counted calls of this app in `month`, all processes, as of the last flush.
    month_total: u64,
}

/// Quota bookkeeping for one app.
#[derive(Debug)]
pub(crate) struct CallQuota {
    app_key: String,
    budget: Option<u64>,
    /// One flush at a time, so no tally is added twice.
    flushed: tokio::sync::Mutex<Flushed>,
    /// The month total and per-endpoint tallies of the last flush, readable without awaiting.
    seen: std::sync::Mutex<(u64, BTreeMap<&'static str, u64>)>,
}

impl CallQuota {
    /// Bookkeeping for `app_key` with an optional monthly budget.
    pub(crate) fn new(app_key: String, budget: Option<u64>) -> CallQuota {
        CallQuota {
            app_key,
            budget,
            flushed: tokio::sync::Mutex::new(Flushed::default()),
            seen: std::sync::Mutex::new((0, BTreeMap::new())),
        }
    }

    /// The configured budget.
    pub(crate) fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// Adds the calls made since the last flush and reads the month's total back.
    pub(crate) async fn flush(
        &self,
        queue: &Queue,
        dingtalk: &DingTalk,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let mut flushed = self.flushed.lock().await;
        let current = sent_per_endpoint(&dingtalk.call_counts());
        let deltas: Vec<CallDelta> = current
            .iter()
            .map(|(endpoint, (calls, counted))| CallDelta {
                endpoint: (*endpoint).to_string(),
                counted: *counted,
                calls: calls.saturating_sub(flushed.calls.get(endpoint).copied().unwrap_or(0)),
            })
            .filter(|delta| delta.calls > 0)
            .collect();
        let month = quota_month(now_ms);
        let total = if deltas.is_empty() && flushed.month == month {
            // Other processes may have added calls: read, but write nothing.
            queue.counted_calls(&self.app_key, &month).await?
        } else {
            queue
                .add_calls(&self.app_key, &month, &deltas, now_ms)
                .await?
        };
        flushed.calls = current
            .iter()
            .map(|(endpoint, (calls, _))| (*endpoint, *calls))
            .collect();
        flushed.month = month;
        flushed.month_total = total;
        *self.seen() = (total, flushed.calls.clone());
        Ok(total)
    }

    /// Counted calls this month: the database's total at the last flush plus this process's
    /// calls since.
    pub(crate) fn used(&self, dingtalk: &DingTalk) -> u64 {
        let (total, base) = self.seen().clone();
        let unflushed: u64 = sent_per_endpoint(&dingtalk.call_counts())
            .iter()
            .filter(|(_, (_, counted))| *counted)
            .map(|(endpoint, (calls, _))| {
                calls.saturating_sub(base.get(endpoint).copied().unwrap_or(0))
            })
            .sum();
        total + unflushed
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<&'static str, u64>)> {
        // Plain numbers: a panic elsewhere cannot leave them half-updated.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `(used, budget)` when a budget is configured.
    pub(crate) fn usage(&self, dingtalk: &DingTalk) -> Option<(u64, u64)> {
        self.budget.map(|budget| (self.used(dingtalk), budget))
    }

    /// `(used, budget)` when the budget is used up.
    pub(crate) fn exhausted(&self, dingtalk: &DingTalk) -> Option<(u64, u64)> {
        self.usage(dingtalk).filter(|(used, budget)| used >= budget)
    }
}

/// Calls that may have reached DingTalk, per endpoint, with whether the quota counts them.
fn sent_per_endpoint(counts: &[CallCount]) -> BTreeMap<&'static str, (u64, bool)> {
    let mut out: BTreeMap<&'static str, (u64, bool)> = BTreeMap::new();
    for count in counts.iter().filter(|c| c.sent) {
        let entry = out
            .entry(count.endpoint)
            .or_insert((0, count.counts_against_quota()));
        entry.0 += count.calls;
    }
    out
}
