//! The binary as users and scripts run it: outputs and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_approval-worker");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env_remove("APPROVAL_WORKER_CONFIG")
        .env_remove("APPROVAL_WORKER_DATABASE")
        .args(args)
        .output()
        .expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_config_with_an_unknown_key_is_refused_with_exit_78_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("worker.toml"), "[worker]\nconcurency = 4\n").unwrap();
    let out = run(dir.path(), &["jobs"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("concurency"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_config_with_a_bad_value_is_refused_with_exit_78_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[worker]\nlease_secs = 1\n").unwrap();
    let out = run(dir.path(), &["--config", "bad.toml", "jobs"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("[worker] lease_secs"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_explicit_config_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--config", "nope.toml", "jobs"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("nope.toml"));
}

#[test]
fn run_without_credentials_explains_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .env_remove("DINGTALK_APP_SECRET")
        .args(["run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("app_key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn enqueue_from_flags_accepts_the_root_department_and_lists_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::write(spool.join("a.pdf"), b"%PDF-1.4").unwrap();
    std::fs::write(
        dir.path().join("worker.toml"),
        format!(
            "[upload]\nallowed_dirs = [{:?}]\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    let out = run(
        dir.path(),
        &[
            "enqueue",
            "--process-code",
            "PROC-1",
            "--originator",
            "manager4220",
            "--dept-id",
            "-1",
            "--attach",
            "spool/a.pdf",
            "--form",
            "事由=出差",
            "--idempotency-key",
            "k1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1");
    let again = run(
        dir.path(),
        &[
            "enqueue",
            "--process-code",
            "PROC-1",
            "--originator",
            "manager4220",
            "--dept-id",
            "-1",
            "--attach",
            "spool/a.pdf",
            "--idempotency-key",
            "k1",
        ],
    );
    assert!(
        text(&again.stdout).starts_with("1 (existing"),
        "{}",
        text(&again.stdout)
    );

    let out = run(dir.path(), &["jobs", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jobs: Value = serde_json::from_str(&text(&out.stdout)).expect("jobs --json is JSON");
    let job = &jobs[0];
    assert_eq!(job["id"], 1);
    assert_eq!(job["status"], "queued");
    assert_eq!(job["step"], "space");
    assert_eq!(job["idempotency_key"], "k1");
    assert_eq!(job["payload"]["dept_id"], -1);
    assert!(
        job["payload"]["attachments"][0]["path"]
            .as_str()
            .unwrap()
            .starts_with('/')
    );
    for key in [
        "attempt",
        "last_error",
        "result",
        "created_at",
        "updated_at",
    ] {
        assert!(job.get(key).is_some(), "jobs --json lacks {key}");
    }
}

#[test]
fn enqueue_refuses_a_bad_payload_with_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "enqueue",
            "--process-code",
            "PROC-1",
            "--originator",
            "u1",
            "--dept-id",
            "-1",
            "--attach",
            "/nonexistent/a.pdf",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("attachments[0].path"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn show_of_an_unknown_job_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), &["migrate"]).status.success());
    let out = run(dir.path(), &["show", "42"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no job with id 42"));
}

#[test]
fn the_demo_runs_the_whole_pipeline_and_prints_instance_ids() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["demo", "--jobs", "3", "--dir", dir.path().to_str().unwrap()],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("3/3 jobs succeeded"), "{stdout}");
    // The sandbox agrees two and refuses the third; the worker learns both.
    assert_eq!(stdout.matches("succeeded, agree").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("succeeded, refuse").count(), 1, "{stdout}");
    assert!(stdout.contains("2 agree, 1 refuse"), "{stdout}");
}

#[tokio::test]
async fn run_with_a_secret_dingtalk_refuses_exits_78_before_claiming_anything() {
    let h = crate::helpers::Harness::new().await;
    let file = h.file("a.pdf", b"%PDF");
    let id = h.enqueue(&h.payload(&[&file])).await;
    let config = h.config_file("worker.toml", "");
    let mut command = h.command();
    command
        .env("DINGTALK_APP_SECRET", "not-the-secret")
        .arg("--config")
        .arg(&config)
        .arg("run");
    // Off the runtime thread: the sandbox answering the binary runs on it.
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("invalidClientIdOrSecret"), "{stderr}");
    assert!(
        !stderr.contains("not-the-secret"),
        "the secret leaked: {stderr}"
    );
    let job = h.queue.get(id).await.unwrap();
    assert_eq!((job.status.as_str(), job.attempt), ("queued", 0));
}

#[test]
fn commands_about_existing_jobs_refuse_a_missing_database_instead_of_creating_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("worker.toml"),
        "[database]\npath = \"typo/queue.db\"\n",
    )
    .unwrap();
    for args in [
        &["jobs"][..],
        &["show", "1"],
        &["stats"],
        &["retry", "1"],
        &["cancel", "1"],
        &["prune", "--older-than", "30d"],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("no approval-worker queue at typo/queue.db"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!dir.path().join("typo").exists(), "nothing was created");
    let out = run(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("created a new database"));
    assert!(run(dir.path(), &["jobs"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_decide_decides_a_running_instance_and_refuses_a_second_decision_with_exit_2() {
    let mut h = crate::helpers::Harness::new().await;
    let file = h.file("a.pdf", b"%PDF");
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    assert_eq!(h.finished(id).await.status, "succeeded");
    h.stop().await;
    let instance = h.sandbox.instances()[0].instance_id.clone();
    let url = h.sandbox.base_url();
    let decide = |args: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(["sandbox", "decide"])
            .args(args)
            .args(["--url", &url]);
        // Off the runtime thread: the sandbox answering the binary runs on it.
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };

    let out = decide(&[&instance, "refuse", "--remark", "金额不符"])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{instance}: COMPLETED (refuse)\n")
    );
    let decided = &h.sandbox.instances()[0];
    assert_eq!(
        (decided.status, decided.result),
        (
            approval_worker::sandbox::InstanceStatus::Completed,
            Some(approval_worker::sandbox::Outcome::Refuse)
        )
    );

    let again = decide(&[&instance, "agree"]).await.unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already COMPLETED (refuse)"),
        "{}",
        text(&again.stderr)
    );
    let unknown = decide(&["no-such-instance", "agree"]).await.unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no approval instance"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn enqueue_dry_run_writes_nothing_and_delay_run_at_and_callback_url_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::write(spool.join("a.pdf"), b"%PDF-1.4").unwrap();
    std::fs::write(
        dir.path().join("worker.toml"),
        format!(
            "[upload]\nallowed_dirs = [{:?}]\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    let base = [
        "enqueue",
        "--process-code",
        "PROC-1",
        "--originator",
        "manager4220",
        "--dept-id",
        "-1",
        "--attach",
        "spool/a.pdf",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&["--delay", "2h", "--dry-run"]);
    let out = run(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("dry run: 1 valid job(s) would be enqueued, to start at "),
        "{}",
        text(&out.stdout)
    );
    assert!(
        !dir.path().join("approval-worker.db").exists(),
        "a dry run creates no database"
    );
    let bad = with(&["--callback-url", "ftp://erp.example.com/hook", "--dry-run"]);
    let out = run(
        dir.path(),
        &bad.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("callback_url"),
        "{}",
        text(&out.stderr)
    );

    let before = approval_worker::queue::now_ms();
    let args = with(&[
        "--delay",
        "2h",
        "--callback-url",
        "https://erp.example.com/hook",
    ]);
    let out = run(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("approval-worker.db").exists());
    let args = with(&["--run-at", "2030-01-02T03:04:05+08:00"]);
    let out = run(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value =
        serde_json::from_slice(&run(dir.path(), &["jobs", "--json"]).stdout).unwrap();
    let delayed = &listed[1];
    let run_at = delayed["run_at"].as_i64().unwrap();
    assert!(
        (before + 7_200_000..before + 7_260_000).contains(&run_at),
        "{run_at}"
    );
    assert_eq!(
        delayed["payload"]["callback_url"],
        "https://erp.example.com/hook"
    );
    assert_eq!(listed[0]["run_at"], 1_893_524_645_000_i64);
}

#[test]
fn pause_and_resume_a_queue_and_stats_says_which_is_paused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), &["migrate"]).status.success());
    let out = run(
        dir.path(),
        &["pause", "default", "--reason", "DingTalk outage"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("paused"),
        "{}",
        text(&out.stdout)
    );
    let stats = text(&run(dir.path(), &["stats"]).stdout);
    assert!(
        stats.contains("queue \"default\" is PAUSED since") && stats.contains(": DingTalk outage"),
        "{stats}"
    );
    let json: Value =
        serde_json::from_slice(&run(dir.path(), &["stats", "--json"]).stdout).unwrap();
    assert_eq!(json["paused_queues"][0]["queue"], "default");
    let out = run(dir.path(), &["resume", "default", "--json"]);
    let resumed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resumed["changed"], true);
    let stats = text(&run(dir.path(), &["stats"]).stdout);
    assert!(!stats.contains("PAUSED"), "{stats}");
}

#[tokio::test]
async fn a_listing_whose_reader_stops_early_ends_quietly_with_the_sigpipe_status() {
    let h = crate::helpers::Harness::new().await;
    let file = h.file("a.pdf", b"%PDF");
    // More than a pipe holds, so the listing cannot finish once its reader is gone.
    for _ in 0..1_500 {
        h.enqueue(&h.payload(&[&file])).await;
    }
    let config = h.config_file("worker.toml", "");
    let mut child = h
        .command()
        .arg("--config")
        .arg(&config)
        .args(["jobs", "--limit", "1500"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "no panic printed");
}
