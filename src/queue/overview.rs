//! The queue at a glance, for the dashboard's overview: jobs per queue, and jobs finished
//! per time bucket. Both read only the partial indexes of unfinished and finished jobs.

use serde::Serialize;

use super::text::Lossy;
use super::{Queue, QueueError};

/// The jobs of one queue that are not done yet, and its failures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// The queue's name.
    pub queue: String,
    /// Queued jobs, due or waiting for a later retry.
    pub queued: i64,
    /// Queued jobs whose `run_at` has come: waiting for a worker.
    pub due: i64,
    /// Jobs a worker holds.
    pub running: i64,
    /// Jobs that failed for good.
    pub failed: i64,
}

/// Jobs that finished within one bucket of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FinishedBucket {
    /// The bucket's start (unix ms).
    pub from_ms: i64,
    /// Jobs that succeeded in it.
    pub succeeded: i64,
    /// Jobs that failed in it.
    pub failed: i64,
}

impl Queue {
    /// Every queue that has queued, running or failed jobs, by name.
    pub async fn queue_counts(&self, now_ms: i64) -> Result<Vec<QueueCounts>, QueueError> {
        let rows: Vec<(Lossy, String, i64, i64)> =
            on_store!(self, store => store.queue_counts(now_ms).await)?;
        let mut queues: Vec<QueueCounts> = Vec::new();
        for (queue, status, count, due) in rows {
            let queue = Option::<String>::from(queue).unwrap_or_default();
            let index = match queues.iter().position(|q| q.queue == queue) {
                Some(index) => index,
                None => {
                    queues.push(QueueCounts {
                        queue,
                        ..QueueCounts::default()
                    });
                    queues.len() - 1
                }
            };
            let counts = &mut queues[index];
            match status.as_str() {
                "queued" => {
                    counts.queued = count;
                    counts.due = due;
                }
                "running" => counts.running = count,
                _ => counts.failed = count,
            }
        }
        queues.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(queues)
    }

    /// Jobs succeeded and failed in each of `buckets` consecutive spans of `bucket_ms`
    /// starting at `from_ms`, oldest first, every bucket present.
    pub async fn finished_per_bucket(
        &self,
        from_ms: i64,
        bucket_ms: i64,
        buckets: usize,
    ) -> Result<Vec<FinishedBucket>, QueueError> {
        let bucket_ms = bucket_ms.max(1);
        let rows: Vec<(String, i64, i64)> =
            on_store!(self, store => store.finished_per_bucket(from_ms, bucket_ms).await)?;
        let mut out: Vec<FinishedBucket> = (0..buckets)
            .map(|n| FinishedBucket {
                from_ms: from_ms + bucket_ms * i64::try_from(n).unwrap_or(0),
                ..FinishedBucket::default()
            })
            .collect();
        for (status, bucket, count) in rows {
            // A finish stamped after now (another host's clock) falls past the last bucket.
            let Some(slot) = usize::try_from(bucket).ok().and_then(|n| out.get_mut(n)) else {
                continue;
            };
            match status.as_str() {
                "succeeded" => slot.succeeded += count,
                _ => slot.failed += count,
            }
        }
        Ok(out)
    }
}
