//! Several processes on one database file: two `run` daemons and an outside producer that
//! holds SQLite's write lock in long transactions. No job is claimed twice, no job fails
//! because the database was busy, and every job makes exactly one approval.

use std::collections::BTreeMap;
use std::time::Duration;

use approval_worker::queue::{EventRow, JobRow};

use crate::faults::summary;
use crate::helpers::{BINARY_WORKER, Harness, audit, bytes, sigterm, wait_exit};

/// Jobs the test itself enqueues before the daemons start.
const EARLY_JOBS: usize = 30;
/// Rows the outside writer inserts while the daemons run.
const OUTSIDE_ROWS: usize = 40;
/// How long the outside writer holds the write lock per row: long enough that both daemons
/// keep finding the database busy.
const LOCK_HOLD_MS: u64 = 150;

/// An outside producer in Python: one `BEGIN IMMEDIATE` per row, holding the write lock a
/// while before committing, as a slow service written in another language might.
const WRITER: &str = r#"
import json, sqlite3, sys, time
db, hold_ms, payloads = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
conn = sqlite3.connect(db, timeout=30, isolation_level=None)
for payload in payloads:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO jobs (payload) VALUES (?)", (payload,))
    time.sleep(hold_ms / 1000)
    conn.execute("COMMIT")
    time.sleep(0.02)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_and_an_outside_writer_share_the_file_without_double_claims() {
    let h = Harness::new().await;
    let config = h.binary_config("worker", BINARY_WORKER);
    let logs = [
        h.spool.with_file_name("daemon-a.log"),
        h.spool.with_file_name("daemon-b.log"),
    ];
    for n in 0..EARLY_JOBS {
        let file = h.file(&format!("early{n}.pdf"), &bytes(2000 + n * 100, n as u8));
        h.enqueue(&h.payload(&[&file])).await;
    }
    let outside: Vec<String> = (0..OUTSIDE_ROWS)
        .map(|n| {
            let a = h.file(&format!("outside{n}-a.pdf"), &bytes(5000, n as u8));
            let b = h.file(&format!("outside{n}-b.txt"), &bytes(300, n as u8));
            h.payload(&[&a, &b]).to_string()
        })
        .collect();

    let mut daemons: Vec<_> = logs
        .iter()
        .map(|log| h.spawn_binary(&config, log, "info"))
        .collect();
    let writer = std::process::Command::new("python3")
        .arg("-c")
        .arg(WRITER)
        .arg(&h.config.database.path)
        .arg(LOCK_HOLD_MS.to_string())
        .arg(serde_json::to_string(&outside).unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the outside writer) is installed");
    let writer_status = tokio::task::spawn_blocking(move || writer.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        writer_status.status.success(),
        "outside writer: {}",
        String::from_utf8_lossy(&writer_status.stderr)
    );
    let jobs = h.all_finished(Duration::from_secs(90)).await;
    for daemon in &mut daemons {
        sigterm(daemon);
        assert!(wait_exit(daemon, Duration::from_secs(10)).await.success());
    }

    assert_eq!(jobs.len(), EARLY_JOBS + OUTSIDE_ROWS);
    for job in &jobs {
        let events = h.queue.events(job.id).await.unwrap();
        assert_eq!(job.status, "succeeded", "{job:?}\n{}", summary(&events));
        assert_no_double_claim(job, &events);
        for event in &events {
            let error = event.error.as_deref().unwrap_or_default();
            assert!(!error.contains("locked"), "job {}: {error}", job.id);
        }
    }
    assert_eq!(audit(&h.sandbox.instances(), &jobs), (0, 0));
    let texts: Vec<String> = logs
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap())
        .collect();
    let served: Vec<usize> = texts
        .iter()
        .map(|text| text.matches("approval instance created").count())
        .collect();
    let busy: usize = texts
        .iter()
        .map(|text| text.matches("locked").count())
        .sum();
    eprintln!(
        "several processes: {} jobs ({} from the outside writer), served per daemon {served:?}, \
         {busy} busy-database log lines",
        jobs.len(),
        OUTSIDE_ROWS
    );
    assert_eq!(served.iter().sum::<usize>(), jobs.len());
    assert!(
        served.iter().all(|n| *n > 0),
        "both daemons took work: {served:?}"
    );
}

/// Within one attempt: one claim, at most one ending, and no step done more often than the
/// job has attachments (plus the redos its step_failed events explain).
pub fn assert_no_double_claim(job: &JobRow, events: &[EventRow]) {
    let attachments =
        serde_json::from_str::<serde_json::Value>(&job.payload).unwrap()["attachments"]
            .as_array()
            .unwrap()
            .len();
    let mut attempts: BTreeMap<i64, Vec<&EventRow>> = BTreeMap::new();
    for event in events {
        attempts
            .entry(event.attempt.unwrap_or(0))
            .or_default()
            .push(event);
    }
    for (attempt, events) in attempts {
        let count = |kind: &str, step: Option<&str>| {
            events
                .iter()
                .filter(|e| e.kind == kind && (step.is_none() || e.step.as_deref() == step))
                .count()
        };
        let context = || {
            format!(
                "job {} attempt {attempt}\n{}",
                job.id,
                summary(&events.iter().copied().cloned().collect::<Vec<_>>())
            )
        };
        assert_eq!(count("claimed", None), 1, "{}", context());
        let endings = [
            "succeeded",
            "failed",
            "retry_scheduled",
            "released",
            "rescued",
            "cancelled",
        ]
        .iter()
        .map(|kind| count(kind, None))
        .sum::<usize>();
        assert!(endings <= 1, "{}", context());
        let redos = count("step_failed", None);
        assert!(count("step_done", Some("space")) <= 1, "{}", context());
        for step in ["upload_info", "put", "commit"] {
            assert!(
                count("step_done", Some(step)) <= attachments + redos,
                "{step}: {}",
                context()
            );
        }
    }
}
