//! Tests of the steps against the sandbox and of their pure helpers.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::dingtalk::UploadTicket;
use md5::Digest;

fn upload(expiration_secs: u64) -> PendingUpload {
    PendingUpload {
        ticket: UploadTicket {
            upload_key: "k".into(),
            resource_urls: vec![],
            headers: BTreeMap::new(),
            expiration_secs,
        },
        size: 1,
        modified: None,
        md5: None,
        expires_at_ms: 0,
        snapshot: None,
    }
}

/// Runs `job` through its steps from `space` to `done`, as the worker would within one
/// attempt (stale steps go back as told); the first error ends it.
async fn run_steps(approval: &Approval, job: &Job) -> Result<Step, StepError> {
    let mut step = Step::Space;
    for _ in 0..20 {
        let at = Attempt {
            attempt: 1,
            now_ms: crate::clock::now_ms(),
            may_create: true,
        };
        step = match approval
            .advance(job, step, at, &crate::oss::SentBytes::default())
            .await
        {
            Ok(done @ Step::Done { .. }) => return Ok(done),
            Ok(next) => next,
            Err(StepError::Stale { back_to, .. }) => *back_to,
            Err(error) => return Err(error),
        };
    }
    panic!("no end after 20 steps");
}

/// A state machine talking to `sandbox`.
fn approval_for(sandbox: &crate::sandbox::Sandbox) -> Approval {
    let options = sandbox.options().clone();
    let dingtalk = DingTalk::new(crate::dingtalk::ClientSettings {
        api_base: sandbox.base_url(),
        oapi_base: sandbox.base_url(),
        app_key: options.app_key.clone(),
        app_secret: crate::secret::Secret::new(options.app_secret.clone()),
        agent_id: options.agent_id,
        rate_limit_per_sec: 0,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    })
    .unwrap();
    let oss = Oss::new(Duration::from_secs(2), Duration::from_secs(5)).unwrap();
    Approval::new(dingtalk, oss)
}

/// A checked job attaching one file of `content`, written into `dir`.
fn job_with_file(dir: &std::path::Path, content: &[u8]) -> Job {
    let spool = std::fs::canonicalize(dir).unwrap();
    let file = spool.join("long.pdf");
    std::fs::write(&file, content).unwrap();
    let payload = serde_json::json!({
        "process_code": "PROC-TEST",
        "originator_user_id": "manager4220",
        "dept_id": -1,
        "form": [{"name": "报销事由", "value": "出差"}],
        "attachments": [{"path": file}],
    });
    let limits = UploadLimits {
        allowed_dirs: vec![spool],
        max_file_bytes: 1 << 30,
    };
    validate(&payload.to_string(), "附件", &limits).unwrap()
}

#[tokio::test]
async fn a_file_from_the_threshold_goes_in_parts_and_one_below_it_in_one_put() {
    use crate::sandbox::{Endpoint, Sandbox, SandboxOptions};
    let plan = PartPlan {
        threshold_bytes: 300 * 1024,
        part_bytes: 100 * 1024,
    };
    for (size, inits, tickets, puts) in [(300 * 1024, 1, 0, 3), (300 * 1024 - 1, 0, 1, 1)] {
        let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
        let approval = approval_for(&sandbox).with_parts(plan);
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..size).map(|i: usize| (i % 251) as u8).collect();
        let job = job_with_file(dir.path(), &content);

        let done = run_steps(&approval, &job).await;

        assert!(matches!(done, Ok(Step::Done { .. })), "{size}: {done:?}");
        let count = |endpoint| {
            sandbox
                .requests()
                .iter()
                .filter(|r| r.endpoint == endpoint)
                .count()
        };
        assert_eq!(count(Endpoint::MultipartInit), inits, "{size}");
        assert_eq!(count(Endpoint::UploadInfo), tickets, "{size}");
        assert_eq!(count(Endpoint::OssPut), puts, "{size}");
        let files = sandbox.files();
        assert_eq!(files[0].md5, hex::encode(md5::Md5::digest(&content)));
    }
}

#[tokio::test]
async fn a_grant_that_lapses_during_the_put_is_renewed_once_and_the_commit_retried() {
    use crate::sandbox::{Endpoint, Fault, Sandbox, SandboxOptions};
    // The grant lapses while OSS takes its time over the PUT, as a 3 s grant would under
    // a 4 s upload; the sandbox's grants run on the wall clock, hence short real times.
    let grant_ttl = Duration::from_millis(300);
    let sandbox = Sandbox::start(SandboxOptions {
        grant_ttl,
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    sandbox.inject(Endpoint::OssPut, Fault::Latency(grant_ttl * 2), 1);
    let approval = approval_for(&sandbox);
    let dir = tempfile::tempdir().unwrap();
    let job = job_with_file(dir.path(), b"sent while the grant lapses");

    let done = run_steps(&approval, &job).await;

    assert!(matches!(done, Ok(Step::Done { .. })), "{done:?}");
    let calls = |endpoint: Endpoint| -> Vec<u16> {
        sandbox
            .requests()
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.status)
            .collect()
    };
    assert_eq!(calls(Endpoint::Space), vec![200, 200], "renewed once");
    assert_eq!(calls(Endpoint::UploadInfo), vec![200], "the upload is kept");
    assert_eq!(calls(Endpoint::OssPut), vec![200]);
    assert_eq!(calls(Endpoint::Commit), vec![403, 200]);
    let keys: Vec<_> = sandbox
        .requests()
        .iter()
        .filter(|r| r.endpoint == Endpoint::Commit)
        .map(|r| r.body.as_ref().unwrap()["uploadKey"].clone())
        .collect();
    assert_eq!(keys[0], keys[1], "the same uploadKey");
    assert_eq!(sandbox.instances().len(), 1);
}

#[test]
fn a_long_ticket_keeps_thirty_seconds_and_a_short_one_a_quarter_of_its_life() {
    assert_eq!(ticket_margin_ms(&upload(900)), TICKET_MARGIN_MS);
    assert_eq!(ticket_margin_ms(&upload(60)), 15_000);
    assert_eq!(ticket_margin_ms(&upload(1)), 250);
}
