//! The whole pipeline against the sandbox: what DingTalk receives, in what order and shape.

use std::time::Duration;

use approval_worker::approval::Step;
use approval_worker::queue::{JobId, NewJob, now_ms};
use approval_worker::sandbox::{Endpoint, Fault};
use serde_json::{Value, json};

use crate::helpers::{Harness, bytes, event_kinds, md5_hex, result_of};

#[tokio::test]
async fn a_job_with_one_attachment_creates_one_instance_with_the_exact_request_sequence() {
    let mut h = Harness::new().await;
    let data = bytes(4096, 1);
    let file = h.file("报销单据.pdf", &data);
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    let job = h.finished(id).await;
    h.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let sequence: Vec<Endpoint> = h.sandbox.requests().iter().map(|r| r.endpoint).collect();
    assert_eq!(
        sequence,
        vec![
            Endpoint::Token,
            Endpoint::FormSchema,
            Endpoint::UserGet,
            Endpoint::Space,
            Endpoint::UploadInfo,
            Endpoint::OssPut,
            Endpoint::Commit,
            Endpoint::CreateInstance,
        ]
    );
    let puts = h.received(Endpoint::OssPut);
    assert_eq!(puts[0].body_len, data.len() as u64);
    assert_eq!(puts[0].body_md5.as_deref(), Some(md5_hex(&data).as_str()));
    assert!(
        !puts[0].headers.contains_key("content-type"),
        "{:?}",
        puts[0].headers
    );

    let instances = h.sandbox.instances();
    assert_eq!(instances.len(), 1);
    let files = h.sandbox.files();
    let file = &files[0];
    let attachment = instances[0]
        .form
        .iter()
        .find(|(name, _)| name == "附件")
        .map(|(_, value)| value.clone())
        .expect("attachment field");
    let expected = format!(
        r#"[{{"spaceId":"{}","fileName":"报销单据.pdf","fileSize":"4096","fileType":"pdf","fileId":"{}"}}]"#,
        file.space_id, file.file_id
    );
    assert_eq!(attachment, expected);
    assert_eq!(
        instances[0].form[0],
        ("报销事由".to_string(), "出差".to_string())
    );
    assert_eq!(instances[0].dept_id, Some(-1));

    let result = result_of(&job);
    assert_eq!(result["instance_id"], json!(instances[0].instance_id));
    assert_eq!(result["files"][0]["file_id"], json!(file.file_id));
    assert_eq!(result["files"][0]["file_size"], json!(4096));
}

