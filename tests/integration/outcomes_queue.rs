//! The outcome store's contract, on both stores: a succeeding job's outcome row goes in with
//! its success, a decision is recorded once and queues one notification, reads and sends
//! are claimed once until their lease lapses and fenced, and prune keeps what is unfinished.

use approval_worker::queue::outcome::{
    CheckDone, Decision, DecisionFollowUp, LearnedFrom, Sent, Verdict,
};
use approval_worker::queue::{Follow, JobFilter, JobStatus, NewJob, Queue, Unstored, now_ms};
use serde_json::{Value, json};

contract!(
    a_succeeding_job_gets_its_pending_outcome_in_the_same_write,
    a_decision_is_recorded_once_and_queues_one_notification,
    a_decision_for_an_instance_that_is_not_ours_changes_nothing,
    a_due_read_is_claimed_once_until_its_lease_lapses_and_a_stale_read_cannot_write,
    a_notification_is_claimed_once_and_its_send_is_fenced,
    prune_keeps_jobs_whose_approval_is_undecided_or_whose_notification_is_unsent,
    jobs_list_by_outcome,
);

fn job(key: &str) -> NewJob {
    NewJob {
        payload: json!({"process_code": "PROC-1"}).to_string(),
        idempotency_key: Some(key.to_owned()),
        ..NewJob::default()
    }
}

/// Enqueues, claims and succeeds a job that created `instance_id`, following it unless
/// `follow` is false. Returns the job id.
async fn submitted(queue: &Queue, key: &str, instance_id: &str, now: i64, follow: bool) -> i64 {
    let id = queue.enqueue(&job(key), now).await.unwrap().id;
    let claim = queue
        .claim("default", "w1", 1, 30_000, now)
        .await
        .unwrap()
        .remove(0);
    let follow = follow.then(|| Follow {
        instance_id: instance_id.to_owned(),
        callback_url: Some(format!("http://127.0.0.1:9/{key}")),
        first_check_at: now + 60_000,
    });
    queue
        .succeed(
            claim.fence(),
            &Unstored::default(),
            &json!({ "instance_id": instance_id }).to_string(),
            "done",
            "{}",
            follow,
            now,
        )
        .await
        .unwrap();
    id
}

fn decision(instance_id: &str, verdict: Verdict) -> Decision {
    Decision {
        instance_id: instance_id.to_owned(),
        verdict,
        decided_at_ms: Some(1_700_000_000_000),
        learned_from: LearnedFrom::Stream,
        records: None,
    }
}

fn follow_up() -> DecisionFollowUp {
    DecisionFollowUp {
        default_url: Some("http://127.0.0.1:9/default".to_owned()),
        fetch_records: true,
    }
}

async fn a_succeeding_job_gets_its_pending_outcome_in_the_same_write(queue: Queue) {
    let now = now_ms();
    let followed = submitted(&queue, "a", "inst-a", now, true).await;
    let not_followed = submitted(&queue, "b", "inst-b", now, false).await;
    let outcome = queue.outcome(followed).await.unwrap().unwrap();
    assert_eq!(outcome.instance_id, "inst-a");
    assert_eq!(outcome.outcome, "pending");
    assert_eq!(outcome.submitted_at, now);
    assert_eq!(outcome.next_check_at, Some(now + 60_000));
    assert_eq!(
        outcome.callback_url.as_deref(),
        Some("http://127.0.0.1:9/a")
    );
    assert!(queue.outcome(not_followed).await.unwrap().is_none());
    assert_eq!(
        queue.get(followed).await.unwrap().outcome.as_deref(),
        Some("pending")
    );
    assert_eq!(queue.get(not_followed).await.unwrap().outcome, None);
}

