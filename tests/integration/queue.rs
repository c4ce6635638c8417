//! The queue's contract, asserted on stored rows: the claim's order, fencing, rescue,
//! idempotency, cancel and retry. Each test of the contract runs on both stores: once on a
//! SQLite file (`on_sqlite`) and once on a PostgreSQL database of its own (`on_postgres`).

use approval_worker::approval::CREATE_STEP;
use approval_worker::queue::{
    ClaimedJob, Failure, NewJob, Queue, QueueError, StepDone, Unstored, now_ms,
};
use serde_json::json;

use crate::helpers::event_kinds;

async fn fresh() -> (tempfile::TempDir, Queue) {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&dir.path().join("q.db")).await.unwrap();
    (dir, queue)
}

contract!(
    an_idle_claim_takes_no_write_and_a_claim_after_a_full_one_skips_the_count,
    the_claim_takes_due_jobs_by_priority_then_age_and_leases_them,
    a_stale_attempt_cannot_write_after_the_job_was_rescued_and_claimed_again,
    every_transition_leaves_one_event,
    a_release_requeues_at_the_checkpoint_without_charging_the_attempt,
    cancel_stops_a_queued_job_at_once_and_flags_a_running_one,
    retry_requeues_a_failed_job_with_a_fresh_set_of_attempts,
    a_batch_enqueue_is_one_transaction_and_dedupes_keys_within_it,
    a_write_records_the_unstored_steps_before_its_own_event_and_stores_the_step_reached,
    unstored_steps_of_a_write_whose_fence_fails_are_not_recorded,
    a_paused_queue_is_not_claimed_until_resumed_and_other_queues_go_on,
);

/// The `space` step, done at `at_ms` in 1 ms.
fn space_done(at_ms: i64) -> StepDone {
    StepDone {
        step: "space",
        duration_ms: 1,
        at_ms,
    }
}

/// Claims the one due job as `owner` with a lease of `lease_ms`.
async fn claim_one(queue: &Queue, owner: &str, lease_ms: i64, now_ms: i64) -> ClaimedJob {
    queue
        .claim("default", owner, 1, lease_ms, now_ms)
        .await
        .unwrap()
        .remove(0)
}

