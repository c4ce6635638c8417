//! The queue's contract when several processes share it: leases, heartbeats, rescue and
//! claims racing each other, call tallies adding up, and the reads operators use. Each test
//! runs on both stores, two `Queue` handles standing for two processes (on SQLite they share
//! the file, on PostgreSQL the database).

use std::collections::HashSet;

use approval_worker::queue::{CallDelta, JobFilter, NewJob, Queue, now_ms};
use futures_util::future::join_all;
use serde_json::json;

fn job() -> NewJob {
    NewJob {
        payload: json!({"process_code": "PROC-1"}).to_string(),
        ..NewJob::default()
    }
}

contract!(
    a_heartbeat_renews_only_the_claims_it_names_and_the_others_are_rescued_once,
    claims_racing_from_many_tasks_never_take_a_job_twice,
    call_tallies_from_every_process_add_up_to_the_month_total,
    failed_jobs_list_by_status_with_their_error_and_the_others_stay_queued,
    a_repeated_idempotency_key_returns_the_job_that_holds_it,
);

async fn a_heartbeat_renews_only_the_claims_it_names_and_the_others_are_rescued_once(queue: Queue) {
    let now = now_ms();
    queue.enqueue_many(&vec![job(); 3], now).await.unwrap();
    let claimed = queue.claim("default", "w1", 3, 10_000, now).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let live = [claimed[0].fence(), claimed[1].fence()];
    assert_eq!(
        queue
            .heartbeat("w1", &live, 60_000, now + 5_000)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        queue
            .heartbeat("w2", &live, 60_000, now + 5_000)
            .await
            .unwrap(),
        0,
        "another owner renews nothing"
    );
    // Two rescuers at the same moment: the expired job goes back once.
    let other = queue.clone();
    let (a, b) = tokio::join!(queue.rescue(now + 20_000), other.rescue(now + 20_000));
    let mut rescued = a.unwrap();
    rescued.extend(b.unwrap());
    assert_eq!(rescued, [claimed[2].id]);
    let kinds = crate::helpers::event_kinds(&queue, claimed[2].id).await;
    assert_eq!(kinds, ["claimed", "rescued"]);
    let row = queue.get(claimed[2].id).await.unwrap();
    assert_eq!((row.status.as_str(), row.uncharged_attempts), ("queued", 1));
}

async fn claims_racing_from_many_tasks_never_take_a_job_twice(queue: Queue) {
    let now = now_ms();
    queue.enqueue_many(&vec![job(); 200], now).await.unwrap();
    let claims = (0..8).map(|worker| {
        let queue = queue.clone();
        async move {
            let owner = format!("w{worker}");
            let mut mine = Vec::new();
            loop {
                let got = queue
                    .claim("default", &owner, 7, 60_000, now)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|job| job.id));
            }
        }
    });
    let taken: Vec<i64> = join_all(claims).await.into_iter().flatten().collect();
    let distinct: HashSet<i64> = taken.iter().copied().collect();
    assert_eq!(taken.len(), 200, "every job claimed");
    assert_eq!(distinct.len(), 200, "no job claimed twice");
    let counts = queue
        .list(&JobFilter {
            limit: 500,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert!(
        counts
            .iter()
            .all(|row| row.status == "running" && row.attempt == 1)
    );
}

async fn call_tallies_from_every_process_add_up_to_the_month_total(queue: Queue) {
    let now = now_ms();
    let delta = |endpoint: &str, counted, calls| CallDelta {
        endpoint: endpoint.to_owned(),
        counted,
        calls,
    };
    let first = queue
        .add_calls(
            "app",
            "2026-12",
            &[
                delta("processInstances", true, 3),
                delta("gettoken", false, 1),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(first, 3, "uncounted endpoints stay out of the total");
    let other = queue.clone();
    let second = other
        .add_calls("app", "2026-12", &[delta("processInstances", true, 2)], now)
        .await
        .unwrap();
    assert_eq!(second, 5);
    assert_eq!(
        queue.add_calls("app", "2026-12", &[], now).await.unwrap(),
        5
    );
    let month = queue.monthly_calls("2026-12").await.unwrap();
    let rows: Vec<(&str, i64)> = month
        .iter()
        .map(|row| (row.endpoint.as_str(), row.calls))
        .collect();
    assert_eq!(rows, [("gettoken", 1), ("processInstances", 5)]);
}

async fn failed_jobs_list_by_status_with_their_error_and_the_others_stay_queued(queue: Queue) {
    use approval_worker::queue::{Failure, JobStatus, Unstored};
    let now = now_ms();
    let ids: Vec<i64> = queue
        .enqueue_many(&vec![job(); 4], now)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    for claim in queue.claim("default", "w1", 3, 60_000, now).await.unwrap() {
        let failure = Failure {
            step: "space".into(),
            message: "no".into(),
            http_status: Some(400),
            duration_ms: 1,
        };
        queue
            .fail(claim.fence(), &Unstored::default(), &failure, now)
            .await
            .unwrap();
    }
    let failed = queue
        .list(&JobFilter {
            status: Some(JobStatus::Failed),
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    let failed: Vec<(i64, Option<&str>)> = failed
        .iter()
        .map(|row| (row.id, row.last_error.as_deref()))
        .collect();
    assert_eq!(
        failed,
        [
            (ids[2], Some("no")),
            (ids[1], Some("no")),
            (ids[0], Some("no"))
        ],
        "newest first"
    );
    let events = queue.events(ids[0]).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.http_status),
        ("failed", Some(400))
    );
    let row = queue.get(ids[3]).await.unwrap();
    assert_eq!(row.status, JobStatus::Queued.as_str());
}

async fn a_repeated_idempotency_key_returns_the_job_that_holds_it(queue: Queue) {
    let now = now_ms();
    let keyed = |key: &str| NewJob {
        idempotency_key: Some(key.to_owned()),
        ..job()
    };
    let first = queue.enqueue(&keyed("order-1"), now).await.unwrap();
    assert!(first.created);
    let again = queue
        .enqueue_many(&[keyed("order-2"), keyed("order-1"), job()], now)
        .await
        .unwrap();
    assert!(again[0].created);
    assert_eq!((again[1].id, again[1].created), (first.id, false));
    assert!(again[2].created);
    let ids: HashSet<i64> = [first.id, again[0].id, again[2].id].into();
    assert_eq!(ids.len(), 3);
}
