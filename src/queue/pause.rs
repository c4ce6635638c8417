//! Paused queues: an operator's stop on claiming a queue's jobs, obeyed by every process at
//! its next claim (the claim statements skip a paused queue), whichever store.

use serde::Serialize;
use sqlx::FromRow;

use super::text::Lossy;
use super::{Queue, QueueError};

/// A paused queue.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct PausedQueue {
    /// The queue's name.
    #[sqlx(try_from = "Lossy")]
    pub queue: String,
    /// When it was paused (unix ms).
    pub paused_at: i64,
    /// Why, as the operator said.
    #[sqlx(try_from = "Lossy")]
    pub reason: Option<String>,
}

impl Queue {
    /// Pauses `queue`; `false` when it was paused already (the first pause's time and reason
    /// stay).
    pub async fn pause(
        &self,
        queue: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        on_store!(self, store => store.pause(queue, reason, now_ms).await)
    }

    /// Resumes `queue`; `false` when it was not paused.
    pub async fn resume(&self, queue: &str) -> Result<bool, QueueError> {
        on_store!(self, store => store.resume(queue).await)
    }

    /// The paused queues, by name.
    pub async fn paused(&self) -> Result<Vec<PausedQueue>, QueueError> {
        on_store!(self, store => store.paused().await)
    }
}
