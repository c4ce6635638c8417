//! `retry` and `cancel` by filter: the recovery after an outage, said before it is done, with
//! a dry run that touches nothing.

use serde_json::json;

use super::{run, run_json, stderr, stdout, with_jobs};
use crate::helpers::event_kinds;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_by_filter_says_how_many_match_and_a_dry_run_touches_nothing() {
    let (harness, config, ids) = with_jobs(5, Some("invoices")).await;
    // Jobs 1-3 failed at put, job 4 failed at submit, job 5 stays queued.
    harness
        .sql("UPDATE jobs SET status = 'failed', step = 'put', finished_at = 1 WHERE id <= 3")
        .await;
    harness
        .sql("UPDATE jobs SET status = 'failed', step = 'submit', finished_at = 1 WHERE id = 4")
        .await;

    let dry = run(
        &harness,
        &config,
        &[
            "retry",
            "--status",
            "failed",
            "--step",
            "put",
            "--since",
            "1h",
            "--dry-run",
        ],
    );
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let text = stdout(&dry);
    assert!(
        text.contains(
            "3 failed or cancelled jobs match: status failed, step put, created in the last 60 min"
        ),
        "{text}"
    );
    assert!(text.contains("ids (newest first): 3, 2, 1"), "{text}");
    assert!(text.contains("dry run: nothing was retried"), "{text}");
    for &id in &ids[..4] {
        assert_eq!(harness.queue.get(id).await.unwrap().status, "failed");
    }

    let done = run_json(
        &harness,
        &config,
        &["retry", "--queue", "invoices", "--step", "put", "--json"],
    );
    assert_eq!(done["matched"], 3);
    assert_eq!(done["acted"], 3);
    assert_eq!(done["more"], false);
    for &id in &ids[..3] {
        assert_eq!(harness.queue.get(id).await.unwrap().status, "queued");
        assert_eq!(event_kinds(&harness.queue, id).await, ["retried"]);
    }
    assert_eq!(
        harness.queue.get(ids[3]).await.unwrap().status,
        "failed",
        "a job at another step is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_filter_takes_only_the_queue_named_and_refuses_a_status_it_cannot_cancel() {
    let (harness, config, nightly) = with_jobs(3, Some("nightly")).await;
    let file = harness.file("b.pdf", &crate::helpers::bytes(500, 3));
    let daytime = harness
        .enqueue_job(approval_worker::queue::NewJob {
            payload: harness.payload(&[&file]).to_string(),
            queue: Some("daytime".into()),
            ..Default::default()
        })
        .await;

    let out = run(&harness, &config, &["cancel", "--queue", "nightly"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("3 queued or running jobs match: queue nightly; cancelling"),
        "{text}"
    );
    assert!(text.contains("3 jobs cancelled"), "{text}");
    for &id in &nightly {
        assert_eq!(harness.queue.get(id).await.unwrap().status, "cancelled");
    }
    assert_eq!(harness.queue.get(daytime).await.unwrap().status, "queued");

    let none = run_json(
        &harness,
        &config,
        &["cancel", "--queue", "nightly", "--json"],
    );
    assert_eq!(
        none,
        json!({"action": "cancel", "filter": "queue nightly", "matched": 0, "ids": [], "dry_run": false})
    );
    let wrong = run(&harness, &config, &["cancel", "--status", "failed"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("only queued and running jobs can be cancelled"),
        "{}",
        stderr(&wrong)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_wants_ids_or_a_filter_never_both_nor_neither() {
    let (harness, config, _) = with_jobs(1, None).await;
    let bare = run(&harness, &config, &["retry"]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(
        stderr(&bare).contains("give job ids, or a filter"),
        "{}",
        stderr(&bare)
    );
    let both = run(&harness, &config, &["cancel", "1", "--queue", "default"]);
    assert_eq!(both.status.code(), Some(2));
    assert!(stderr(&both).contains("not both"), "{}", stderr(&both));

    let dry = run(&harness, &config, &["cancel", "1", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert_eq!(stdout(&dry).trim(), "job 1 (queued) would be cancelled");
    assert_eq!(harness.queue.get(1).await.unwrap().status, "queued");
}
