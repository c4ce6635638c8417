//! One fault per step: every fault the sandbox can throw at every call of a job ends with the
//! job succeeded, exactly one approval instance holding the job's files, and a history that
//! shows how the worker got there (in the call, through the queue, or by redoing a step).

use std::time::Duration;

use approval_worker::queue::{EventRow, JobRow};
use approval_worker::sandbox::{Endpoint, Fault, SandboxOptions};
use serde_json::Value;

use crate::helpers::{
    Harness, Timing, audit, bytes, instance_file_ids, result_file_ids, result_of,
};

/// One fault on one endpoint and what the job's history must show.
struct Case {
    endpoint: Endpoint,
    fault: Fault,
    /// `(kind, step)` events that must appear, in this order (others may come between).
    events: &'static [(&'static str, &'static str)],
    /// Claims the job took.
    attempts: i64,
    /// True when the instance was found by reconciliation instead of created by the last call.
    adopted: bool,
}

impl Case {
    fn name(&self) -> String {
        format!("{} on {}", self.fault, self.endpoint)
    }
}

/// Recovered inside the call: one attempt, nothing but step_done events.
const IN_CALL: &[(&str, &str)] = &[];
const REQUEUED_PUT: &[(&str, &str)] = &[("retry_scheduled", "put")];
const REQUEUED_COMMIT: &[(&str, &str)] = &[("retry_scheduled", "commit")];
const REQUEUED_SUBMIT: &[(&str, &str)] =
    &[("retry_scheduled", "submit"), ("step_done", "reconcile")];

fn case(
    endpoint: Endpoint,
    fault: &Fault,
    events: &'static [(&'static str, &'static str)],
) -> Case {
    let attempts = 1 + events
        .iter()
        .filter(|(kind, _)| *kind == "retry_scheduled")
        .count() as i64;
    Case {
        endpoint,
        fault: fault.clone(),
        events,
        attempts,
        adopted: false,
    }
}

/// What a finished case left behind, for case-specific checks.
struct Outcome {
    h: Harness,
    job: JobRow,
    events: Vec<EventRow>,
}

/// Runs one job with two attachments under `case`'s fault and checks everything every case
/// must satisfy.
async fn run(case: &Case, options: SandboxOptions, timing: Timing) -> Outcome {
    let name = case.name();
    let mut h = Harness::with_sandbox(options).await;
    let first = h.file("报销单据.pdf", &bytes(3000, 1));
    let second = h.file("发票.zip", &bytes(70_000, 2));
    let id = h.enqueue(&h.payload(&[&first, &second])).await;
    h.sandbox.inject(case.endpoint, case.fault.clone(), 1);
    h.start_timed_with(timing);
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    let history = summary(&events);

    assert_eq!(job.status, "succeeded", "{name}: {job:?}\n{history}");
    let hit = h
        .received(case.endpoint)
        .iter()
        .any(|r| r.fault.as_deref() == Some(case.fault.to_string().as_str()));
    assert!(hit, "{name}: the fault was never delivered");
    let instances = h.sandbox.instances();
    assert_eq!(instances.len(), 1, "{name}: {instances:?}\n{history}");
    assert_eq!(
        result_of(&job)["instance_id"],
        instances[0].instance_id.as_str(),
        "{name}"
    );
    assert_eq!(
        instance_file_ids(&instances[0]),
        result_file_ids(&job),
        "{name}: the instance must reference the job's committed files"
    );
    assert_eq!(job.attempt, case.attempts, "{name}: attempts\n{history}");
    assert_eq!(job.uncharged_attempts, 0, "{name}");
    assert_subsequence(&name, &events, case.events);
    if case.attempts == 1 {
        let failures: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "retry_scheduled")
            .collect();
        assert!(failures.is_empty(), "{name}: {history}");
    }
    let checkpoint: Value = serde_json::from_str(job.checkpoint.as_deref().unwrap()).unwrap();
    assert_eq!(
        checkpoint["adopted"], case.adopted,
        "{name}: adopted\n{history}"
    );
    Outcome { h, job, events }
}

