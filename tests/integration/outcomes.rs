//! Following approvals to their decision, end to end: the worker learns it from the
//! sandbox's Stream gateway (acked after the commit, once however often DingTalk sends it)
//! or by reading the instance, stores the approvers' records, and POSTs one signed
//! notification per decision until the receiver accepts it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use approval_worker::queue::{JobId, OutcomeRow};
use approval_worker::sandbox::{AckStatus, Decision, Endpoint, SandboxOptions};
use approval_worker::secret::Secret;
use approval_worker::worker::WorkerSettings;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::helpers::{Harness, bytes};

const SECRET: &str = "hook-secret";
const WAIT: Duration = Duration::from_secs(20);

/// A receiver of notifications on 127.0.0.1 that answers each POST with the next status of
/// its script (then 200) and keeps what it got. A status of 0 never answers.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Receiver, String) {
        let receiver = Receiver {
            got: Arc::default(),
            script: Arc::new(Mutex::new(script.iter().rev().copied().collect())),
        };
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    state.got.lock().unwrap().push((headers, body));
                    let status = state.script.lock().unwrap().pop().unwrap_or(200);
                    if status == 0 {
                        std::future::pending::<()>().await;
                    }
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn got(&self) -> Vec<(HeaderMap, String)> {
        self.got.lock().unwrap().clone()
    }
}

/// Checks a notification as a receiver written from the README would: HMAC-SHA256 over
/// `"{timestamp}.{body}"`, hex, in `X-Approval-Worker-Signature: v1=…`.
fn signed_by(headers: &HeaderMap, body: &str, secret: &str) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let timestamp = header("x-approval-worker-timestamp");
    let Some(signature) = header("x-approval-worker-signature").strip_prefix("v1=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(signature).unwrap_or_default())
        .is_ok()
}

/// The harness's worker with a signing secret and the outcome settings of `harness.config`
/// (the Stream on unless the test turned it off).
fn start_worker(harness: &mut Harness) {
    let settings =
        WorkerSettings::from_config(&harness.config).with_webhook_secret(Secret::new(SECRET));
    harness.start_with_settings(settings);
}

async fn submitted(harness: &Harness, name: &str) -> (JobId, String) {
    let file = harness.file(name, &bytes(3_000, 7));
    let id = harness.enqueue(&harness.payload(&[&file])).await;
    let job = harness.finished(id).await;
    assert_eq!(job.status, "succeeded", "{:?}", job.last_error);
    let instance = harness
        .queue
        .outcome(id)
        .await
        .unwrap()
        .unwrap()
        .instance_id;
    (id, instance)
}

