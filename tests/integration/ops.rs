//! The operator's commands through the binary: output, `--json` parsed back, exit codes.

mod bulk;
mod check;
mod progress;
mod wait;

use std::path::{Path, PathBuf};
use std::process::Output;

use approval_worker::queue::{CallDelta, JobId, NewJob, Queue, now_ms, quota_month};
use approval_worker::sandbox::SandboxOptions;
use serde_json::{Value, json};

use crate::helpers::{Harness, bytes};

const DAY_MS: i64 = 86_400_000;

/// Runs the binary with `--config CONFIG` and `args`.
pub fn run(harness: &Harness, config: &Path, args: &[&str]) -> Output {
    harness
        .command()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs and expects exit 0 with JSON on stdout.
pub fn run_json(harness: &Harness, config: &Path, args: &[&str]) -> Value {
    let out = run(harness, config, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)))
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_i64().unwrap())
        .collect()
}

/// A harness with a config file and `n` queued jobs on `queue` (ids 1..=n).
async fn with_jobs(n: usize, queue: Option<&str>) -> (Harness, PathBuf, Vec<JobId>) {
    let harness = Harness::new().await;
    let config = harness.config_file("worker.toml", "");
    let file = harness.file("a.pdf", &bytes(1_000, 9));
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            harness
                .enqueue_job(NewJob {
                    payload: harness.payload(&[&file]).to_string(),
                    queue: queue.map(str::to_string),
                    ..NewJob::default()
                })
                .await,
        );
    }
    (harness, config, ids)
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_filters_by_status_queue_and_age_and_limits_the_list() {
    let (harness, config, _) = with_jobs(3, None).await;
    harness
        .enqueue_job(NewJob {
            payload: json!({"process_code": "P", "originator_user_id": "u", "dept_id": -1,
                            "form": [], "attachments": []})
            .to_string(),
            queue: Some("other".into()),
            ..NewJob::default()
        })
        .await;
    harness
        .sql(&format!(
            "UPDATE jobs SET created_at = {} WHERE id = 1",
            now_ms() - 2 * DAY_MS
        ))
        .await;
    harness
        .sql("UPDATE jobs SET status = 'failed', finished_at = 1, last_error = 'boom' WHERE id = 2")
        .await;

    let all = run_json(&harness, &config, &["jobs", "--json"]);
    assert_eq!(ids(&all), [4, 3, 2, 1], "newest first");
    let failed = run_json(&harness, &config, &["jobs", "--status", "failed", "--json"]);
    assert_eq!(ids(&failed), [2]);
    assert_eq!(failed[0]["last_error"], "boom");
    let recent = run_json(&harness, &config, &["jobs", "--since", "1d", "--json"]);
    assert_eq!(ids(&recent), [4, 3, 2]);
    let other = run_json(&harness, &config, &["jobs", "--queue", "other", "--json"]);
    assert_eq!(ids(&other), [4]);
    let limited = run_json(&harness, &config, &["jobs", "--limit", "1", "--json"]);
    assert_eq!(ids(&limited), [4]);

    let table = run(&harness, &config, &["jobs", "--status", "failed"]);
    assert_eq!(table.status.code(), Some(0));
    let text = stdout(&table);
    assert!(text.starts_with("ID  STATUS"), "{text}");
    assert!(
        text.contains("2   failed") && text.contains("boom"),
        "{text}"
    );
    let none = run(&harness, &config, &["jobs", "--status", "cancelled"]);
    assert_eq!(stdout(&none).trim(), "no jobs");

    for bad in [
        &["jobs", "--since", "3y"][..],
        &["jobs", "--status", "lost"],
        &["jobs", "--limit", "0"],
    ] {
        let out = run(&harness, &config, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_the_history_and_its_json_parses_back() {
    let (mut harness, config, ids) = with_jobs(1, None).await;
    harness.start();
    let job = harness.finished(ids[0]).await;
    harness.stop().await;

    let detail = run_json(&harness, &config, &["show", "1", "--json"]);
    assert_eq!(detail["status"], "succeeded");
    assert_eq!(
        detail["result"]["instance_id"].as_str(),
        crate::helpers::result_of(&job)["instance_id"].as_str()
    );
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"claimed"));
    assert_eq!(kinds.last(), Some(&"succeeded"));

    let out = run(&harness, &config, &["show", "1"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for part in [
        "job 1  status succeeded",
        "payload:",
        "result:",
        "history:",
        "step_done",
    ] {
        assert!(text.contains(part), "missing {part:?} in\n{text}");
    }
    let missing = run(&harness, &config, &["show", "99"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no job with id 99"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_retry_move_a_job_and_refuse_wrong_statuses_with_exit_2() {
    let (harness, config, _) = with_jobs(1, None).await;

    let cancelled = run_json(&harness, &config, &["cancel", "1", "--json"]);
    assert_eq!(
        cancelled,
        json!({"id": 1, "status": "cancelled", "cancel_requested": false})
    );
    assert_eq!(harness.queue.get(1).await.unwrap().status, "cancelled");
    let again = run(&harness, &config, &["cancel", "1"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("only queued or running jobs can be cancelled"));

    let retried = run(&harness, &config, &["retry", "1"]);
    assert_eq!(retried.status.code(), Some(0), "{}", stderr(&retried));
    assert_eq!(
        stdout(&retried).trim(),
        "job 1 queued again at its checkpoint"
    );
    assert_eq!(harness.queue.get(1).await.unwrap().status, "queued");
    let twice = run(&harness, &config, &["retry", "1", "--json"]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(stderr(&twice).contains("only failed or cancelled jobs can be retried"));
    assert_eq!(
        run(&harness, &config, &["retry", "7"]).status.code(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_cancel_take_several_ids_act_on_each_and_name_the_ones_refused() {
    let (harness, config, _) = with_jobs(3, None).await;
    harness
        .sql("UPDATE jobs SET status = 'failed', finished_at = 1 WHERE id IN (1, 2)")
        .await;

    let cancelled = run(&harness, &config, &["cancel", "2", "3", "--json"]);
    assert_eq!(cancelled.status.code(), Some(2), "{}", stderr(&cancelled));
    let lines: Vec<Value> = stdout(&cancelled)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines,
        [json!({"id": 3, "status": "cancelled", "cancel_requested": false})]
    );
    assert!(
        stderr(&cancelled).contains("job 2: job 2 is failed")
            && stderr(&cancelled).contains("1 of 2 jobs were not cancelled"),
        "{}",
        stderr(&cancelled)
    );

    let retried = run(&harness, &config, &["retry", "1", "2", "3"]);
    assert_eq!(retried.status.code(), Some(0), "{}", stderr(&retried));
    assert_eq!(stdout(&retried).lines().count(), 3);
    for id in 1..=3 {
        assert_eq!(harness.queue.get(id).await.unwrap().status, "queued");
    }
    let unknown = run(&harness, &config, &["retry", "1", "99"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("job 99: no job with id 99"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_says_when_the_list_was_cut_and_shows_attempts_and_the_next_run() {
    let (harness, config, _) = with_jobs(3, None).await;
    harness
        .sql(&format!(
            "UPDATE jobs SET attempt = 3, uncharged_attempts = 1, max_attempts = 5, \
             run_at = {} WHERE id = 3",
            now_ms() + 4 * 60_000 + 10_000
        ))
        .await;
    let table = stdout(&run(&harness, &config, &["jobs", "--limit", "2"]));
    assert!(table.contains("queued, next in 4 min"), "{table}");
    assert!(table.contains("2 of 5"), "{table}");
    assert!(
        table.contains("0 of 12"),
        "the worker's limit for a job without its own: {table}"
    );
    assert!(
        table
            .trim_end()
            .ends_with("more jobs match (--limit, or narrow with --status, --queue, --since)"),
        "{table}"
    );
    let all = run(&harness, &config, &["jobs"]);
    assert!(
        !stdout(&all).contains("more jobs match"),
        "{}",
        stdout(&all)
    );
    let json = run(&harness, &config, &["jobs", "--limit", "2", "--json"]);
    assert_eq!(ids(&serde_json::from_str(&stdout(&json)).unwrap()), [3, 2]);
    assert!(stderr(&json).contains("more jobs match"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_jobs_by_status_and_step_and_shows_calls_this_month() {
    let (harness, config, _) = with_jobs(3, None).await;
    harness
        .sql("UPDATE jobs SET status = 'succeeded', step = 'done', updated_at = updated_at, finished_at = updated_at WHERE id = 1")
        .await;
    let month = quota_month(now_ms());
    let app = SandboxOptions::default().app_key;
    let calls = [
        CallDelta {
            endpoint: "workflow/processInstances/create".into(),
            counted: true,
            calls: 40,
        },
        CallDelta {
            endpoint: "oauth2/accessToken".into(),
            counted: false,
            calls: 2,
        },
    ];
    harness
        .queue
        .add_calls(&app, &month, &calls, now_ms())
        .await
        .unwrap();

    let stats = run_json(&harness, &config, &["stats", "--json"]);
    assert_eq!(stats["by_status"], json!({"queued": 2, "succeeded": 1}));
    assert_eq!(
        stats["by_step"],
        json!([{"status": "queued", "step": "space", "jobs": 2}])
    );
    assert_eq!(stats["succeeded_last_hour"], 1);
    assert_eq!(stats["oldest_queued"]["id"], 2);
    assert_eq!(stats["dingtalk_calls"]["month"], month.as_str());
    assert_eq!(
        stats["dingtalk_calls"]["counted"], 40,
        "the token call is exempt"
    );

    let out = run(&harness, &config, &["stats"]);
    let text = stdout(&out);
    for part in [
        "queued     2",
        "last hour: 1 succeeded, 0 failed",
        "oldest queued job: 2, created",
        "workflow/processInstances/create  40     yes",
        "counted against the monthly quota: 40",
    ] {
        assert!(text.contains(part), "missing {part:?} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_finished_jobs_older_than_the_age_with_their_history() {
    let (mut harness, config, ids) = with_jobs(2, None).await;
    // A followed approval still undecided keeps its job (see the outcome store's contract).
    harness.config.outcome.follow = false;
    harness.start();
    for id in &ids {
        harness.finished(*id).await;
    }
    harness.stop().await;
    harness
        .sql(&format!(
            "UPDATE jobs SET finished_at = {} WHERE id = 1",
            now_ms() - 31 * DAY_MS
        ))
        .await;

    let pruned = run_json(
        &harness,
        &config,
        &["prune", "--older-than", "30d", "--json"],
    );
    assert_eq!(pruned["pruned"], 1);
    assert!(harness.queue.get(1).await.is_err());
    assert!(
        harness.queue.events(1).await.unwrap().is_empty(),
        "history goes with the job"
    );
    assert_eq!(harness.queue.get(2).await.unwrap().status, "succeeded");
    let out = run(&harness, &config, &["prune", "--older-than", "30d"]);
    assert!(
        stdout(&out).starts_with("pruned 0 jobs"),
        "{}",
        stdout(&out)
    );
    let missing = run(&harness, &config, &["prune"]);
    assert_eq!(missing.status.code(), Some(2), "--older-than is required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_by_status_with_a_dry_run_first_never_frees_the_newest_id() {
    let (harness, config, _) = with_jobs(3, None).await;
    harness
        .sql(&format!(
            "UPDATE jobs SET status = CASE id WHEN 1 THEN 'failed' ELSE 'succeeded' END, \
             finished_at = {}",
            now_ms() - 31 * DAY_MS
        ))
        .await;

    let dry = run_json(
        &harness,
        &config,
        &[
            "prune",
            "--older-than",
            "30d",
            "--status",
            "failed",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(
        (dry["matched"].as_i64(), dry["pruned"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        harness.all_jobs().await.len(),
        3,
        "a dry run deletes nothing"
    );

    let out = run(
        &harness,
        &config,
        &["prune", "--older-than", "30d", "--status", "succeeded"],
    );
    assert!(
        stdout(&out).starts_with("pruned 1 succeeded jobs"),
        "{}",
        stdout(&out)
    );
    let left: Vec<i64> = harness.all_jobs().await.iter().map(|j| j.id).collect();
    assert_eq!(left, [1, 3], "job 3 holds the highest id and is kept");
    let next = harness
        .enqueue_job(NewJob {
            payload: json!({"process_code": "P"}).to_string(),
            ..NewJob::default()
        })
        .await;
    assert_eq!(next, 4, "no id is handed out twice");

    let running = run(
        &harness,
        &config,
        &["prune", "--older-than", "1d", "--status", "running"],
    );
    assert_eq!(running.status.code(), Some(2));
    assert!(
        stderr(&running).contains("running jobs have not finished"),
        "{}",
        stderr(&running)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_writes_a_private_consistent_copy_and_never_overwrites() {
    let (harness, config, _) = with_jobs(3, None).await;
    let target = harness.dir().join("backup.db");
    let out = run_json(
        &harness,
        &config,
        &["backup", target.to_str().unwrap(), "--json"],
    );
    assert!(out["bytes"].as_u64().unwrap() > 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let copy = Queue::open(&target).await.unwrap();
    let jobs = copy
        .list(&approval_worker::queue::JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    copy.close().await;

    let again = run(&harness, &config, &["backup", target.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_explains_itself_with_an_example() {
    let harness = Harness::new().await;
    for command in [
        "migrate",
        "enqueue",
        "run",
        "jobs",
        "show",
        "retry",
        "cancel",
        "stats",
        "prune",
        "backup",
        "copy-to",
        "check",
        "completions",
        "sandbox",
        "demo",
    ] {
        let out = harness
            .command()
            .args([command, "--help"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{command}");
        let text = stdout(&out);
        assert!(
            text.contains("Examples:\n  approval-worker"),
            "{command} --help has no example:\n{text}"
        );
    }
    let top = harness.command().arg("--help").output().unwrap();
    assert!(stdout(&top).contains("Exit codes: 0 ok"));
    let usage = harness.command().arg("frobnicate").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_printed_for_bash_zsh_and_fish() {
    let harness = Harness::new().await;
    for (shell, marker) in [
        ("bash", "complete -F _approval__worker"),
        ("zsh", "#compdef approval-worker"),
        ("fish", "complete -c approval-worker"),
    ] {
        let out = harness
            .command()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = stdout(&out);
        assert!(
            script.contains(marker),
            "{shell}:\n{}",
            &script[..script.len().min(400)]
        );
        assert!(script.contains("backup"), "{shell} completes subcommands");
    }
    let bad = harness
        .command()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
