//! Live upload progress read by other processes: `show` and `enqueue --wait` tell the bytes
//! sent of a slow upload, its speed and the time left, and a large file's parts in OSS,
//! while the worker sends it.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use approval_worker::sandbox::SandboxOptions;
use serde_json::Value;

use super::{run, run_json, stderr, stdout};
use crate::helpers::{Harness, bytes, md5_hex};
use crate::multipart;

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_shows_its_bytes_speed_and_time_left_to_show_and_enqueue_wait() {
    let mut harness = Harness::with_sandbox(SandboxOptions {
        oss_bytes_per_sec: Some(3 * MIB as u64),
        ..SandboxOptions::default()
    })
    .await;
    let config = harness.config_file("worker.toml", "");
    // Large beside what loopback's socket buffers take in before OSS reads it.
    let data = bytes(24 * MIB, 5);
    let big = harness.file("big.bin", &data);
    harness.start();
    let wait = spawn_enqueue_wait(&harness, &config, &big);

    // `show`, another process, while the worker sends the file.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut line, mut live): (Option<String>, Option<Value>) = (None, None);
    while line.is_none() || live.is_none() {
        assert!(
            Instant::now() < deadline,
            "no live upload shown: {line:?} {live:?}"
        );
        let shown = run(&harness, &config, &["show", "1"]);
        if let Some(found) = stdout(&shown)
            .lines()
            .find(|l| l.starts_with("uploading file 1 of 1 (big.bin): "))
        {
            line = Some(found.to_owned());
        }
        let json = run(&harness, &config, &["show", "1", "--json"]);
        if json.status.success() {
            let detail: Value = serde_json::from_str(&stdout(&json)).unwrap();
            if !detail["upload"].is_null() {
                live = Some(detail["upload"].clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = line.unwrap();
    assert!(
        line.contains(" of 24.00 MiB (") && line.contains("/s, about ") && line.contains(" left"),
        "{line}"
    );
    let live = live.unwrap();
    assert_eq!(live["file_name"], "big.bin");
    assert_eq!(live["file_index"], 0);
    assert_eq!(live["file_count"], 1);
    assert_eq!(live["bytes_total"], data.len());
    let sent = live["bytes_sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < data.len() as u64, "{live}");
    assert!(live["bytes_per_sec"].as_f64().unwrap() > 0.0, "{live}");
    assert!(live["eta_secs"].as_f64().unwrap() > 0.0, "{live}");

    let out = wait.wait_with_output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.lines()
            .any(|l| l.starts_with("  … uploading file 1 of 1 (big.bin): ")
                && l.contains("/s, about ")),
        "{text}"
    );
    assert!(text.contains("job 1 succeeded"), "{text}");
    let stored = harness.sandbox.files();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].md5, md5_hex(&data), "the file arrived whole");
    let after = run(&harness, &config, &["show", "1", "--json"]);
    let detail: Value = serde_json::from_str(&stdout(&after)).unwrap();
    assert!(detail["upload"].is_null(), "a finished job shows no upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_and_enqueue_wait_tell_how_many_parts_of_a_large_file_are_in_oss() {
    // 4 MiB in sixteen parts at 1 MiB/s: four seconds, long enough to be reported.
    let mut h = multipart::harness(Some(MIB as u64), None).await;
    let config = h.config_file("worker.toml", "");
    let data = multipart::random_bytes(4 * MIB, 15);
    let file = h.file("scan.tiff", &data);
    h.start();
    let wait = spawn_enqueue_wait(&h, &config, &file);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.all_jobs().await.is_empty() {
        assert!(Instant::now() < deadline, "never enqueued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.wait_until(1, "two parts in OSS", |_, events| {
        multipart::part_events(events) >= 2
    })
    .await;

    let text = stdout(&run(&h, &config, &["show", "1"]));
    let line = text
        .lines()
        .find(|l| l.starts_with("uploading in parts: "))
        .unwrap_or_else(|| panic!("no parts line:\n{text}"));
    assert!(
        line.contains(" of 16 parts in OSS (") && line.ends_with(" of 4.00 MiB)"),
        "{line}"
    );
    let detail = run_json(&h, &config, &["show", "1", "--json"]);
    let parts = &detail["parts"];
    assert_eq!(parts["part_count"], 16, "{detail}");
    assert_eq!(parts["part_bytes"], multipart::PART, "{detail}");
    assert!(parts["parts_done"].as_u64().unwrap() >= 2, "{detail}");

    let out = wait.wait_with_output().unwrap();
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{said}{}", stderr(&out));
    assert!(
        said.lines()
            .any(|l| l.starts_with("  … uploading file 1 of 1 (scan.tiff): ")
                && l.contains(" of 16 parts in OSS")),
        "{said}"
    );
    assert!(
        !said.contains("put_part"),
        "parts show on the progress line, not one line each:\n{said}"
    );
    multipart::assert_stored_identically(&h, &data);
    let history = stdout(&run(&h, &config, &["show", "1"]));
    assert!(
        history.contains("put_part × 16"),
        "one history row for the parts:\n{history}"
    );
    assert!(!history.contains("uploading in parts"), "{history}");
}

/// Starts `enqueue --wait` of a job attaching `file`, its output piped.
fn spawn_enqueue_wait(harness: &Harness, config: &Path, file: &Path) -> Child {
    harness
        .command()
        .arg("--config")
        .arg(config)
        .args([
            "enqueue",
            "--process-code",
            "PROC-TEST",
            "--originator",
            "manager4220",
            "--dept-id",
            "-1",
            "--attach",
            file.to_str().unwrap(),
            "--wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
