//! `enqueue --wait`: following a job live to its outcome, and the exit code it ends with.

use serde_json::Value;

use super::{run, stderr, stdout};
use crate::helpers::{Harness, bytes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_follows_the_job_step_by_step_to_its_instance_id() {
    let mut harness = Harness::new().await;
    let config = harness.config_file("worker.toml", "");
    let a = harness.file("a.pdf", &bytes(2_000_000, 1));
    let b = harness.file("b.pdf", &bytes(3_000, 2));
    harness.start();
    let out = run(
        &harness,
        &config,
        &[
            "enqueue",
            "--process-code",
            "PROC-TEST",
            "--originator",
            "manager4220",
            "--dept-id",
            "-1",
            "--form",
            "报销事由=出差",
            "--attach",
            a.to_str().unwrap(),
            "--attach",
            b.to_str().unwrap(),
            "--wait",
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let instance = harness.sandbox.instances()[0].instance_id.clone();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"enqueued job 1"), "{text}");
    let steps: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("  ✓ "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "space",
            "upload_info",
            "put",
            "commit",
            "upload_info",
            "put",
            "commit"
        ],
        "{text}"
    );
    for (step, file) in [
        ("upload_info", "a.pdf (file 1 of 2)"),
        ("put", "a.pdf (file 1 of 2)"),
        ("commit", "a.pdf (file 1 of 2)"),
        ("put", "b.pdf (file 2 of 2)"),
        ("commit", "b.pdf (file 2 of 2)"),
    ] {
        let said = format!("  ✓ {step} of {file} (");
        assert!(lines.iter().any(|l| l.starts_with(&said)), "{said}: {text}");
    }
    assert_eq!(
        lines.last().copied(),
        Some(format!("job 1 succeeded: approval instance {instance}").as_str())
    );

    let json = run(
        &harness,
        &config,
        &[
            "enqueue",
            "--process-code",
            "PROC-TEST",
            "--originator",
            "manager4220",
            "--dept-id",
            "-1",
            "--attach",
            b.to_str().unwrap(),
            "--wait",
            "--json",
        ],
    );
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let finished: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(finished[0]["id"], 2);
    assert_eq!(finished[0]["status"], "succeeded");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_exits_1_with_the_error_when_the_job_fails() {
    let mut harness = Harness::new().await;
    let config = harness.config_file("worker.toml", "");
    let a = harness.file("a.pdf", &bytes(1_000, 1));
    harness.start();
    let out = run(
        &harness,
        &config,
        &[
            "enqueue",
            "--process-code",
            "PROC-TEST",
            "--originator",
            "ghost9",
            "--dept-id",
            "-1",
            "--attach",
            a.to_str().unwrap(),
            "--wait",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("job 1 failed at space: "),
        "{text}"
    );
    assert!(stderr(&out).contains("job 1 failed"), "{}", stderr(&out));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_with_a_timeout_ends_with_exit_3_and_leaves_the_job_queued() {
    let harness = Harness::new().await;
    let config = harness.config_file("worker.toml", "");
    let a = harness.file("a.pdf", &bytes(100, 1));
    let payload = harness.config.database.path.with_file_name("job.json");
    std::fs::write(&payload, harness.payload(&[&a]).to_string()).unwrap();
    let payload = payload.to_str().unwrap();
    // No worker runs: the job cannot finish within the timeout.
    let out = run(
        &harness,
        &config,
        &["enqueue", "--payload", payload, "--wait", "--timeout", "1s"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("still unfinished after 1 s: job 1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(harness.queue.get(1).await.unwrap().status, "queued");

    let alone = run(
        &harness,
        &config,
        &["enqueue", "--payload", payload, "--timeout", "1s"],
    );
    assert_eq!(alone.status.code(), Some(2), "--timeout needs --wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_until_decided_follows_the_approval_to_its_agreement_and_exits_0() {
    let options = approval_worker::sandbox::SandboxOptions {
        auto_decide_after: Some(std::time::Duration::from_millis(300)),
        ..Default::default()
    };
    let mut harness = Harness::with_sandbox(options).await;
    harness.config.outcome.stream = true;
    let config = harness.config_file("worker.toml", "");
    let a = harness.file("a.pdf", &bytes(100, 1));
    let payload = harness.config.database.path.with_file_name("job.json");
    std::fs::write(&payload, harness.payload(&[&a]).to_string()).unwrap();
    harness.start();
    let out = run(
        &harness,
        &config,
        &[
            "enqueue",
            "--payload",
            payload.to_str().unwrap(),
            "--wait",
            "--until",
            "decided",
            "--timeout",
            "30s",
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let instance = harness.sandbox.instances()[0].instance_id.clone();
    assert!(
        text.contains(&format!(
            "job 1 succeeded: approval instance {instance}; waiting for the decision"
        )),
        "{text}"
    );
    assert_eq!(
        text.lines().last(),
        Some("job 1: approval agreed"),
        "{text}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_until_decided_exits_1_when_the_approval_is_refused() {
    let mut harness = Harness::new().await;
    harness.config.outcome.stream = true;
    let config = harness.config_file("worker.toml", "");
    let a = harness.file("a.pdf", &bytes(100, 1));
    let payload = harness.config.database.path.with_file_name("job.json");
    std::fs::write(&payload, harness.payload(&[&a]).to_string()).unwrap();
    harness.start();
    let waiting = harness
        .command()
        .arg("--config")
        .arg(&config)
        .args(["enqueue", "--payload", payload.to_str().unwrap()])
        .args(["--wait", "--until", "decided", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let created = harness
        .sandbox
        .wait_for(std::time::Duration::from_secs(20), |s| {
            s.instances().len() == 1
        })
        .await;
    assert!(created, "{:?}", harness.queue.get(1).await);
    let instance = harness.sandbox.instances()[0].instance_id.clone();
    harness
        .sandbox
        .decide(&instance, approval_worker::sandbox::Decision::Refuse)
        .unwrap();
    let out = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("job 1: approval refuse"),
        "{}",
        stderr(&out)
    );
    let jobs: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(jobs[0]["outcome"], "refuse");
    harness.stop().await;
}