fn job() -> NewJob {
    NewJob {
        payload: json!({"process_code": "PROC-1"}).to_string(),
        ..NewJob::default()
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _queue) = fresh().await;
    let mode = std::fs::metadata(dir.path().join("q.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn the_claim_walks_its_index_without_sorting() {
    let (_dir, queue) = fresh().await;
    let plan = queue.claim_plan().await.unwrap().join("\n");
    assert!(plan.contains("jobs_claim"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

async fn the_claim_takes_due_jobs_by_priority_then_age_and_leases_them(queue: Queue) {
    let now = now_ms();
    let low = queue.enqueue(&job(), now).await.unwrap().id;
    let high = queue
        .enqueue(
            &NewJob {
                priority: 5,
                ..job()
            },
            now,
        )
        .await
        .unwrap()
        .id;
    let later = queue
        .enqueue(
            &NewJob {
                run_at: Some(now + 60_000),
                ..job()
            },
            now,
        )
        .await
        .unwrap()
        .id;
    let first = queue.claim("default", "w1", 1, 30_000, now).await.unwrap();
    assert_eq!(first.iter().map(|j| j.id).collect::<Vec<_>>(), vec![high]);
    let rest = queue.claim("default", "w1", 10, 30_000, now).await.unwrap();
    assert_eq!(rest.iter().map(|j| j.id).collect::<Vec<_>>(), vec![low]);
    let row = queue.get(low).await.unwrap();
    assert_eq!((row.status.as_str(), row.attempt), ("running", 1));
    assert_eq!(row.lease_owner.as_deref(), Some("w1"));
    assert_eq!(row.lease_expires_at, Some(now + 30_000));
    assert_eq!(queue.get(later).await.unwrap().status, "queued");
}

async fn a_stale_attempt_cannot_write_after_the_job_was_rescued_and_claimed_again(queue: Queue) {
    let now = now_ms();
    let id = queue.enqueue(&job(), now).await.unwrap().id;
    let stale = claim_one(&queue, "w1", 1_000, now).await;
    assert_eq!(queue.rescue(now + 2_000).await.unwrap(), vec![id]);
    let fresh_claim = claim_one(&queue, "w2", 30_000, now + 2_000).await;
    assert_eq!(fresh_claim.attempt, 2);

    let refused = queue
        .checkpoint(
            stale.fence(),
            &Unstored::default(),
            &space_done(now + 3_000),
            "upload_info",
            "{}",
        )
        .await;
    assert!(
        matches!(refused, Err(QueueError::LeaseLost { .. })),
        "{refused:?}"
    );
    let refused = queue
        .succeed(
            stale.fence(),
            &Unstored::default(),
            "{}",
            "done",
            "{}",
            None,
            now + 3_000,
        )
        .await;
    assert!(
        matches!(refused, Err(QueueError::LeaseLost { .. })),
        "{refused:?}"
    );

    queue
        .checkpoint(
            fresh_claim.fence(),
            &Unstored::default(),
            &space_done(now + 3_000),
            "upload_info",
            r#"{"step":"x"}"#,
        )
        .await
        .unwrap();
    let row = queue.get(id).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.step.as_str(), row.attempt),
        ("running", "upload_info", 2)
    );
    // The rescue did not charge the lost attempt.
    assert_eq!(fresh_claim.charged_attempts(), 1);
}

async fn every_transition_leaves_one_event(queue: Queue) {
    let now = now_ms();
    let id = queue.enqueue(&job(), now).await.unwrap().id;
    let claim = claim_one(&queue, "w1", 30_000, now).await;
    queue
        .checkpoint(
            claim.fence(),
            &Unstored::default(),
            &StepDone {
                step: "space",
                duration_ms: 12,
                at_ms: now,
            },
            "upload_info",
            "{}",
        )
        .await
        .unwrap();
    let failure = Failure {
        step: "upload_info".into(),
        message: "HTTP 503".into(),
        http_status: Some(503),
        duration_ms: 3,
    };
    queue
        .retry_later(claim.fence(), &Unstored::default(), &failure, now + 10, now)
        .await
        .unwrap();
    let claim = claim_one(&queue, "w1", 30_000, now + 10).await;
    queue
        .succeed(
            claim.fence(),
            &Unstored::default(),
            r#"{"instance_id":"i"}"#,
            "done",
            "{}",
            None,
            now + 20,
        )
        .await
        .unwrap();
    let kinds = event_kinds(&queue, id).await;
    assert_eq!(
        kinds,
        [
            "claimed",
            "step_done",
            "retry_scheduled",
            "claimed",
            "succeeded"
        ]
    );
    let events = queue.events(id).await.unwrap();
    assert_eq!(events[2].http_status, Some(503));
    assert_eq!(events[2].error.as_deref(), Some("HTTP 503"));
    let row = queue.get(id).await.unwrap();
    assert_eq!(row.status, "succeeded");
    assert_eq!(row.finished_at, Some(now + 20));
}

async fn a_release_requeues_at_the_checkpoint_without_charging_the_attempt(queue: Queue) {
    let now = now_ms();
    let id = queue.enqueue(&job(), now).await.unwrap().id;
    let claim = claim_one(&queue, "w1", 30_000, now).await;
    queue
        .checkpoint(
            claim.fence(),
            &Unstored::default(),
            &space_done(now),
            "upload_info",
            r#"{"k":1}"#,
        )
        .await
        .unwrap();
    queue
        .release(claim.fence(), &Unstored::default(), now)
        .await
        .unwrap();
    let again = claim_one(&queue, "w1", 30_000, now).await;
    assert_eq!(again.id, id);
    // The same JSON value (PostgreSQL's jsonb spells it its own way).
    let checkpoint: serde_json::Value =
        serde_json::from_str(again.checkpoint.as_deref().unwrap()).unwrap();
    assert_eq!(checkpoint, json!({"k": 1}));
    assert_eq!(again.charged_attempts(), 1);
}

async fn cancel_stops_a_queued_job_at_once_and_flags_a_running_one(queue: Queue) {
    let now = now_ms();
    let queued = queue.enqueue(&job(), now + 1_000).await.unwrap().id;
    let running = queue.enqueue(&job(), now).await.unwrap().id;
    let claim = claim_one(&queue, "w1", 30_000, now).await;
    assert_eq!(claim.id, running);
    assert_eq!(
        queue
            .cancel(queued, CREATE_STEP, now)
            .await
            .unwrap()
            .as_str(),
        "cancelled"
    );
    assert_eq!(
        queue
            .cancel(running, CREATE_STEP, now)
            .await
            .unwrap()
            .as_str(),
        "running"
    );
    let asked = queue
        .checkpoint(
            claim.fence(),
            &Unstored::default(),
            &space_done(now),
            "upload_info",
            "{}",
        )
        .await
        .unwrap();
    assert!(asked, "the checkpoint reports the pending cancel");
    queue
        .cancel_running(claim.fence(), &Unstored::default(), now)
        .await
        .unwrap();
    assert_eq!(queue.get(running).await.unwrap().status, "cancelled");
    assert!(matches!(
        queue.cancel(running, CREATE_STEP, now).await,
        Err(QueueError::WrongStatus { .. })
    ));
}

async fn retry_requeues_a_failed_job_with_a_fresh_set_of_attempts(queue: Queue) {
    let now = now_ms();
    let id = queue
        .enqueue(
            &NewJob {
                max_attempts: Some(1),
                ..job()
            },
            now,
        )
        .await
        .unwrap()
        .id;
    let claim = claim_one(&queue, "w1", 30_000, now).await;
    let failure = Failure {
        step: "space".into(),
        message: "boom".into(),
        ..Failure::default()
    };
    queue
        .fail(claim.fence(), &Unstored::default(), &failure, now)
        .await
        .unwrap();
    queue.retry(id, now).await.unwrap();
    let again = claim_one(&queue, "w1", 30_000, now).await;
    assert_eq!(again.attempt, 2);
    assert_eq!(again.charged_attempts(), 1);
}

async fn a_batch_enqueue_is_one_transaction_and_dedupes_keys_within_it(queue: Queue) {
    let keyed = NewJob {
        idempotency_key: Some("k".into()),
        ..job()
    };
    let out = queue
        .enqueue_many(&[keyed.clone(), job(), keyed], now_ms())
        .await
        .unwrap();
    assert_eq!(out[0].id, out[2].id);
    assert!(out[0].created && out[1].created && !out[2].created);
    let bad = NewJob {
        payload: "{not json".into(),
        ..job()
    };
    assert!(queue.enqueue_many(&[job(), bad], now_ms()).await.is_err());
    assert_eq!(
        queue.list(&Default::default()).await.unwrap().len(),
        0,
        "limit 0 lists nothing"
    );
    let all = approval_worker::queue::JobFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        queue.list(&all).await.unwrap().len(),
        2,
        "the failed batch added nothing"
    );
}

async fn a_write_records_the_unstored_steps_before_its_own_event_and_stores_the_step_reached(
    queue: Queue,
) {
    let now = now_ms();
    let id = queue.enqueue(&job(), now).await.unwrap().id;
    let claim = claim_one(&queue, "w1", 30_000, now).await;
    let mut unstored = Unstored::default();
    unstored.push(space_done(now + 1), "upload_info");
    let upload_info = StepDone {
        step: "upload_info",
        duration_ms: 2,
        at_ms: now + 3,
    };
    unstored.push(upload_info, "put");
    let failure = Failure {
        step: "put".into(),
        message: "OSS 503".into(),
        http_status: Some(503),
        duration_ms: 4,
    };
    queue
        .retry_later(claim.fence(), &unstored, &failure, now + 60_000, now + 7)
        .await
        .unwrap();

    let events = queue.events(id).await.unwrap();
    let history: Vec<(String, Option<String>, i64)> = events
        .iter()
        .map(|e| (e.kind.clone(), e.step.clone(), e.at))
        .collect();
    assert_eq!(
        history,
        vec![
            ("claimed".into(), None, now),
            ("step_done".into(), Some("space".into()), now + 1),
            ("step_done".into(), Some("upload_info".into()), now + 3),
            ("retry_scheduled".into(), Some("put".into()), now + 7),
        ]
    );
    let row = queue.get(id).await.unwrap();
    assert_eq!(
        (row.status.as_str(), row.step.as_str(), row.checkpoint),
        ("queued", "put", None),
        "the step reached is stored; the checkpoint stays the last one stored"
    );
}

async fn unstored_steps_of_a_write_whose_fence_fails_are_not_recorded(queue: Queue) {
    let now = now_ms();
    let id = queue.enqueue(&job(), now).await.unwrap().id;
    let stale = claim_one(&queue, "w1", 1_000, now).await;
    queue.rescue(now + 5_000).await.unwrap();
    let mut unstored = Unstored::default();
    unstored.push(space_done(now + 6_000), "upload_info");
    let refused = queue
        .fail(
            stale.fence(),
            &unstored,
            &Failure {
                step: "upload_info".into(),
                message: "late".into(),
                http_status: None,
                duration_ms: 1,
            },
            now + 6_000,
        )
        .await;
    assert!(
        matches!(refused, Err(QueueError::LeaseLost { .. })),
        "{refused:?}"
    );
    let kinds = event_kinds(&queue, id).await;
    assert_eq!(kinds, ["claimed", "rescued"]);
}

async fn an_idle_claim_takes_no_write_and_a_claim_after_a_full_one_skips_the_count(queue: Queue) {
    let now = now_ms();
    let claim = |limit| queue.claim("default", "w1", limit, 30_000, now);
    let before = queue.commits();
    assert!(claim(4).await.unwrap().is_empty());
    assert_eq!(queue.commits(), before, "nothing due: a read only");

    queue.enqueue(&job(), now).await.unwrap();
    queue.enqueue(&job(), now).await.unwrap();
    let waiting = queue.enqueue(&job(), now + 60_000).await.unwrap().id;
    let before = queue.commits();
    assert_eq!(claim(2).await.unwrap().len(), 2);
    // After a full claim the next claims straight away: with nothing due it is an empty
    // write, and the job waiting in backoff is not taken early.
    assert!(claim(2).await.unwrap().is_empty());
    assert_eq!(queue.commits() - before, 2);
    // After a short claim the next counts first again and writes nothing.
    let before = queue.commits();
    assert!(claim(2).await.unwrap().is_empty());
    assert_eq!(queue.commits(), before);
    assert_eq!(queue.get(waiting).await.unwrap().status, "queued");
}

async fn a_paused_queue_is_not_claimed_until_resumed_and_other_queues_go_on(queue: Queue) {
    let now = now_ms();
    let paused = queue.enqueue(&job(), now).await.unwrap().id;
    let other = NewJob {
        queue: Some("other".to_owned()),
        ..job()
    };
    let elsewhere = queue.enqueue(&other, now).await.unwrap().id;
    assert!(queue.pause("default", Some("outage"), now).await.unwrap());
    assert!(
        !queue
            .pause("default", Some("again"), now + 1)
            .await
            .unwrap(),
        "the first pause stands"
    );
    assert!(
        queue
            .claim("default", "w1", 10, 30_000, now + 5)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = queue
        .claim("other", "w1", 10, 30_000, now + 5)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        [elsewhere]
    );
    let listed = queue.paused().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].queue.as_str(),
            listed[0].paused_at,
            listed[0].reason.as_deref()
        ),
        ("default", now, Some("outage"))
    );
    assert!(queue.resume("default").await.unwrap());
    assert!(!queue.resume("default").await.unwrap(), "resumed already");
    let claimed = queue
        .claim("default", "w1", 10, 30_000, now + 6)
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), [paused]);
}