#[tokio::test]
async fn every_step_is_in_the_history_in_order_though_only_the_commit_is_stored_before_success() {
    let mut h = Harness::new().await;
    let file = h.file("small.pdf", &bytes(2048, 3));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    let job = h.finished(id).await;
    h.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let events = h.queue.events(id).await.unwrap();
    let history: Vec<String> = events
        .iter()
        .map(|e| format!("{} {}", e.kind, e.step.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        history,
        vec![
            "claimed ",
            "step_done space",
            "step_done upload_info",
            "step_done put",
            "step_done commit",
            "succeeded ",
        ]
    );
    assert!(
        events.windows(2).all(|pair| pair[0].at <= pair[1].at),
        "each event keeps the time its step finished: {events:?}"
    );
    assert!(events.iter().all(|e| e.attempt == Some(1)), "{events:?}");
}

#[tokio::test]
async fn a_job_with_three_attachments_uploads_each_once_in_order_and_references_all() {
    let mut h = Harness::new().await;
    let sizes = [10_usize, 70_000, 300_000];
    let names = ["a.txt", "b.pdf", "c.zip"];
    let paths: Vec<_> = names
        .iter()
        .zip(sizes)
        .enumerate()
        .map(|(i, (name, size))| h.file(name, &bytes(size, i as u8)))
        .collect();
    let refs: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
    let id = h.enqueue(&h.payload(&refs)).await;
    h.start();
    let job = h.finished(id).await;
    h.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let sequence: Vec<Endpoint> = h.sandbox.requests().iter().map(|r| r.endpoint).collect();
    let per_file = [Endpoint::UploadInfo, Endpoint::OssPut, Endpoint::Commit];
    let mut expected = vec![
        Endpoint::Token,
        Endpoint::FormSchema,
        Endpoint::UserGet,
        Endpoint::Space,
    ];
    for _ in 0..3 {
        expected.extend(per_file);
    }
    expected.push(Endpoint::CreateInstance);
    assert_eq!(sequence, expected);
    let put_sizes: Vec<u64> = h
        .received(Endpoint::OssPut)
        .iter()
        .map(|r| r.body_len)
        .collect();
    assert_eq!(put_sizes, vec![10, 70_000, 300_000]);

    let instances = h.sandbox.instances();
    assert_eq!(instances.len(), 1);
    let value = &instances[0]
        .form
        .iter()
        .find(|(n, _)| n == "附件")
        .expect("field")
        .1;
    let parsed: Vec<Value> = serde_json::from_str(value).expect("DDAttachment is a JSON array");
    let file_names: Vec<&str> = parsed
        .iter()
        .map(|f| f["fileName"].as_str().unwrap())
        .collect();
    assert_eq!(file_names, names);
    for entry in &parsed {
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5);
        assert!(
            entry.as_object().unwrap().values().all(Value::is_string),
            "{entry}"
        );
    }
    assert_eq!(result_of(&job)["files"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn the_token_is_fetched_once_for_many_jobs() {
    let mut h = Harness::new().await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let file = h.file(&format!("f{n}.pdf"), &bytes(100, n));
        ids.push(h.enqueue(&h.payload(&[&file])).await);
    }
    h.start();
    for id in ids {
        assert_eq!(h.finished(id).await.status, "succeeded");
    }
    h.stop().await;
    assert_eq!(h.received(Endpoint::Token).len(), 1);
    assert_eq!(h.sandbox.instances().len(), 8);
    // The unionId is cached too: one user lookup for the one originator.
    assert_eq!(h.received(Endpoint::UserGet).len(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_and_the_job_still_succeeds() {
    let mut h = Harness::new().await;
    let first = h.file("first.pdf", &bytes(100, 1));
    let id = h.enqueue(&h.payload(&[&first])).await;
    h.start();
    assert_eq!(h.finished(id).await.status, "succeeded");
    h.sandbox.expire_tokens();
    let second = h.file("second.pdf", &bytes(100, 2));
    let id = h.enqueue(&h.payload(&[&second])).await;
    let job = h.finished(id).await;
    h.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(h.received(Endpoint::Token).len(), 2);
    assert_eq!(h.sandbox.instances().len(), 2);
}

#[tokio::test]
async fn enqueueing_twice_with_one_idempotency_key_makes_one_job_and_one_instance() {
    let mut h = Harness::new().await;
    let file = h.file("once.pdf", &bytes(100, 3));
    let job = NewJob {
        payload: h.payload(&[&file]).to_string(),
        idempotency_key: Some("order-42".into()),
        ..NewJob::default()
    };
    let first = h.queue.enqueue(&job, now_ms()).await.unwrap();
    let second = h.queue.enqueue(&job, now_ms()).await.unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.id, second.id);
    h.start();
    assert_eq!(h.finished(first.id).await.status, "succeeded");
    h.stop().await;
    assert_eq!(h.sandbox.instances().len(), 1);
}

#[tokio::test]
async fn a_job_checkpointed_at_commit_resumes_at_commit_without_a_second_upload() {
    // Run one job to learn real upload tickets, then cut a second job off after its PUT by
    // building its checkpoint from the sandbox's state: the worker must resume at commit.
    let mut h = Harness::new().await;
    let file = h.file("resume.pdf", &bytes(2048, 9));
    let dingtalk = h.dingtalk();
    let union_id = dingtalk.union_id("manager4220").await.unwrap();
    let space_id = dingtalk.approval_space("manager4220").await.unwrap();
    let data = std::fs::read(&file).unwrap();
    let request = approval_worker::dingtalk::UploadInfoRequest {
        name: "resume.pdf".into(),
        size: data.len() as u64,
        md5_hex: Some(md5_hex(&data)),
    };
    let ticket = dingtalk
        .upload_info(space_id, &union_id, &request)
        .await
        .unwrap();
    let oss = approval_worker::oss::Oss::new(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    oss.put_file(
        &ticket.resource_urls[0],
        &ticket.headers,
        &file,
        data.len() as u64,
        None,
        Some(&md5_hex(&data)),
        &approval_worker::oss::SentBytes::default(),
    )
    .await
    .unwrap();
    let checkpoint = Step::Commit {
        progress: approval_worker::approval::Progress {
            union_id,
            space_id,
            granted_at_ms: now_ms(),
            files: vec![],
        },
        upload: approval_worker::approval::PendingUpload {
            ticket,
            size: data.len() as u64,
            modified: None,
            md5: Some(md5_hex(&data)),
            expires_at_ms: now_ms() + 600_000,
            snapshot: None,
        },
    };
    let id = h.enqueue(&h.payload(&[&file])).await;
    sqlx_checkpoint(&h, id, &checkpoint).await;
    let before = h.sandbox.requests().len();

    h.start();
    let job = h.finished(id).await;
    h.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    // The worker's own client fetches its token; then only the remaining steps run.
    let after: Vec<Endpoint> = h.sandbox.requests()[before..]
        .iter()
        .map(|r| r.endpoint)
        .filter(|e| *e != Endpoint::Token)
        .collect();
    assert_eq!(after, vec![Endpoint::Commit, Endpoint::CreateInstance]);
    assert_eq!(h.received(Endpoint::OssPut).len(), 1);
}

/// Stores a checkpoint the way a crashed worker would have left it (plain SQL, another
/// connection, as an outside process would).
async fn sqlx_checkpoint(h: &Harness, id: i64, step: &Step) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", h.config.database.path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE jobs SET step = ?1, checkpoint = ?2 WHERE id = ?3")
        .bind(step.name())
        .bind(step.to_checkpoint())
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn jobs_of_one_originator_share_its_upload_grant_and_another_originator_takes_its_own() {
    let mut h = Harness::new().await;
    // One at a time, so each job starts after the previous one took or used the grant.
    h.config.worker.concurrency = Some(1);
    let mut ids = Vec::new();
    for n in 0..3 {
        let file = h.file(&format!("same{n}.pdf"), &bytes(100, n));
        ids.push(h.enqueue(&h.payload(&[&file])).await);
    }
    let other = h.file("other.pdf", &bytes(100, 9));
    let mut payload = h.payload(&[&other]);
    payload["originator_user_id"] = "user0815".into();
    ids.push(h.enqueue(&payload).await);
    h.start();
    for &id in &ids {
        assert_eq!(h.finished(id).await.status, "succeeded");
    }
    h.stop().await;

    let asked: Vec<String> = h
        .received(Endpoint::Space)
        .iter()
        .map(|r| {
            r.body.as_ref().unwrap()["userId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(asked, ["manager4220", "user0815"]);
    // Every job still uploaded under a grant and made its instance.
    assert_eq!(h.received(Endpoint::UploadInfo).len(), 4);
    assert!(
        h.received(Endpoint::UploadInfo)
            .iter()
            .all(|r| r.status == 200)
    );
    assert_eq!(h.sandbox.instances().len(), 4);
}

#[tokio::test]
async fn a_small_attachment_is_asked_for_with_its_md5_and_a_larger_one_is_hashed_as_it_is_sent() {
    let mut h = Harness::new().await;
    let small = bytes(4096, 2);
    let large = bytes(300 * 1024, 3);
    let small_file = h.file("small.pdf", &small);
    let large_file = h.file("large.pdf", &large);
    let id = h.enqueue(&h.payload(&[&small_file, &large_file])).await;
    h.start();
    let job = h.finished(id).await;
    h.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let pre_checks: Vec<Value> = h
        .received(Endpoint::UploadInfo)
        .iter()
        .map(|r| r.body.as_ref().unwrap()["option"]["preCheckParam"].clone())
        .collect();
    assert_eq!(pre_checks[0]["md5"], json!(md5_hex(&small)));
    assert_eq!(pre_checks[0]["size"], json!(small.len()));
    assert_eq!(pre_checks[1].get("md5"), None, "{}", pre_checks[1]);
    assert_eq!(pre_checks[1]["size"], json!(large.len()));
    let put_md5s: Vec<Option<String>> = h
        .received(Endpoint::OssPut)
        .into_iter()
        .map(|r| r.body_md5)
        .collect();
    assert_eq!(put_md5s, vec![Some(md5_hex(&small)), Some(md5_hex(&large))]);
    let stored: Vec<String> = h.sandbox.files().into_iter().map(|f| f.md5).collect();
    assert_eq!(stored, vec![md5_hex(&small), md5_hex(&large)]);
}

/// Runs the job `first` builds, then a good job, with one slot; returns the event ids of the
/// first job's `last_kind` event and of the second job's `claimed` event.
async fn last_write_and_successor_claim(
    first: impl FnOnce(&Harness) -> Value,
    last_kind: &str,
) -> (i64, i64) {
    let mut h = Harness::new().await;
    // One slot: the second job can only start once the first has given its slot back.
    h.config.worker.concurrency = Some(1);
    let first = h.enqueue(&first(&h)).await;
    let second_file = h.file("second.pdf", &bytes(100, 2));
    let second = h.enqueue(&h.payload(&[&second_file])).await;
    h.start();
    assert_eq!(h.finished(first).await.status, last_kind);
    assert_eq!(h.finished(second).await.status, "succeeded");
    h.stop().await;
    let event_id = |events: &[approval_worker::queue::EventRow], kind: &str| {
        events
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| e.id)
            .unwrap()
    };
    (
        event_id(&h.queue.events(first).await.unwrap(), last_kind),
        event_id(&h.queue.events(second).await.unwrap(), "claimed"),
    )
}

#[tokio::test]
async fn a_finished_jobs_successor_is_claimed_in_the_commit_that_records_its_success() {
    let (succeeded, claimed) = last_write_and_successor_claim(
        |h| h.payload(&[&h.file("first.pdf", &bytes(100, 1))]),
        "succeeded",
    )
    .await;
    // One transaction writes claims before transitions: a claim sent after the success was
    // committed would have the later event id.
    assert!(
        claimed < succeeded,
        "second claimed (event {claimed}) after first succeeded (event {succeeded})"
    );
}

/// With one slot and the first of two jobs' create held for `create_delay`: the harness,
/// the two job ids, once the second job is claimed.
async fn second_job_claimed_during_the_first_create(
    create_delay: Duration,
) -> (Harness, JobId, JobId) {
    let mut h = Harness::new().await;
    h.config.worker.concurrency = Some(1);
    let first = h
        .enqueue(&h.payload(&[&h.file("first.pdf", &bytes(100, 1))]))
        .await;
    let second = h
        .enqueue(&h.payload(&[&h.file("second.pdf", &bytes(100, 2))]))
        .await;
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::Latency(create_delay), 1);
    h.start();
    h.wait_until(second, "its claim", |job, _| job.status == "running")
        .await;
    (h, first, second)
}

#[tokio::test]
async fn with_one_slot_the_next_job_is_claimed_during_the_create_but_calls_nothing_until_the_slot_is_free()
 {
    let (mut h, first, second) =
        second_job_claimed_during_the_first_create(Duration::from_millis(500)).await;
    // Claimed ahead: the first job is still making its create ...
    assert_eq!(h.queue.get(first).await.unwrap().status, "running");
    assert_eq!(h.received(Endpoint::CreateInstance).len(), 1);
    // ... and the second has not called anything: the one ticket so far is the first's.
    assert_eq!(h.received(Endpoint::UploadInfo).len(), 1);
    assert_eq!(h.finished(first).await.status, "succeeded");
    assert_eq!(h.finished(second).await.status, "succeeded");
    h.stop().await;
    // One job's calls at a time: the second's first call comes after the first's create.
    let endpoints: Vec<Endpoint> = h.sandbox.requests().iter().map(|r| r.endpoint).collect();
    let first_create = endpoints
        .iter()
        .position(|e| *e == Endpoint::CreateInstance)
        .unwrap();
    let second_ticket = endpoints
        .iter()
        .rposition(|e| *e == Endpoint::UploadInfo)
        .unwrap();
    assert!(first_create < second_ticket, "{endpoints:?}");
    let second_job = h.queue.get(second).await.unwrap();
    assert_eq!(second_job.attempt, 1);
    assert_eq!(second_job.uncharged_attempts, 0);
}

#[tokio::test]
async fn a_job_claimed_ahead_is_released_uncharged_at_shutdown_without_a_call() {
    let (mut h, first, second) =
        second_job_claimed_during_the_first_create(Duration::from_millis(300)).await;
    h.stop().await;
    // The first job's create was under way: it finished within the grace period.
    assert_eq!(h.queue.get(first).await.unwrap().status, "succeeded");
    let job = h.queue.get(second).await.unwrap();
    assert_eq!(job.status, "queued", "{job:?}");
    assert_eq!(job.attempt, 1);
    assert_eq!(
        job.uncharged_attempts, 1,
        "a release is not counted against the job"
    );
    let kinds = event_kinds(&h.queue, second).await;
    assert_eq!(kinds, vec!["claimed", "released"]);
    assert_eq!(
        h.received(Endpoint::UploadInfo).len(),
        1,
        "only the first job's ticket"
    );
}

#[tokio::test]
async fn a_failed_jobs_successor_is_claimed_in_the_commit_that_records_its_failure() {
    // Refused by DingTalk at its create (an approver who does not exist), after its
    // uploads: a failure once under way.
    let (failed, claimed) = last_write_and_successor_claim(
        |h| {
            let mut payload = h.payload(&[&h.file("first.pdf", &bytes(100, 1))]);
            payload["approvers"] =
                serde_json::json!([{"action_type": "AND", "user_ids": ["ghost-approver"]}]);
            payload
        },
        "failed",
    )
    .await;
    assert!(
        claimed < failed,
        "second claimed (event {claimed}) after first failed (event {failed})"
    );
}
