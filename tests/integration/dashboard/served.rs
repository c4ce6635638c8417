//! The dashboard served by the binary: `approval-worker dashboard` against the database
//! alone, `run` serving it beside the worker, and the refusal of a listener other hosts
//! reach without `allow_remote` and a token.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Daemon, Harness};

on_both_stores!(the_dashboard_command_serves_the_database_alone_and_run_serves_it_too);

async fn the_dashboard_command_serves_the_database_alone_and_run_serves_it_too(
    h: Harness,
    _store: &str,
) {
    let id = h.enqueue(&json!({"process_code": "PROC-CLI"})).await;
    let config = h.config_file("dashboard.toml", "");
    let mut command = h.command();
    command
        .arg("--config")
        .arg(&config)
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut alone = Daemon::spawn(command);
    let base = served_at(&alone.wait_for_log("serving the dashboard at"));
    let jobs: Value = reqwest::get(format!("{base}/api/jobs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"][0]["id"], id, "{jobs}");
    let paused: Value = reqwest::Client::new()
        .post(format!("{base}/api/queues/default/pause?reason=outage"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        paused,
        json!({"queue": "default", "paused": true, "changed": true})
    );
    assert_eq!(h.queue.paused().await.unwrap()[0].queue, "default");
    alone.signal("TERM");
    assert_eq!(alone.wait_exit(Duration::from_secs(10)), Some(0));

    let config = h.config_file("run.toml", "[dashboard]\nlisten = \"127.0.0.1:0\"\n");
    let mut run = h.spawn_run(&config, &[]);
    let base = served_at(&run.wait_for_log("serving the dashboard at"));
    let page = reqwest::get(format!("{base}/jobs/{id}")).await.unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains(&format!("Job {id}")), "{text}");
    assert!(
        text.contains("no worker claims it"),
        "the queue is paused: {text}"
    );
    assert_eq!(h.queue.get(id).await.unwrap().status, "queued");
    run.signal("TERM");
    assert_eq!(run.wait_exit(Duration::from_secs(30)), Some(0));
}

#[tokio::test]
async fn a_dashboard_other_hosts_can_reach_is_refused_without_allow_remote_and_a_token() {
    let h = Harness::new().await;
    let config = h.config_file("remote.toml", "");
    let out = h
        .command()
        .arg("--config")
        .arg(&config)
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("allow_remote"), "{stderr}");

    let config = h.config_file(
        "remote-no-token.toml",
        "[dashboard]\nallow_remote = true\ntoken_env = \"APPROVAL_WORKER_TEST_NO_SUCH_TOKEN\"\n",
    );
    let out = h
        .command()
        .arg("--config")
        .arg(&config)
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a token"), "{stderr}");

    let config = h.config_file(
        "remote-short-token.toml",
        "[dashboard]\nallow_remote = true\ntoken_env = \"APPROVAL_WORKER_TEST_SHORT_TOKEN\"\n",
    );
    let out = h
        .command()
        .arg("--config")
        .arg(&config)
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .env("APPROVAL_WORKER_TEST_SHORT_TOKEN", "hunter2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shorter than 16 characters"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the token is not echoed: {stderr}"
    );
}

/// The URL in a "serving the dashboard at http://…/" log line.
fn served_at(line: &str) -> String {
    let at = line.find("http://").expect("a URL in the log line");
    line[at..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}