fn assert_subsequence(name: &str, events: &[EventRow], expected: &[(&str, &str)]) {
    let mut wanted = expected.iter().peekable();
    for event in events {
        if let Some((kind, step)) = wanted.peek()
            && event.kind == *kind
            && event.step.as_deref() == Some(*step)
        {
            wanted.next();
        }
    }
    let missing: Vec<_> = wanted.collect();
    assert!(
        missing.is_empty(),
        "{name}: events {missing:?} missing from\n{}",
        summary(events)
    );
}

/// The history, one line per event, for failure messages.
pub fn summary(events: &[EventRow]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "  #{} {} {} {} {}",
                e.attempt.unwrap_or(0),
                e.kind,
                e.step.as_deref().unwrap_or("-"),
                e.http_status.map(|s| s.to_string()).unwrap_or_default(),
                e.error.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn run_all(cases: &[Case], timing: Timing) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for case in cases {
        outcomes.push(run(case, SandboxOptions::default(), timing).await);
    }
    outcomes
}

#[tokio::test]
async fn a_server_error_on_any_call_is_retried_and_the_job_succeeds_once() {
    let fault = Fault::ServerError(503);
    let cases = [
        case(Endpoint::Token, &fault, IN_CALL),
        case(Endpoint::UserGet, &fault, IN_CALL),
        case(Endpoint::Space, &fault, IN_CALL),
        case(Endpoint::UploadInfo, &fault, IN_CALL),
        case(Endpoint::OssPut, &fault, REQUEUED_PUT),
        // Commit and create are not repeated blindly: the queue retries them, and the
        // create reconciles first (the 5xx came before any work, so it then creates).
        case(Endpoint::Commit, &fault, REQUEUED_COMMIT),
        case(Endpoint::CreateInstance, &fault, REQUEUED_SUBMIT),
    ];
    let outcomes = run_all(&cases, Timing::default()).await;
    let creates = outcomes[6].h.received(Endpoint::CreateInstance).len();
    assert_eq!(creates, 2, "the refused create, then the real one");
}