async fn a_decision_is_recorded_once_and_queues_one_notification(queue: Queue) {
    let now = now_ms();
    let id = submitted(&queue, "a", "inst-a", now, true).await;
    let first = queue
        .record_decisions(
            &[decision("inst-a", Verdict::Refuse)],
            &follow_up(),
            now + 5,
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let recorded = first[0].unwrap();
    assert_eq!((recorded.job_id, recorded.submitted_at), (id, now));
    // Redelivered, or contradicted by a later poll: the first word stands.
    let again = queue
        .record_decisions(
            &[
                decision("inst-a", Verdict::Refuse),
                decision("inst-a", Verdict::Agree),
            ],
            &follow_up(),
            now + 9,
        )
        .await
        .unwrap();
    assert_eq!(again, vec![None, None]);
    let outcome = queue.outcome(id).await.unwrap().unwrap();
    assert_eq!(outcome.outcome, "refuse");
    assert_eq!(outcome.decided_at, Some(1_700_000_000_000));
    assert_eq!(outcome.learned_at, Some(now + 5));
    assert_eq!(outcome.learned_from.as_deref(), Some("stream"));
    // A Stream decision carries no approvers' records: one more read fetches them.
    assert_eq!(outcome.next_check_at, Some(now + 5));
    let deliveries = queue.deliveries(id).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        deliveries[0].url, "http://127.0.0.1:9/a",
        "the job's own URL wins"
    );
    assert_eq!(deliveries[0].status, "pending");
    let due = queue.claim_deliveries(10, 60_000, now + 5).await.unwrap();
    assert_eq!(due.len(), 1);
    let body: Value = serde_json::from_str(&due[0].body).unwrap();
    assert_eq!(body["event"], "approval.decided");
    assert_eq!(body["job_id"], id);
    assert_eq!(body["idempotency_key"], "a");
    assert_eq!(body["instance_id"], "inst-a");
    assert_eq!(body["outcome"], "refuse");
    assert_eq!(body["decided_at"], 1_700_000_000_000_i64);
    assert_eq!(body["delivery_id"], due[0].delivery_id.as_str());
}

async fn a_decision_for_an_instance_that_is_not_ours_changes_nothing(queue: Queue) {
    let now = now_ms();
    let id = submitted(&queue, "a", "inst-a", now, true).await;
    let recorded = queue
        .record_decisions(
            &[decision("someone-else", Verdict::Agree)],
            &follow_up(),
            now,
        )
        .await
        .unwrap();
    assert_eq!(recorded, vec![None]);
    assert_eq!(queue.outcome(id).await.unwrap().unwrap().outcome, "pending");
    assert!(queue.deliveries(id).await.unwrap().is_empty());
}

async fn a_due_read_is_claimed_once_until_its_lease_lapses_and_a_stale_read_cannot_write(
    queue: Queue,
) {
    let now = now_ms();
    let id = submitted(&queue, "a", "inst-a", now, true).await;
    assert!(
        queue.claim_checks(10, 1_000, now).await.unwrap().is_empty(),
        "not due before its first read"
    );
    let due_at = now + 60_000;
    let first = queue.claim_checks(10, 1_000, due_at).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].job_id, first[0].checks), (id, 1));
    assert_eq!(first[0].outcome, "pending");
    assert!(
        queue
            .claim_checks(10, 1_000, due_at + 999)
            .await
            .unwrap()
            .is_empty(),
        "held by the first read"
    );
    let second = queue.claim_checks(10, 1_000, due_at + 1_000).await.unwrap();
    assert_eq!(second[0].checks, 2, "the lapsed read is taken over");
    let stale = CheckDone {
        job_id: id,
        checks: 1,
        next_check_at: Some(due_at + 5),
        records: None,
        error: Some("late".to_owned()),
    };
    assert!(!queue.finish_check(&stale, due_at + 1_001).await.unwrap());
    let current = CheckDone {
        checks: 2,
        next_check_at: Some(due_at + 120_000),
        records: Some(r#"{"tasks":[]}"#.to_owned()),
        error: None,
        ..stale
    };
    assert!(queue.finish_check(&current, due_at + 1_002).await.unwrap());
    let outcome = queue.outcome(id).await.unwrap().unwrap();
    assert_eq!(outcome.next_check_at, Some(due_at + 120_000));
    assert_eq!(outcome.checks, 2);
    assert_eq!(outcome.last_error, None);
    let records: Value = serde_json::from_str(outcome.records.as_deref().unwrap()).unwrap();
    assert_eq!(records, json!({"tasks": []}));
}

