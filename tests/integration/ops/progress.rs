//! Live upload progress read by other processes: `show` and `enqueue --wait` tell the bytes
//! sent of a slow upload, its speed and the time left, while the worker sends it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use approval_worker::sandbox::SandboxOptions;
use serde_json::Value;

use super::{run, stderr, stdout};
use crate::helpers::{Harness, bytes, md5_hex};

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
    let wait = harness
        .command()
        .arg("--config")
        .arg(&config)
        .args([
            "enqueue",
            "--process-code",
            "PROC-TEST",
            "--originator",
            "manager4220",
            "--dept-id",
            "-1",
            "--attach",
            big.to_str().unwrap(),
            "--wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

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
