//! `run` under systemd: sd_notify messages and their order, the drain on SIGTERM and the
//! immediate stop on a second signal, the monthly call budget, and the metrics listener.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use approval_worker::queue::{CallDelta, now_ms, quota_month};
use approval_worker::sandbox::{Endpoint, Fault, SandboxOptions};
use serde_json::Value;

use crate::helpers::{DAEMON_TIMEOUT, Harness, bytes};

/// A socket standing in for systemd's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every datagram received so far, as `KEY=VALUE` lines.
    messages: Vec<Vec<String>>,
}

impl NotifySocket {
    fn bind(harness: &Harness) -> NotifySocket {
        let path = harness.dir().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            socket,
            path,
            messages: Vec::new(),
        }
    }

    fn env(&self) -> String {
        self.path.display().to_string()
    }

    /// The first message, received already or later, that satisfies `done`; its index.
    fn wait_for(&mut self, what: &str, done: impl Fn(&[String]) -> bool) -> usize {
        match self.messages.iter().position(|m| done(m)) {
            Some(i) => i,
            None => self.next(what, done),
        }
    }

    /// Receives until a new message satisfies `done`; returns its index.
    fn next(&mut self, what: &str, done: impl Fn(&[String]) -> bool) -> usize {
        let deadline = Instant::now() + DAEMON_TIMEOUT;
        let mut buf = vec![0_u8; 4096];
        while Instant::now() < deadline {
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let message: Vec<String> = text.lines().map(str::to_string).collect();
            let matched = done(&message);
            self.messages.push(message);
            if matched {
                return self.messages.len() - 1;
            }
        }
        panic!("no sd_notify message {what}; got {:?}", self.messages);
    }

    fn count(&self, line: &str) -> usize {
        self.messages
            .iter()
            .filter(|m| m.iter().any(|l| l == line))
            .count()
    }
}

fn has(message: &[String], line: &str) -> bool {
    message.iter().any(|l| l == line)
}