async fn a_notification_is_claimed_once_and_its_send_is_fenced(queue: Queue) {
    let now = now_ms();
    let id = submitted(&queue, "a", "inst-a", now, true).await;
    queue
        .record_decisions(&[decision("inst-a", Verdict::Agree)], &follow_up(), now)
        .await
        .unwrap();
    let first = queue.claim_deliveries(10, 1_000, now).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        queue
            .claim_deliveries(10, 1_000, now + 500)
            .await
            .unwrap()
            .is_empty()
    );
    let retry = Sent::Retry {
        status: Some(503),
        error: "HTTP 503".to_owned(),
        at: now + 10_000,
    };
    assert!(
        queue
            .finish_delivery(&first[0], &retry, now + 600)
            .await
            .unwrap()
    );
    let row = &queue.deliveries(id).await.unwrap()[0];
    assert_eq!(
        (
            row.status.as_str(),
            row.attempts,
            row.last_status,
            row.next_attempt_at
        ),
        ("pending", 1, Some(503), Some(now + 10_000))
    );
    let second = queue
        .claim_deliveries(10, 1_000, now + 10_000)
        .await
        .unwrap();
    assert_eq!(second[0].attempts, 2);
    assert!(
        !queue
            .finish_delivery(&first[0], &Sent::Delivered { status: 200 }, now + 10_001)
            .await
            .unwrap(),
        "the first send's answer comes too late to count"
    );
    assert!(
        queue
            .finish_delivery(&second[0], &Sent::Delivered { status: 204 }, now + 10_002)
            .await
            .unwrap()
    );
    let row = &queue.deliveries(id).await.unwrap()[0];
    assert_eq!(
        (row.status.as_str(), row.last_status, row.delivered_at),
        ("delivered", Some(204), Some(now + 10_002))
    );
    assert!(
        queue
            .claim_deliveries(10, 1_000, now + 99_000)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn prune_keeps_jobs_whose_approval_is_undecided_or_whose_notification_is_unsent(
    queue: Queue,
) {
    let now = now_ms();
    let pending = submitted(&queue, "pending", "inst-p", now, true).await;
    let unsent = submitted(&queue, "unsent", "inst-u", now, true).await;
    let done = submitted(&queue, "done", "inst-d", now, true).await;
    let plain = submitted(&queue, "plain", "inst-x", now, false).await;
    // The newest job is never pruned (ids are not reused): one more after the others.
    submitted(&queue, "newest", "inst-n", now, false).await;
    queue
        .record_decisions(&[decision("inst-u", Verdict::Agree)], &follow_up(), now)
        .await
        .unwrap();
    queue
        .record_decisions(&[decision("inst-d", Verdict::Agree)], &follow_up(), now)
        .await
        .unwrap();
    let due = queue.claim_deliveries(10, 1_000, now).await.unwrap();
    let sent = due.iter().find(|d| d.job_id == done).unwrap();
    queue
        .finish_delivery(sent, &Sent::Delivered { status: 200 }, now)
        .await
        .unwrap();
    let pruned = queue
        .prune(now + 1, &[JobStatus::Succeeded, JobStatus::Failed], false)
        .await
        .unwrap();
    assert_eq!(
        pruned, 2,
        "the decided and delivered job and the unfollowed one"
    );
    assert!(queue.get(pending).await.is_ok());
    assert!(queue.get(unsent).await.is_ok());
    assert!(queue.get(done).await.is_err());
    assert!(queue.get(plain).await.is_err());
}

async fn jobs_list_by_outcome(queue: Queue) {
    let now = now_ms();
    let agreed = submitted(&queue, "a", "inst-a", now, true).await;
    let refused = submitted(&queue, "r", "inst-r", now, true).await;
    let pending = submitted(&queue, "p", "inst-p", now, true).await;
    queue
        .record_decisions(
            &[
                decision("inst-a", Verdict::Agree),
                decision("inst-r", Verdict::Refuse),
            ],
            &follow_up(),
            now,
        )
        .await
        .unwrap();
    let list = |outcome| {
        let queue = queue.clone();
        async move {
            let filter = JobFilter {
                outcome: Some(outcome),
                limit: 10,
                ..JobFilter::default()
            };
            let ids: Vec<i64> = queue
                .list(&filter)
                .await
                .unwrap()
                .iter()
                .map(|j| j.id)
                .collect();
            ids
        }
    };
    assert_eq!(list(Verdict::Agree).await, vec![agreed]);
    assert_eq!(list(Verdict::Refuse).await, vec![refused]);
    assert_eq!(list(Verdict::Pending).await, vec![pending]);
    let stats = queue.outcome_stats().await.unwrap();
    assert_eq!(
        stats.by_outcome,
        vec![
            ("agree".to_owned(), 1),
            ("pending".to_owned(), 1),
            ("refuse".to_owned(), 1)
        ]
    );
}
