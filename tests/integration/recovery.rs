//! Step outputs that go stale (upload tickets, upload grants), cancellation at step
//! boundaries, and `retry` from the checkpoint: each ends with the truthful status and at
//! most one approval instance.

use std::time::Duration;

use approval_worker::approval::{
    CHECKPOINT_UPLOADS_FROM_BYTES, CREATE_STEP, PendingUpload, Progress, Step,
};
use approval_worker::queue::{EventRow, JobStatus, NewJob, now_ms};
use approval_worker::sandbox::{DEFAULT_SPACE_ID, Endpoint, Fault, SandboxOptions};
use serde_json::Value;

use crate::faults::summary;
use crate::helpers::{
    Harness, Timing, bytes, event_kinds, instance_file_ids, md5_hex, result_file_ids,
};

const USER: &str = "manager4220";

fn kinds(events: &[EventRow]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.kind.clone(), e.step.clone().unwrap_or_default()))
        .collect()
}

fn has(events: &[EventRow], kind: &str, step: &str) -> bool {
    events
        .iter()
        .any(|e| e.kind == kind && e.step.as_deref() == Some(step))
}

/// Waits until the sandbox has received a call to `endpoint`.
async fn received(h: &Harness, endpoint: Endpoint) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.received(endpoint).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{endpoint} never called"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stores a checkpoint as a paused or crashed worker would have left it.
async fn set_checkpoint(h: &Harness, id: i64, step: &Step) {
    let json = step.to_checkpoint().replace('\'', "''");
    h.sql(&format!(
        "UPDATE jobs SET step = '{}', checkpoint = '{json}' WHERE id = {id}",
        step.name()
    ))
    .await;
}

fn assert_one_instance(h: &Harness, job: &approval_worker::queue::JobRow) {
    let instances = h.sandbox.instances();
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instance_file_ids(&instances[0]), result_file_ids(job));
}

