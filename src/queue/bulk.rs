//! Acting on many jobs at once, chosen by a [`JobFilter`] instead of by id: the operator's
//! recovery after an outage (retry every failed job of a queue, cancel a flood of bad ones).
//!
//! Each action is fenced on status as its one-job form is ([`Queue::retry`],
//! [`Queue::cancel`]): a job that changed status between the count an operator was shown and
//! the action is left alone. One call touches at most `cap` jobs, newest first, so that one
//! request holds the database's write lock for a bounded time; [`BulkDone::more`] says
//! whether matching jobs remain for another call.

use serde::Serialize;

use super::{JobFilter, Queue, QueueError};

/// What a bulk action does to each job it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Failed and cancelled jobs go back to the queue at their checkpoint.
    Retry,
    /// Queued jobs are cancelled; running ones (and queued ones that may have sent their
    /// create) are asked to stop at their next checkpoint.
    Cancel,
}

impl BulkAction {
    /// The name in URLs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
        }
    }

    /// The action named `text`.
    pub fn parse(text: &str) -> Option<BulkAction> {
        [BulkAction::Retry, BulkAction::Cancel]
            .into_iter()
            .find(|action| action.as_str() == text)
    }
}

/// What one bulk call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BulkDone {
    /// Jobs retried, or cancelled at once.
    pub acted: u64,
    /// Jobs asked to stop at their next checkpoint (cancel only).
    pub flagged: u64,
    /// Whether jobs matching the filter remain for the action (the cap was reached, or jobs
    /// arrived meanwhile).
    pub more: bool,
}

impl Queue {
    /// How many jobs `action` would take under `filter` now, counting no further than `cap`
    /// (so a count over a million failed jobs costs no more than one over `cap`). The
    /// filter's page (`before_id`) and `limit` are ignored.
    pub async fn count_for(
        &self,
        action: BulkAction,
        filter: &JobFilter,
        cap: i64,
    ) -> Result<u64, QueueError> {
        let count = on_store!(self, store => store.count_for(action, filter, cap.max(0)).await)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Re-queues up to `cap` failed or cancelled jobs matching `filter`, newest first, each
    /// at its checkpoint with a fresh set of attempts and a `retried` event, in one
    /// transaction.
    pub async fn bulk_retry(
        &self,
        filter: &JobFilter,
        cap: i64,
        now_ms: i64,
    ) -> Result<BulkDone, QueueError> {
        let acted = on_store!(self, store => store.bulk_retry(filter, cap.max(0), now_ms).await)?;
        self.bulk_done(BulkAction::Retry, filter, acted, 0).await
    }

    /// Cancels up to `cap` queued or running jobs matching `filter` that were not asked to
    /// stop yet, newest first, in one transaction: as [`Queue::cancel`] does each, a queued
    /// job stops at once unless it is stored at `create_step`, which is flagged like a
    /// running job.
    pub async fn bulk_cancel(
        &self,
        filter: &JobFilter,
        create_step: &str,
        cap: i64,
        now_ms: i64,
    ) -> Result<BulkDone, QueueError> {
        let (acted, flagged) = on_store!(self, store => store.bulk_cancel(filter, create_step, cap.max(0), now_ms).await)?;
        self.bulk_done(BulkAction::Cancel, filter, acted, flagged)
            .await
    }

    async fn bulk_done(
        &self,
        action: BulkAction,
        filter: &JobFilter,
        acted: u64,
        flagged: u64,
    ) -> Result<BulkDone, QueueError> {
        let more = self.count_for(action, filter, 1).await? > 0;
        Ok(BulkDone {
            acted,
            flagged,
            more,
        })
    }
}