fn value<'a>(message: &'a [String], key: &str) -> Option<&'a str> {
    message
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_under_systemd_says_ready_then_pings_the_watchdog_with_status_then_stopping() {
    let harness = Harness::new().await;
    let file = harness.file("a.pdf", &bytes(10_000, 1));
    let id = harness.enqueue(&harness.payload(&[&file])).await;
    let config = harness.config_file("worker.toml", "");
    let mut notify = NotifySocket::bind(&harness);
    let mut daemon = harness.spawn_run(
        &config,
        &[
            ("NOTIFY_SOCKET", &notify.env()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );

    let ready = notify.wait_for("READY=1", |m| has(m, "READY=1"));
    assert_eq!(
        ready, 0,
        "READY is the first message: {:?}",
        notify.messages
    );
    let status = value(&notify.messages[0], "STATUS").unwrap();
    assert!(status.starts_with("running 0/4 jobs;"), "{status}");
    assert_eq!(harness.finished(id).await.status, "succeeded");
    notify.wait_for("a watchdog ping after the job", |m| {
        has(m, "WATCHDOG=1") && value(m, "STATUS") == Some("running 0/4 jobs; 0 queued (0 due)")
    });
    daemon.signal("TERM");
    let stopping = notify.wait_for("STOPPING=1", |m| has(m, "STOPPING=1"));
    assert_eq!(daemon.wait_exit(DAEMON_TIMEOUT), Some(0));

    // Order: READY first, pings only in between, STOPPING last.
    assert_eq!(notify.count("READY=1"), 1);
    assert!(notify.count("WATCHDOG=1") >= 1);
    let last_ping = notify
        .messages
        .iter()
        .rposition(|m| has(m, "WATCHDOG=1"))
        .unwrap();
    assert!(
        0 < last_ping && last_ping < stopping,
        "{:?}",
        notify.messages
    );
    assert_eq!(
        value(&notify.messages[stopping], "STATUS"),
        Some("stopping: draining 0 in-flight jobs")
    );
    assert_eq!(stopping, notify.messages.len() - 1, "{:?}", notify.messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_asks_for_stop_time_and_a_second_signal_stops_at_once_releasing_the_lease() {
    let harness = Harness::new().await;
    // The first DingTalk call of the job hangs far longer than the test waits.
    harness
        .sandbox
        .inject(Endpoint::Space, Fault::Latency(Duration::from_secs(25)), 1);
    let file = harness.file("a.pdf", &bytes(1_000, 2));
    let id = harness.enqueue(&harness.payload(&[&file])).await;
    let config = harness.config_file("worker.toml", "[worker]\nshutdown_grace_secs = 60\n");
    let mut notify = NotifySocket::bind(&harness);
    let mut daemon = harness.spawn_run(&config, &[("NOTIFY_SOCKET", &notify.env())]);
    notify.wait_for("READY=1", |m| has(m, "READY=1"));
    let deadline = Instant::now() + DAEMON_TIMEOUT;
    while harness.received(Endpoint::Space).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the job never reached the space call"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    daemon.signal("TERM");
    let stopping = notify.wait_for("STOPPING=1", |m| has(m, "STOPPING=1"));
    let message = &notify.messages[stopping];
    assert_eq!(
        value(message, "STATUS"),
        Some("stopping: draining 1 in-flight jobs")
    );
    let extend_usec: u64 = value(message, "EXTEND_TIMEOUT_USEC")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (60_000_000..=65_000_000).contains(&extend_usec),
        "asks for the grace period and a margin: {extend_usec}"
    );
    daemon.wait_for_log("worker draining");

    let second = Instant::now();
    daemon.signal("INT");
    assert_eq!(daemon.wait_exit(DAEMON_TIMEOUT), Some(0));
    assert!(
        second.elapsed() < Duration::from_secs(20),
        "the second signal did not wait for the hanging call"
    );
    daemon.wait_for_log("second signal");
    let job = harness.queue.get(id).await.unwrap();
    assert_eq!(job.status, "queued", "{job:?}");
    assert_eq!(job.lease_owner, None);
    assert_eq!(
        job.uncharged_attempts, 1,
        "a forced stop is not the job's fault"
    );
    let events = harness.queue.events(id).await.unwrap();
    assert_eq!(events.last().unwrap().kind, "released", "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reached_monthly_call_budget_stops_claiming_with_a_clear_status() {
    let harness = Harness::new().await;
    let app_key = SandboxOptions::default().app_key;
    let used = [CallDelta {
        endpoint: "workflow/processInstances/create".into(),
        counted: true,
        calls: 10,
    }];
    harness
        .queue
        .add_calls(&app_key, &quota_month(now_ms()), &used, now_ms())
        .await
        .unwrap();
    let file = harness.file("a.pdf", &bytes(1_000, 3));
    let id = harness.enqueue(&harness.payload(&[&file])).await;
    let config = harness.config_file("worker.toml", "[dingtalk]\nmonthly_call_budget = 10\n");
    let mut notify = NotifySocket::bind(&harness);
    let mut daemon = harness.spawn_run(
        &config,
        &[
            ("NOTIFY_SOCKET", &notify.env()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    let ready = notify.wait_for("READY=1", |m| has(m, "READY=1"));
    let status = value(&notify.messages[ready], "STATUS").unwrap();
    assert!(
        status.ends_with("DingTalk calls this month 10/10: budget reached, not claiming"),
        "{status}"
    );
    daemon.wait_for_log("monthly DingTalk call budget reached");
    // Three status reports later the job still waits, untouched.
    for _ in 0..3 {
        notify.next("another status report", |m| has(m, "WATCHDOG=1"));
    }
    let job = harness.queue.get(id).await.unwrap();
    assert_eq!((job.status.as_str(), job.attempt), ("queued", 0));
    // Only the start-up credentials check (the token call, exempt from the quota) went out.
    let endpoints: Vec<Endpoint> = harness
        .sandbox
        .requests()
        .iter()
        .map(|r| r.endpoint)
        .collect();
    assert_eq!(endpoints, vec![Endpoint::Token]);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(DAEMON_TIMEOUT), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_prometheus_text_and_healthz_during_a_run() {
    let harness = Harness::new().await;
    let sizes = [1_500_000_usize, 20_000, 3_000];
    let files: Vec<PathBuf> = sizes
        .iter()
        .enumerate()
        .map(|(n, size)| harness.file(&format!("f{n}.pdf"), &bytes(*size, n as u8)))
        .collect();
    let mut ids = Vec::new();
    for file in &files {
        ids.push(harness.enqueue(&harness.payload(&[file])).await);
    }
    let config = harness.config_file(
        "worker.toml",
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n",
    );
    let mut daemon = harness.spawn_run(&config, &[]);
    let line = daemon.wait_for_log("/metrics");
    let log: Value = serde_json::from_str(&line).expect("[log] format = json gives JSON lines");
    let address = log["fields"]["address"].as_str().unwrap().to_string();
    for id in &ids {
        assert_eq!(harness.finished(*id).await.status, "succeeded");
    }

    let client = reqwest::Client::new();
    let response = client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let samples = parse_openmetrics(&text);
    let sample = |key: &str| {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in\n{text}"))
    };
    assert_eq!(sample("approval_worker_jobs{status=\"succeeded\"}"), 3.0);
    assert_eq!(sample("approval_worker_jobs{status=\"queued\"}"), 0.0);
    assert_eq!(
        sample("approval_worker_jobs_finished_total{status=\"succeeded\"}"),
        3.0
    );
    assert_eq!(
        sample("approval_worker_jobs_finished_total{status=\"failed\"}"),
        0.0
    );
    assert_eq!(
        sample(&format!(
            "approval_worker_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(sample("approval_worker_queue_depth"), 0.0);
    assert_eq!(
        sample("approval_worker_oldest_waiting_job_age_seconds"),
        0.0
    );
    assert_eq!(
        sample("approval_worker_upload_bytes_total"),
        sizes.iter().sum::<usize>() as f64
    );
    assert_eq!(
        sample("approval_worker_step_duration_seconds_count{step=\"put\",outcome=\"ok\"}"),
        3.0
    );
    assert_eq!(
        sample(
            "approval_worker_dingtalk_calls_total{endpoint=\"workflow/processInstances/create\",result=\"ok\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            "approval_worker_dingtalk_calls_total{endpoint=\"storage/files/commit\",result=\"ok\"}"
        ),
        3.0
    );
    assert!(!text.contains(&SandboxOptions::default().app_secret));

    let health = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["claim_loop"], "alive");

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(DAEMON_TIMEOUT), Some(0));
    // The call counts reached the database on the way out, matching what DingTalk received.
    let month = harness
        .queue
        .monthly_calls(&quota_month(now_ms()))
        .await
        .unwrap();
    let stored = |endpoint: &str| {
        month
            .iter()
            .find(|row| row.endpoint == endpoint)
            .map_or(0, |row| row.calls)
    };
    assert_eq!(
        stored("workflow/processInstances/create") as usize,
        harness.received(Endpoint::CreateInstance).len()
    );
    assert_eq!(
        stored("storage/files/commit") as usize,
        harness.received(Endpoint::Commit).len()
    );
    assert!(
        month
            .iter()
            .all(|row| row.app_key == SandboxOptions::default().app_key)
    );
}

/// Sample lines (`name{labels} value`) of an OpenMetrics text exposition, checking its
/// shape: `# TYPE`/`# HELP` comments, numeric values, and a final `# EOF`.
fn parse_openmetrics(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                ["TYPE ", "HELP ", "UNIT ", "EOF"]
                    .iter()
                    .any(|p| comment.starts_with(p)),
                "{line}"
            );
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        assert!(
            samples.insert(key.to_string(), value).is_none(),
            "duplicate sample {key}"
        );
    }
    samples
}