#[tokio::test]
async fn an_upload_ticket_expired_by_the_clock_is_replaced_before_any_put() {
    let mut h = Harness::new().await;
    let data = bytes(2048, 4);
    let file = h.file("paused.pdf", &data);
    // A job that stopped after upload_info long ago: its ticket has expired by now.
    let dingtalk = h.dingtalk();
    let union_id = dingtalk.union_id(USER).await.unwrap();
    let space_id = dingtalk.approval_space(USER).await.unwrap();
    let request = approval_worker::dingtalk::UploadInfoRequest {
        name: "paused.pdf".into(),
        size: data.len() as u64,
        md5_hex: Some(md5_hex(&data)),
    };
    let ticket = dingtalk
        .upload_info(space_id, &union_id, &request)
        .await
        .unwrap();
    let step = Step::Put {
        progress: Progress {
            union_id,
            space_id,
            granted_at_ms: now_ms(),
            files: vec![],
        },
        upload: PendingUpload {
            ticket,
            size: data.len() as u64,
            modified: None,
            md5: Some(md5_hex(&data)),
            expires_at_ms: now_ms() - 1,
            snapshot: None,
        },
    };
    let id = h.enqueue(&h.payload(&[&file])).await;
    set_checkpoint(&h, id, &step).await;
    h.start_timed();
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    let stale = events.iter().find(|e| e.kind == "step_failed").unwrap();
    assert_eq!(stale.step.as_deref(), Some("put"));
    assert!(
        stale.error.as_deref().unwrap().contains("expired"),
        "{stale:?}"
    );
    assert_eq!(
        h.received(Endpoint::OssPut).len(),
        1,
        "no PUT with the old ticket"
    );
    assert_eq!(h.received(Endpoint::UploadInfo).len(), 2);
    assert_eq!(job.attempt, 1);
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn a_ticket_that_expires_while_the_put_waits_sends_the_job_back_to_upload_info() {
    // Tickets live one second; the PUT reaches OSS after 1.5 s, which refuses it with
    // 403 "Request has expired.". A short ticket keeps a quarter of its life as margin, so
    // the worker still uses it at once.
    let options = SandboxOptions {
        ticket_ttl: Duration::from_secs(1),
        ..SandboxOptions::default()
    };
    let mut h = Harness::with_sandbox(options).await;
    let file = h.file("slow.pdf", &bytes(4096, 5));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.sandbox.inject(
        Endpoint::OssPut,
        Fault::Latency(Duration::from_millis(1500)),
        1,
    );
    h.start_timed();
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    let stale = events.iter().find(|e| e.kind == "step_failed").unwrap();
    assert_eq!(stale.step.as_deref(), Some("put"), "{}", summary(&events));
    assert_eq!(stale.http_status, Some(403));
    let statuses: Vec<u16> = h
        .received(Endpoint::OssPut)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![403, 200]);
    assert_eq!(job.attempt, 1, "recovered within the attempt");
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn tickets_expired_by_dingtalk_mid_upload_are_replaced_within_the_attempt() {
    let mut h = Harness::new().await;
    let file = h.file("mid.pdf", &bytes(4096, 6));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.sandbox.inject(
        Endpoint::OssPut,
        Fault::Latency(Duration::from_millis(800)),
        1,
    );
    h.start_timed();
    received(&h, Endpoint::OssPut).await;
    h.sandbox.expire_tickets();
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert!(has(&events, "step_failed", "put"), "{}", summary(&events));
    assert_eq!(h.received(Endpoint::UploadInfo).len(), 2);
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn a_job_resumed_after_a_long_pause_renews_its_upload_grant_first() {
    let mut h = Harness::new().await;
    let file = h.file("later.pdf", &bytes(1500, 7));
    // The grant from spaces/infos/query was taken ten minutes ago (and the sandbox holds
    // none now): the worker asks for the space again before asking for a ticket.
    let union_id = h.dingtalk().union_id(USER).await.unwrap();
    let step = Step::UploadInfo {
        progress: Progress {
            union_id,
            space_id: DEFAULT_SPACE_ID,
            granted_at_ms: now_ms() - 600_000,
            files: vec![],
        },
    };
    let id = h.enqueue(&h.payload(&[&file])).await;
    set_checkpoint(&h, id, &step).await;
    let before = h.sandbox.requests().len();
    h.start_timed();
    let job = h.finished(id).await;
    h.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let calls: Vec<(Endpoint, u16)> = h.sandbox.requests()[before..]
        .iter()
        .filter(|r| r.endpoint != Endpoint::Token)
        .map(|r| (r.endpoint, r.status))
        .collect();
    assert_eq!(
        calls,
        vec![
            (Endpoint::Space, 200),
            (Endpoint::UploadInfo, 200),
            (Endpoint::OssPut, 200),
            (Endpoint::Commit, 200),
            (Endpoint::CreateInstance, 200),
        ]
    );
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn an_upload_grant_that_lapses_early_is_renewed_once_when_refused() {
    // The grant's real lifetime is undocumented: here it is one second, and the ticket
    // request reaches DingTalk 1.5 s after the grant. The refusal renews it once.
    let options = SandboxOptions {
        grant_ttl: Duration::from_secs(1),
        ..SandboxOptions::default()
    };
    let mut h = Harness::with_sandbox(options).await;
    let file = h.file("grant.pdf", &bytes(1500, 8));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.sandbox.inject(
        Endpoint::UploadInfo,
        Fault::Latency(Duration::from_millis(1500)),
        1,
    );
    h.start_timed();
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    let tickets: Vec<u16> = h
        .received(Endpoint::UploadInfo)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(tickets, vec![403, 200]);
    assert_eq!(h.received(Endpoint::Space).len(), 2);
    assert_eq!(job.attempt, 1);
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn cancelling_a_queued_job_stops_it_before_any_call() {
    let mut h = Harness::new().await;
    let file = h.file("never.pdf", &bytes(100, 9));
    let id = h.enqueue(&h.payload(&[&file])).await;
    assert_eq!(
        h.queue.cancel(id, CREATE_STEP, now_ms()).await.unwrap(),
        JobStatus::Cancelled
    );
    h.start_timed();
    let marker = h.file("marker.pdf", &bytes(100, 10));
    let other = h.enqueue(&h.payload(&[&marker])).await;
    assert_eq!(h.finished(other).await.status, "succeeded");
    h.stop().await;
    let job = h.queue.get(id).await.unwrap();
    assert_eq!(job.status, "cancelled");
    assert_eq!(job.attempt, 0, "never claimed");
    assert_eq!(h.sandbox.instances().len(), 1, "only the other job's");
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_at_its_next_checkpoint_before_any_create() {
    let mut h = Harness::new().await;
    let file = h.file("stop.pdf", &bytes(100, 11));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.sandbox.inject(
        Endpoint::UploadInfo,
        Fault::Latency(Duration::from_millis(500)),
        1,
    );
    h.start_timed();
    received(&h, Endpoint::UploadInfo).await;
    assert_eq!(
        h.queue.cancel(id, CREATE_STEP, now_ms()).await.unwrap(),
        JobStatus::Running
    );
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "cancelled", "{}", summary(&events));
    // A small file's ticket and PUT are not stored, so the first checkpoint that can see
    // the cancel is the one after its commit, which is still before any create.
    assert_eq!(
        job.step, "submit",
        "stopped at the checkpoint after the commit"
    );
    let tail: Vec<_> = kinds(&events).into_iter().rev().take(2).collect();
    assert_eq!(
        tail,
        vec![
            ("cancelled".to_string(), String::new()),
            ("step_done".to_string(), "commit".to_string())
        ]
    );
    assert_eq!(
        h.sandbox.files().len(),
        1,
        "the committed file stays an orphan"
    );
    assert!(h.received(Endpoint::CreateInstance).is_empty());
    assert!(h.sandbox.instances().is_empty());
}

#[tokio::test]
async fn a_cancel_that_arrives_while_the_create_is_in_flight_records_the_created_instance() {
    let mut h = Harness::new().await;
    let file = h.file("late.pdf", &bytes(100, 12));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.sandbox.inject(
        Endpoint::CreateInstance,
        Fault::Latency(Duration::from_millis(500)),
        1,
    );
    h.start_timed();
    received(&h, Endpoint::CreateInstance).await;
    assert_eq!(
        h.queue.cancel(id, CREATE_STEP, now_ms()).await.unwrap(),
        JobStatus::Running
    );
    let job = h.finished(id).await;
    h.stop().await;
    assert_eq!(job.status, "succeeded", "the approval exists: {job:?}");
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn retry_requeues_a_failed_job_at_its_checkpoint_without_uploading_again() {
    let mut h = Harness::new().await;
    // Large enough that its PUT is stored (a smaller file's is redone instead).
    let size = usize::try_from(CHECKPOINT_UPLOADS_FROM_BYTES).unwrap();
    let file = h.file("again.pdf", &bytes(size, 13));
    let id = h
        .enqueue_job(NewJob {
            payload: h.payload(&[&file]).to_string(),
            max_attempts: Some(1),
            ..NewJob::default()
        })
        .await;
    h.sandbox
        .inject(Endpoint::Commit, Fault::ServerError(503), 1);
    h.start_timed();
    let failed = h.finished(id).await;
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.step, "commit");
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap()
            .contains("gave up after 1 attempts"),
        "{failed:?}"
    );
    h.queue.retry(id, now_ms()).await.unwrap();
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert_eq!(h.received(Endpoint::OssPut).len(), 1, "resumed at commit");
    assert_eq!(h.received(Endpoint::UploadInfo).len(), 1);
    let after_retry: Vec<_> = kinds(&events)
        .into_iter()
        .skip_while(|(kind, _)| kind != "retried")
        .map(|(kind, step)| format!("{kind} {step}"))
        .collect();
    assert_eq!(
        after_retry,
        vec!["retried ", "claimed ", "step_done commit", "succeeded "]
    );
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn a_job_out_of_attempts_still_reconciles_a_create_whose_answer_was_lost() {
    let mut h = Harness::new().await;
    let file = h.file("last.pdf", &bytes(800, 14));
    let id = h
        .enqueue_job(NewJob {
            payload: h.payload(&[&file]).to_string(),
            max_attempts: Some(1),
            ..NewJob::default()
        })
        .await;
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::LoseResponse, 1);
    h.start_timed_with(Timing {
        submit_settle: Duration::from_millis(200),
        ..Timing::default()
    });
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert_eq!(job.attempt, 2, "one reconcile-only attempt past the limit");
    assert!(has(&events, "step_done", "reconcile"));
    let checkpoint: Value = serde_json::from_str(job.checkpoint.as_deref().unwrap()).unwrap();
    assert_eq!(checkpoint["adopted"], true);
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn a_job_out_of_attempts_creates_nothing_more_and_retry_then_creates_once() {
    let mut h = Harness::new().await;
    let file = h.file("none.pdf", &bytes(800, 15));
    let id = h
        .enqueue_job(NewJob {
            payload: h.payload(&[&file]).to_string(),
            max_attempts: Some(1),
            ..NewJob::default()
        })
        .await;
    // A 5xx before any work: the create may have happened as far as the worker knows.
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::ServerError(502), 1);
    h.start_timed_with(Timing {
        submit_settle: Duration::from_millis(200),
        ..Timing::default()
    });
    let failed = h.finished(id).await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(failed.status, "failed", "{}", summary(&events));
    assert_eq!(failed.attempt, 2);
    let error = failed.last_error.as_deref().unwrap();
    assert!(error.contains("none was created"), "{error}");
    assert!(h.sandbox.instances().is_empty());
    assert_eq!(h.received(Endpoint::CreateInstance).len(), 1);

    h.queue.retry(id, now_ms()).await.unwrap();
    let job = h.finished(id).await;
    h.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(h.received(Endpoint::CreateInstance).len(), 2);
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn cancelling_a_job_whose_create_landed_unanswered_adopts_the_instance_instead() {
    // The create's answer is lost and the job waits in the queue for the settle time. A
    // cancel now cannot stop it blindly, since its approval may exist: the job stays queued,
    // flagged, and the worker reconciles; it finds the instance and records it.
    let mut h = Harness::new().await;
    let file = h.file("unresolved.pdf", &bytes(800, 16));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::LoseResponse, 1);
    h.start_timed();
    h.wait_until(id, "the ambiguous create's retry", |job, _| {
        job.status == "queued" && job.step == "submit"
    })
    .await;
    assert_eq!(
        h.queue.cancel(id, CREATE_STEP, now_ms()).await.unwrap(),
        approval_worker::queue::JobStatus::Queued
    );
    assert!(h.queue.get(id).await.unwrap().cancel_requested);
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert!(has(&events, "step_done", "reconcile"));
    assert_eq!(h.received(Endpoint::CreateInstance).len(), 1);
    assert_one_instance(&h, &job);
}

#[tokio::test]
async fn cancelling_a_job_whose_create_never_arrived_cancels_it_after_reconciling() {
    let mut h = Harness::new().await;
    let file = h.file("never.pdf", &bytes(800, 17));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::DropConnection, 1);
    h.start_timed();
    h.wait_until(id, "the ambiguous create's retry", |job, _| {
        job.status == "queued" && job.step == "submit"
    })
    .await;
    h.queue.cancel(id, CREATE_STEP, now_ms()).await.unwrap();
    let job = h.finished(id).await;
    h.stop().await;
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "cancelled", "{}", summary(&events));
    assert!(h.sandbox.instances().is_empty());
    assert_eq!(
        h.received(Endpoint::CreateInstance).len(),
        1,
        "no create after the cancel"
    );
    assert!(
        !h.received(Endpoint::ListInstanceIds).is_empty(),
        "it looked first"
    );
}

#[tokio::test]
async fn a_job_whose_runner_gave_up_on_a_write_is_rescued_while_its_process_lives() {
    let mut h = Harness::new().await;
    let file = h.file("a.pdf", &bytes(100, 3));
    let id = h.enqueue(&h.payload(&[&file])).await;
    // The first attempt's checkpoint before the create is refused as a locked or full
    // database would refuse it: the runner gives up and leaves the job `running`.
    h.sql(
        "CREATE TRIGGER refuse_first_submit BEFORE UPDATE OF step ON jobs \
         WHEN NEW.step = 'submit' AND NEW.attempt = 1 \
         BEGIN SELECT RAISE(ABORT, 'injected write failure'); END",
    )
    .await;
    h.start_timed_with(Timing {
        lease: Duration::from_millis(600),
        ..Timing::default()
    });
    let job = h.finished(id).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.attempt, 2);
    let kinds = event_kinds(&h.queue, id).await;
    assert!(kinds.contains(&"rescued".to_owned()), "{kinds:?}");
    assert_eq!(h.received(Endpoint::CreateInstance).len(), 1);
    h.stop().await;
}
