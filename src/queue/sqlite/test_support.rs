//! Set-up shared by the queue's unit tests.

use serde_json::json;

use crate::queue::now_ms;
use crate::queue::{ClaimedJob, NewJob, Queue};

/// A job with a minimal payload.
pub(super) fn job() -> NewJob {
    NewJob {
        payload: json!({"process_code": "PROC-1"}).to_string(),
        ..NewJob::default()
    }
}

/// An empty queue, in a directory that lives as long as the returned guard.
pub(super) async fn fresh_queue() -> (tempfile::TempDir, Queue) {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&dir.path().join("q.db")).await.unwrap();
    (dir, queue)
}

/// A fresh queue holding `jobs` jobs, all claimed by `w1`.
pub(super) async fn queue_with_claimed(jobs: usize) -> (tempfile::TempDir, Queue, Vec<ClaimedJob>) {
    let (dir, queue) = fresh_queue().await;
    let now = now_ms();
    queue.enqueue_many(&vec![job(); jobs], now).await.unwrap();
    let claimed = queue
        .claim("default", "w1", u32::try_from(jobs).unwrap(), 60_000, now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), jobs);
    (dir, queue, claimed)
}