/// Waits until job `id` has an outcome that satisfies `done`.
async fn outcome_when(
    harness: &Harness,
    id: JobId,
    done: impl Fn(&OutcomeRow) -> bool,
) -> OutcomeRow {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let outcome = harness.queue.outcome(id).await.unwrap();
        if let Some(outcome) = outcome.as_ref().filter(|o| done(o)) {
            return outcome.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outcome never got there: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_arrives_by_stream_is_acked_after_its_commit_and_notified_once_signed() {
    let mut h = Harness::new().await;
    let (receiver, url) = Receiver::start(&[]).await;
    h.config.outcome.webhook_url = Some(url);
    h.config.outcome.stream = true;
    start_worker(&mut h);
    let (id, instance) = submitted(&h, "stream.pdf").await;
    let started = h
        .sandbox
        .wait_for(WAIT, |s| s.stream_stats().open_connections == 1)
        .await;
    assert!(started, "the worker holds one Stream connection");

    h.sandbox
        .decide_with_remark(&instance, Decision::Refuse, "budget exceeded")
        .unwrap();
    let outcome = outcome_when(&h, id, |o| o.outcome == "refuse" && o.records.is_some()).await;
    assert_eq!(outcome.learned_from.as_deref(), Some("stream"));
    assert!(outcome.decided_at.is_some());
    assert_eq!(outcome.next_check_at, None, "nothing more to read");
    let records: serde_json::Value =
        serde_json::from_str(outcome.records.as_deref().unwrap()).unwrap();
    let refusal = records["operation_records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["result"] == "REFUSE")
        .expect("the refusal is among the records");
    assert_eq!(refusal["remark"], "budget exceeded");

    let acked = h
        .sandbox
        .wait_for(WAIT, |s| {
            s.stream_events()
                .iter()
                .any(|e| e.instance_id() == instance && e.kind() == "finish" && e.acked)
        })
        .await;
    assert!(acked, "the finish event is acked SUCCESS");
    // Only reads for the records: the decision itself came from the Stream.
    let reads = h.received(Endpoint::GetInstance).len();
    assert_eq!(reads, 1, "one read, for the approvers' records");

    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.got().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never notified");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.got();
    assert_eq!(got.len(), 1, "one notification");
    let (headers, body) = &got[0];
    assert!(signed_by(headers, body, SECRET), "the signature verifies");
    assert!(!signed_by(headers, body, "another secret"));
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["job_id"], id);
    assert_eq!(event["instance_id"], instance.as_str());
    assert_eq!(event["outcome"], "refuse");
    let delivery = &h.queue.deliveries(id).await.unwrap()[0];
    assert_eq!(delivery.status, "delivered");
    assert_eq!(
        headers["x-approval-worker-delivery"].to_str().unwrap(),
        delivery.delivery_id
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_twice_records_one_outcome_and_one_notification() {
    let mut h = Harness::new().await;
    let (receiver, url) = Receiver::start(&[]).await;
    h.config.outcome.webhook_url = Some(url);
    h.config.outcome.fetch_records = false;
    h.config.outcome.stream = true;
    start_worker(&mut h);
    let (id, instance) = submitted(&h, "twice.pdf").await;
    assert!(
        h.sandbox
            .wait_for(WAIT, |s| s.stream_stats().open_connections == 1)
            .await
    );
    h.sandbox.stream_duplicate_next_event();
    h.sandbox.decide(&instance, Decision::Agree).unwrap();
    let both_acked = h
        .sandbox
        .wait_for(WAIT, |s| {
            let finishes: Vec<_> = s
                .stream_events()
                .into_iter()
                .filter(|e| e.instance_id() == instance && e.kind() == "finish")
                .collect();
            let deliveries: usize = finishes.iter().map(|e| e.deliveries.len()).sum();
            deliveries >= 2
                && finishes
                    .iter()
                    .flat_map(|e| &e.deliveries)
                    .all(|d| d.status == AckStatus::Success)
        })
        .await;
    assert!(both_acked, "{:?}", h.sandbox.stream_events());
    let outcome = outcome_when(&h, id, |o| o.outcome == "agree").await;
    assert_eq!(outcome.learned_from.as_deref(), Some("stream"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.got().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never notified");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(h.queue.deliveries(id).await.unwrap().len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stream_off_reads_find_the_decision_paced_and_counted() {
    let mut h = Harness::new().await;
    h.config.outcome.stream = false;
    h.config.outcome.poll_first_secs = 1;
    start_worker(&mut h);
    let (id, instance) = submitted(&h, "poll.pdf").await;
    // Undecided at the first read.
    let pending = outcome_when(&h, id, |o| o.checks >= 1 && o.next_check_at.is_some()).await;
    assert_eq!(pending.outcome, "pending");
    h.sandbox.decide(&instance, Decision::Terminate).unwrap();
    let outcome = outcome_when(&h, id, |o| o.outcome == "terminated").await;
    assert_eq!(outcome.learned_from.as_deref(), Some("poll"));
    assert!(outcome.records.is_some(), "a read brings the records along");
    assert_eq!(h.received(Endpoint::OpenConnection).len(), 0, "no Stream");
    let reads = h.received(Endpoint::GetInstance).len() as i64;
    assert_eq!(reads, outcome.checks, "every read is one call");
    h.stop().await;
    let month = approval_worker::queue::quota_month(approval_worker::queue::now_ms());
    let calls = h.queue.monthly_calls(&month).await.unwrap();
    let counted: i64 = calls
        .iter()
        .filter(|c| c.endpoint == "workflow/processInstances/get")
        .map(|c| c.calls)
        .sum();
    assert_eq!(counted, reads, "reads count against the monthly quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_the_stream_missed_is_found_by_reading() {
    let mut options = SandboxOptions::default();
    options.stream.publish_events = false;
    let mut h = Harness::with_sandbox(options).await;
    h.config.outcome.poll_first_secs = 1;
    h.config.outcome.stream = true;
    start_worker(&mut h);
    let (id, instance) = submitted(&h, "missed.pdf").await;
    h.sandbox.decide(&instance, Decision::Agree).unwrap();
    let outcome = outcome_when(&h, id, |o| o.outcome == "agree").await;
    assert_eq!(outcome.learned_from.as_deref(), Some("poll"));
    assert!(
        !h.received(Endpoint::OpenConnection).is_empty(),
        "the Stream was on"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_refused_is_sent_again_until_accepted_and_a_failed_job_gets_no_outcome() {
    let mut h = Harness::new().await;
    let (receiver, url) = Receiver::start(&[500, 503]).await;
    h.config.outcome.webhook_url = Some(url);
    h.config.outcome.webhook_retry_first_secs = 1;
    h.config.outcome.fetch_records = false;
    h.config.outcome.stream = true;
    start_worker(&mut h);
    let (id, instance) = submitted(&h, "retry.pdf").await;
    assert!(
        h.sandbox
            .wait_for(WAIT, |s| s.stream_stats().open_connections == 1)
            .await
    );
    h.sandbox.decide(&instance, Decision::Agree).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = h.queue.deliveries(id).await.unwrap();
        if rows.first().is_some_and(|d| d.status == "delivered") {
            assert_eq!(rows[0].attempts, 3);
            assert_eq!(rows[0].last_status, Some(200));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.got();
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got
        .iter()
        .map(|(h, _)| h["x-approval-worker-delivery"].to_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|d| *d == ids[0]),
        "one delivery id across sends"
    );

    // A job that never reaches its create is never followed.
    let mut bad = h.payload(&[&h.file("bad.pdf", b"x")]);
    bad["attachment_field"] = "不存在的字段".into();
    let failed = h.enqueue(&bad).await;
    assert_eq!(h.finished(failed).await.status, "failed");
    assert!(h.queue.outcome(failed).await.unwrap().is_none());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_announced_before_the_create_is_committed_is_still_learned_from_the_stream() {
    // An approval decided at once is announced while the worker's write of the create is
    // still on its way. Here that write is held back by a lock on the job's row (so the
    // store must be PostgreSQL), the announcement matches no outcome row yet, and the first
    // read of the instance is a minute away.
    let options = SandboxOptions {
        auto_decide_after: Some(Duration::ZERO),
        ..SandboxOptions::default()
    };
    let Some(mut h) = Harness::on_postgres_with(options).await else {
        return;
    };
    h.config.outcome.stream = true;
    h.config.outcome.fetch_records = false;
    h.sandbox.inject(
        Endpoint::CreateInstance,
        approval_worker::sandbox::Fault::Latency(Duration::from_millis(500)),
        1,
    );
    start_worker(&mut h);
    assert!(
        h.sandbox
            .wait_for(WAIT, |s| s.stream_stats().open_connections == 1)
            .await
    );
    let file = h.file("instant.pdf", &bytes(3_000, 7));
    let id = h.enqueue(&h.payload(&[&file])).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.queue.get(id).await.unwrap().step != "submit" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached submit"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let url = h.config.database.url.clone().unwrap();
    let mut lock = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut lock)
        .await
        .unwrap();
    let acked = h
        .sandbox
        .wait_for(WAIT, |s| {
            s.stream_events()
                .iter()
                .any(|e| e.kind() == "finish" && e.acked)
        })
        .await;
    assert!(acked, "the decision was announced and acked meanwhile");
    assert_eq!(h.queue.get(id).await.unwrap().status, "running");
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    let outcome = outcome_when(&h, id, |o| o.outcome != "pending").await;
    assert_eq!(outcome.outcome, "agree");
    assert_eq!(outcome.learned_from.as_deref(), Some("stream"));
    assert!(
        h.received(Endpoint::GetInstance).is_empty(),
        "no read needed"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_sending_a_notification_sends_it_again_after_restart() {
    let h = Harness::new().await;
    // The first send never gets an answer; the daemon is killed while it waits.
    let (receiver, url) = Receiver::start(&[0]).await;
    let config = h.config_file(
        "worker.toml",
        &format!(
            "[outcome]\nstream = true\nfetch_records = false\nwebhook_url = {url:?}\n\
             webhook_timeout_secs = 2\n"
        ),
    );
    let env = [("APPROVAL_WORKER_WEBHOOK_SECRET", SECRET)];
    let mut daemon = h.spawn_run(&config, &env);
    daemon.wait_for_log("worker started");
    let file = h.file("killed.pdf", &bytes(3_000, 7));
    let id = h.enqueue(&h.payload(&[&file])).await;
    let job = h.finished(id).await;
    assert_eq!(job.status, "succeeded");
    let instance = h.queue.outcome(id).await.unwrap().unwrap().instance_id;
    assert!(
        h.sandbox
            .wait_for(WAIT, |s| s.stream_stats().open_connections == 1)
            .await
    );
    h.sandbox.decide(&instance, Decision::Agree).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.got().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.signal("KILL");
    daemon.wait_exit(Duration::from_secs(5));

    let mut restarted = h.spawn_run(&config, &env);
    restarted.wait_for_log("worker started");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = h.queue.deliveries(id).await.unwrap();
        if rows[0].status == "delivered" {
            assert_eq!(rows.len(), 1, "one notification");
            assert_eq!(rows[0].attempts, 2, "sent again once");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.got();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].0["x-approval-worker-delivery"], got[1].0["x-approval-worker-delivery"],
        "the same delivery id, for the receiver to dedupe"
    );
    assert!(signed_by(&got[1].0, &got[1].1, SECRET));
    let outcome = h.queue.outcome(id).await.unwrap().unwrap();
    assert_eq!(outcome.outcome, "agree");
    restarted.signal("TERM");
    assert_eq!(restarted.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_dropped_around_an_event_reconnects_and_records_the_outcome_once() {
    let mut h = Harness::new().await;
    let (receiver, url) = Receiver::start(&[]).await;
    h.config.outcome.webhook_url = Some(url);
    h.config.outcome.fetch_records = false;
    h.config.outcome.stream = true;
    start_worker(&mut h);
    let (id, instance) = submitted(&h, "dropped.pdf").await;
    assert!(
        h.sandbox
            .wait_for(WAIT, |s| s.stream_stats().open_connections == 1)
            .await
    );
    h.sandbox.stream_duplicate_next_event();
    h.sandbox.decide(&instance, Decision::Refuse).unwrap();
    h.sandbox.stream_drop_connections();
    let outcome = outcome_when(&h, id, |o| o.outcome != "pending").await;
    assert_eq!(outcome.outcome, "refuse");
    assert_eq!(outcome.learned_from.as_deref(), Some("stream"));
    let reconnected = h
        .sandbox
        .wait_for(WAIT, |s| {
            let stats = s.stream_stats();
            stats.connections_accepted >= 2 && stats.open_connections == 1
        })
        .await;
    assert!(reconnected, "{:?}", h.sandbox.stream_stats());
    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.got().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never notified");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(h.queue.deliveries(id).await.unwrap().len(), 1);
    h.stop().await;
}