#[tokio::test]
async fn a_throttle_answer_in_either_spelling_is_retried_after_a_pause() {
    for pascal_case in [false, true] {
        let fault = Fault::Throttle { pascal_case };
        let cases = [
            case(Endpoint::Token, &fault, IN_CALL),
            case(Endpoint::UserGet, &fault, IN_CALL),
            case(Endpoint::Space, &fault, IN_CALL),
            case(Endpoint::UploadInfo, &fault, IN_CALL),
            // OSS throttles with its own 503 SlowDown, which the queue retries.
            case(Endpoint::OssPut, &fault, REQUEUED_PUT),
            // Throttling is refused before any work, so even a create may repeat at once.
            case(Endpoint::Commit, &fault, IN_CALL),
            case(Endpoint::CreateInstance, &fault, IN_CALL),
        ];
        for outcome in run_all(&cases, Timing::default()).await {
            let took_ms = outcome.job.finished_at.unwrap() - outcome.job.created_at;
            let pauses = outcome.job.attempt == 1;
            assert!(
                !pauses || took_ms >= 900,
                "job {} (pascal {pascal_case}) retried without the 1 s pause: {took_ms} ms\n{}",
                outcome.job.id,
                summary(&outcome.events)
            );
        }
    }
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_without_a_queue_retry() {
    let fault = Fault::TokenRevoked;
    let cases = [
        case(Endpoint::UserGet, &fault, IN_CALL),
        case(Endpoint::Space, &fault, IN_CALL),
        case(Endpoint::UploadInfo, &fault, IN_CALL),
        case(Endpoint::Commit, &fault, IN_CALL),
        case(Endpoint::CreateInstance, &fault, IN_CALL),
        // OSS's flavour is "Request has expired.": only a new upload ticket helps.
        case(Endpoint::OssPut, &fault, &[("step_failed", "put")]),
    ];
    let outcomes = run_all(&cases, Timing::default()).await;
    for (case, outcome) in cases.iter().zip(&outcomes).take(5) {
        assert_eq!(
            outcome.h.received(Endpoint::Token).len(),
            2,
            "{}: the token is fetched again once",
            case.name()
        );
    }
    let put = &outcomes[5];
    assert_eq!(
        put.h.received(Endpoint::UploadInfo).len(),
        3,
        "a new ticket"
    );
    assert_eq!(
        put.h.received(Endpoint::Token).len(),
        1,
        "OSS never sees the token"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried_and_an_unanswered_create_reconciled() {
    let fault = Fault::DropConnection;
    let cases = [
        case(Endpoint::Token, &fault, IN_CALL),
        case(Endpoint::UserGet, &fault, IN_CALL),
        case(Endpoint::Space, &fault, IN_CALL),
        case(Endpoint::UploadInfo, &fault, IN_CALL),
        case(Endpoint::OssPut, &fault, REQUEUED_PUT),
        case(Endpoint::Commit, &fault, REQUEUED_COMMIT),
        case(Endpoint::CreateInstance, &fault, REQUEUED_SUBMIT),
    ];
    let outcomes = run_all(&cases, Timing::default()).await;
    // Nothing was created before the drop, so reconciliation found nothing and created once.
    assert_eq!(outcomes[6].h.received(Endpoint::CreateInstance).len(), 2);
    assert_eq!(outcomes[6].h.received(Endpoint::ListInstanceIds).len(), 1);
}

#[tokio::test]
async fn work_done_with_the_answer_lost_is_redone_or_adopted_never_duplicated() {
    let fault = Fault::LoseResponse;
    let cases = [
        case(Endpoint::Token, &fault, IN_CALL),
        case(Endpoint::UserGet, &fault, IN_CALL),
        case(Endpoint::Space, &fault, IN_CALL),
        case(Endpoint::UploadInfo, &fault, IN_CALL),
        case(Endpoint::OssPut, &fault, REQUEUED_PUT),
        // The commit happened, but its answer never came: the next attempt starts again
        // from the last stored checkpoint (a ticket and PUT are not stored), so the file is
        // uploaded again and the first copy stays an orphan in the space.
        case(Endpoint::Commit, &fault, REQUEUED_COMMIT),
        // The instance exists: the next attempt finds it and adopts it.
        Case {
            adopted: true,
            ..case(Endpoint::CreateInstance, &fault, REQUEUED_SUBMIT)
        },
    ];
    let outcomes = run_all(&cases, Timing::default()).await;
    let commit = &outcomes[5];
    assert_eq!(
        commit.h.sandbox.files().len(),
        3,
        "two files and one orphan"
    );
    assert_eq!(
        commit.h.received(Endpoint::OssPut).len(),
        3,
        "the first file was uploaded again"
    );
    let create = &outcomes[6];
    assert_eq!(
        create.h.received(Endpoint::CreateInstance).len(),
        1,
        "the create is never sent twice"
    );
    let reconcile = create
        .events
        .iter()
        .find(|e| e.step.as_deref() == Some("reconcile"))
        .unwrap();
    assert_eq!(reconcile.attempt, Some(2));
    assert_eq!(create.job.step, "done");
}

#[tokio::test]
async fn a_call_slower_than_the_request_timeout_is_retried_and_a_slow_create_adopted() {
    let timing = Timing::default();
    let fault = Fault::Latency(timing.request_timeout + Duration::from_millis(500));
    let cases = [
        case(Endpoint::Token, &fault, IN_CALL),
        case(Endpoint::UserGet, &fault, IN_CALL),
        case(Endpoint::Space, &fault, IN_CALL),
        case(Endpoint::UploadInfo, &fault, IN_CALL),
        case(Endpoint::OssPut, &fault, REQUEUED_PUT),
        case(Endpoint::Commit, &fault, REQUEUED_COMMIT),
        // The late create lands after the client gave up; the next attempt waits for it to
        // settle, finds it and adopts it instead of creating a second one.
        Case {
            adopted: true,
            ..case(Endpoint::CreateInstance, &fault, REQUEUED_SUBMIT)
        },
    ];
    let outcomes = run_all(&cases, timing).await;
    assert_eq!(outcomes[6].h.received(Endpoint::CreateInstance).len(), 1);
}

#[tokio::test]
async fn an_html_throttle_page_sends_the_job_back_to_the_queue_for_the_ip_ban() {
    // DingTalk bans an IP for five minutes and says so with an HTML page: the worker waits in
    // the queue, not in a call. "Five minutes later" is simulated by moving run_at and
    // starting a fresh worker (the old one's client would still hold the pause).
    let cases = [
        (Endpoint::Token, "space"),
        (Endpoint::UserGet, "space"),
        (Endpoint::Space, "space"),
        (Endpoint::UploadInfo, "upload_info"),
        (Endpoint::Commit, "commit"),
        (Endpoint::CreateInstance, "submit"),
    ];
    for (endpoint, step) in cases {
        let mut h = Harness::new().await;
        let file = h.file("a.pdf", &bytes(1000, 3));
        let id = h.enqueue(&h.payload(&[&file])).await;
        h.sandbox.inject(endpoint, Fault::ThrottlePage, 1);
        h.start_timed();
        let (job, events) = h
            .wait_until(id, "the ban's retry", |job, events| {
                job.status == "queued" && events.iter().any(|e| e.kind == "retry_scheduled")
            })
            .await;
        h.stop().await;
        let retry = events.iter().find(|e| e.kind == "retry_scheduled").unwrap();
        assert_eq!(retry.step.as_deref(), Some(step), "{endpoint}");
        assert_eq!(retry.http_status, Some(403), "{endpoint}");
        assert!(
            job.run_at - retry.at >= 290_000,
            "{endpoint}: retried after {} ms, not after the ban",
            job.run_at - retry.at
        );
        assert!(h.sandbox.instances().is_empty(), "{endpoint}");

        h.sql(&format!("UPDATE jobs SET run_at = 0 WHERE id = {id}"))
            .await;
        h.start_timed_with(Timing {
            submit_settle: Duration::ZERO,
            ..Timing::default()
        });
        let job = h.finished(id).await;
        h.stop().await;
        assert_eq!(job.status, "succeeded", "{endpoint}: {job:?}");
        assert_eq!(h.sandbox.instances().len(), 1, "{endpoint}");
        assert_eq!(
            instance_file_ids(&h.sandbox.instances()[0]),
            result_file_ids(&job),
            "{endpoint}"
        );
    }
}

#[tokio::test]
async fn dingtalks_qps_limit_slows_the_worker_down_but_every_job_succeeds_once() {
    let options = SandboxOptions {
        qps_limit: Some(2),
        ..SandboxOptions::default()
    };
    let mut h = Harness::with_sandbox(options).await;
    h.config.worker.concurrency = Some(6);
    let mut ids = Vec::new();
    for n in 0..6 {
        let file = h.file(&format!("q{n}.pdf"), &bytes(500, n));
        ids.push(h.enqueue(&h.payload(&[&file])).await);
    }
    h.start_timed();
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(h.finished(id).await);
    }
    h.stop().await;
    let throttled = h
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.status == 403 && r.fault.is_none())
        .count();
    assert!(throttled > 0, "the sandbox's limit was never hit");
    assert_eq!(audit(&h.sandbox.instances(), &jobs), (0, 0));
}

#[tokio::test]
async fn the_shared_rate_limiter_keeps_every_runner_under_dingtalks_limit() {
    let options = SandboxOptions {
        qps_limit: Some(20),
        ..SandboxOptions::default()
    };
    let mut h = Harness::with_sandbox(options).await;
    h.config.worker.concurrency = Some(8);
    h.config.dingtalk.rate_limit_per_sec = 10;
    let mut ids = Vec::new();
    for n in 0..12 {
        let file = h.file(&format!("r{n}.pdf"), &bytes(500, n));
        ids.push(h.enqueue(&h.payload(&[&file])).await);
    }
    h.start_timed();
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(h.finished(id).await);
    }
    h.stop().await;
    let throttled = h
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.status == 403)
        .count();
    assert_eq!(throttled, 0, "the limiter let a burst through");
    assert_eq!(audit(&h.sandbox.instances(), &jobs), (0, 0));
}
