//! Tests of the group-commit writer: shared commits, fencing inside a batch, a refused
//! write failing alone, every transition's columns, and ids of batched inserts.

use futures_util::future::join_all;
use serde_json::json;

use crate::queue::sqlite::test_support::queue_with_claimed;
use crate::queue::{NewJob, Queue, QueueError, StepDone, Unstored, now_ms};

/// The `space` step, done at `at_ms` in 1 ms.
fn space_done(at_ms: i64) -> StepDone {
    StepDone {
        step: "space",
        duration_ms: 1,
        at_ms,
    }
}

#[tokio::test]
async fn checkpoints_sent_together_share_one_commit_and_each_keeps_its_event() {
    let (_dir, queue, claimed) = queue_with_claimed(8).await;
    let before = queue.commits();
    let now = now_ms();
    let none = Unstored::default();
    let done = StepDone {
        step: "space",
        duration_ms: 3,
        at_ms: now,
    };
    let results = join_all(
        claimed
            .iter()
            .map(|job| queue.checkpoint(job.fence(), &none, &done, "upload_info", "{\"n\":1}")),
    )
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(queue.commits() - before, 1);
    for job in &claimed {
        let row = queue.get(job.id).await.unwrap();
        assert_eq!(
            (row.step.as_str(), row.checkpoint.as_deref()),
            ("upload_info", Some("{\"n\":1}"))
        );
        let kinds: Vec<String> = queue
            .events(job.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["claimed", "step_done"]);
    }
}

#[tokio::test]
async fn a_stale_fence_in_a_batch_is_refused_alone_and_leaves_no_event() {
    let (_dir, queue, claimed) = queue_with_claimed(2).await;
    let (stale, live) = (&claimed[0], &claimed[1]);
    let now = now_ms();
    // The first job's lease expires and another worker claims it again.
    queue.rescue(now + 120_000).await.unwrap();
    let again = queue
        .claim("default", "w2", 2, 60_000, now + 120_000)
        .await
        .unwrap();
    let live_again = again.iter().find(|j| j.id == live.id).unwrap().fence();
    let results = join_all([
        queue.checkpoint(
            stale.fence(),
            &Unstored::default(),
            &space_done(now + 120_001),
            "upload_info",
            "{}",
        ),
        queue.checkpoint(
            live_again,
            &Unstored::default(),
            &space_done(now + 120_001),
            "upload_info",
            "{}",
        ),
    ])
    .await;
    assert!(
        matches!(results[0], Err(QueueError::LeaseLost { .. })),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");
    let stale_events = queue.events(stale.id).await.unwrap();
    assert!(
        stale_events.iter().all(|e| e.kind != "step_done"),
        "{stale_events:?}"
    );
    assert_eq!(queue.get(stale.id).await.unwrap().step, "space");
}

#[tokio::test]
async fn a_write_the_database_refuses_fails_alone_and_the_rest_of_its_batch_commits() {
    let (_dir, queue, claimed) = queue_with_claimed(2).await;
    let now = now_ms();
    let results = join_all([
        queue.checkpoint(
            claimed[0].fence(),
            &Unstored::default(),
            &space_done(now),
            "upload_info",
            "not json",
        ),
        queue.checkpoint(
            claimed[1].fence(),
            &Unstored::default(),
            &space_done(now),
            "upload_info",
            "{}",
        ),
    ])
    .await;
    assert!(
        matches!(results[0], Err(QueueError::Database(_))),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");
    assert_eq!(queue.get(claimed[0].id).await.unwrap().step, "space");
    assert_eq!(queue.get(claimed[1].id).await.unwrap().step, "upload_info");
}

#[tokio::test]
async fn every_kind_of_transition_writes_its_columns_through_its_own_statement() {
    let (_dir, queue, claimed) = queue_with_claimed(4).await;
    let now = now_ms();
    let failure = crate::queue::Failure {
        step: "put".into(),
        message: "boom".into(),
        http_status: Some(503),
        duration_ms: 7,
    };
    let (a, b, c, d) = (
        claimed[0].fence(),
        claimed[1].fence(),
        claimed[2].fence(),
        claimed[3].fence(),
    );
    let none = Unstored::default();
    let (succeeded, retried, failed, released) = tokio::join!(
        queue.succeed(
            a,
            &none,
            "{\"instance_id\":\"i\"}",
            "done",
            "{\"step\":\"done\"}",
            None,
            now
        ),
        queue.retry_later(b, &none, &failure, now + 5_000, now),
        queue.fail(c, &none, &failure, now),
        queue.release(d, &none, now),
    );
    succeeded.unwrap();
    retried.unwrap();
    failed.unwrap();
    released.unwrap();
    let row = queue.get(a.id).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.step.as_str(), row.finished_at),
        ("succeeded", "done", Some(now))
    );
    assert_eq!(
        (row.result.as_deref(), row.lease_owner),
        (Some("{\"instance_id\":\"i\"}"), None)
    );
    let row = queue.get(b.id).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.run_at, row.last_error.as_deref()),
        ("queued", now + 5_000, Some("boom"))
    );
    assert_eq!((row.lease_owner, row.finished_at), (None, None));
    let row = queue.get(c.id).await.unwrap();
    assert_eq!(
        (
            row.status.as_str(),
            row.last_error.as_deref(),
            row.finished_at
        ),
        ("failed", Some("boom"), Some(now))
    );
    let row = queue.get(d.id).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.uncharged_attempts, row.run_at),
        ("queued", 1, now)
    );
    let event = queue.events(b.id).await.unwrap().pop().unwrap();
    assert_eq!(
        (
            event.kind.as_str(),
            event.step.as_deref(),
            event.http_status,
            event.duration_ms
        ),
        ("retry_scheduled", Some("put"), Some(503), Some(7))
    );
}

#[tokio::test]
async fn jobs_added_in_one_statement_or_several_get_the_ids_of_their_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&dir.path().join("q.db")).await.unwrap();
    let now = now_ms();
    let job = |n: usize, key: Option<&str>| NewJob {
        payload: json!({ "n": n }).to_string(),
        idempotency_key: key.map(str::to_owned),
        ..NewJob::default()
    };
    let seen = queue.enqueue(&job(0, Some("k-old")), now).await.unwrap();
    // Three rows, numbered by SQLite in one statement: a new key twice and a known key.
    let small = queue
        .enqueue_many(
            &[
                job(1, Some("k-new")),
                job(2, None),
                job(3, Some("k-new")),
                job(4, Some("k-old")),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        small.iter().map(|e| e.created).collect::<Vec<_>>(),
        [true, true, false, false]
    );
    assert_eq!(small[2].id, small[0].id, "the repeat of a key in the batch");
    assert_eq!(small[3].id, seen.id, "a key seen before");
    // More rows than one statement holds: numbered before the statements.
    let many: Vec<NewJob> = (100..400).map(|n| job(n, None)).collect();
    let large = queue.enqueue_many(&many, now).await.unwrap();
    assert!(large.iter().all(|e| e.created));
    for (n, enqueued) in [(1, small[0]), (2, small[1])]
        .into_iter()
        .chain((100..400).zip(large))
    {
        let stored: serde_json::Value =
            serde_json::from_str(&queue.get(enqueued.id).await.unwrap().payload).unwrap();
        assert_eq!(stored["n"], n, "job {} holds row {n}", enqueued.id);
    }
}
