//! How `run` stops: a second signal ends it at once even while another process holds the
//! database's write lock, SIGHUP drains like SIGTERM, `/healthz` answers while the database
//! is locked, and a database deleted under the worker stops it with an error.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Daemon, Harness, bytes};

/// Takes the write lock of `db` (after committing `insert`, if given) and holds it until
/// killed; returns once the lock is held.
struct LockHolder(Child);

impl LockHolder {
    fn take(db: &Path, insert: Option<&str>) -> LockHolder {
        let script = r#"
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
if sys.argv[2]:
    conn.execute("INSERT INTO jobs (payload) VALUES (?)", (sys.argv[2],))
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(120)
"#;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(db)
            .arg(insert.unwrap_or(""))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        LockHolder(child)
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A daemon whose runners are busy: slow creates keep jobs in flight.
async fn busy_daemon(h: &Harness, extra: &str) -> Daemon {
    for n in 0..6 {
        let file = h.file(&format!("f{n}.pdf"), &bytes(500, n));
        h.enqueue(&h.payload(&[&file])).await;
    }
    let config = h.config_file("worker.toml", extra);
    let mut daemon = h.spawn_run(&config, &[("APPROVAL_WORKER_LOG", "approval_worker=debug")]);
    daemon.wait_for_log("worker started");
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_the_daemon_at_once_while_another_process_holds_the_write_lock() {
    let h = Harness::new().await;
    let mut daemon = busy_daemon(&h, "[worker]\nshutdown_grace_secs = 60\n").await;
    let _lock = LockHolder::take(&h.config.database.path, None);
    daemon.signal("TERM");
    daemon.wait_for_log("signal received");
    daemon.signal("TERM");
    daemon.wait_for_log("second signal");
    let asked = Instant::now();
    assert_eq!(daemon.wait_exit(Duration::from_secs(15)), Some(0));
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "stopped {took:?} after the second signal; log:\n{}",
        daemon.log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_drains_like_sigterm_and_exits_cleanly() {
    let h = Harness::new().await;
    let mut daemon = busy_daemon(&h, "").await;
    daemon.signal("HUP");
    let line = daemon.wait_for_log("signal received");
    assert!(line.contains("SIGHUP"), "{line}");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(
        daemon.log.iter().any(|l| l.contains("worker stopped")),
        "{}",
        daemon.log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_within_a_second_while_the_database_is_locked() {
    let h = Harness::new().await;
    let config = h.config_file("worker.toml", "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let mut daemon = h.spawn_run(&config, &[]);
    let line = daemon.wait_for_log("/healthz");
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the log names the address")
        .to_owned();
    daemon.wait_for_log("worker started");
    let healthz = format!("http://{address}/healthz");
    let client = reqwest::Client::new();
    assert_eq!(client.get(&healthz).send().await.unwrap().status(), 200);
    // A committed job the worker will try to claim, then the lock: its claim waits for the
    // lock, holding the worker's connection.
    let file = h.file("a.pdf", &bytes(100, 1));
    let payload = h.payload(&[&file]).to_string();
    let _lock = LockHolder::take(&h.config.database.path, Some(&payload));
    // The worker sees the new row within its change check and its claim then waits for the
    // lock: from then on /healthz must still answer, within a second, and say why.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let asked = Instant::now();
        let answer = client
            .get(&healthz)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("healthz answers while the database is locked");
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(1), "answered after {took:?}");
        if answer.status() == 503 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "never reported the locked database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body = answer.text().await.unwrap();
    assert!(body.contains("no answer within"), "{body}");
}

/// Starts a worker, deletes `victim` (relative to the database path) and expects it to stop
/// with exit code 1, naming the file.
async fn deleting_stops_the_worker(suffix: &str) {
    let h = Harness::new().await;
    let mut daemon = busy_daemon(&h, "").await;
    let mut victim = h.config.database.path.as_os_str().to_owned();
    victim.push(suffix);
    std::fs::remove_file(&victim).unwrap();
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(1));
    let log = daemon.log.join("\n");
    assert!(
        log.contains("was deleted") && log.contains(&*victim.to_string_lossy()),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_wal_under_a_running_worker_stops_it_with_an_error() {
    deleting_stops_the_worker("-wal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_database_under_a_running_worker_stops_it_with_an_error() {
    deleting_stops_the_worker("").await;
}
