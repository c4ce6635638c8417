//! The dashboard as operators use it: in headless Chromium against a worker and the sandbox
//! (`in_browser`), and served by the binary (`served`: the `dashboard` command, `run`, and
//! the refusal of a listener other hosts reach). Each browser scenario runs once per store.

use std::net::SocketAddr;

use approval_worker::dashboard::{Dashboard, DashboardSettings, serve};
use approval_worker::queue::outcome::{Decision, DecisionFollowUp, LearnedFrom, Verdict};
use approval_worker::queue::{Failure, Follow, NewJob, Queue, Unstored};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::Harness;

/// Runs each named scenario `fn name(harness: Harness, store: &str)` once per store: on
/// SQLite, and on PostgreSQL where the harness has it.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Harness::new().await, "sqlite").await;
                }
            )*
        }

        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(harness) = crate::helpers::Harness::on_postgres().await else {
                        return;
                    };
                    super::$name(harness, "postgres").await;
                }
            )*
        }
    };
}

// After the macro, so that they can use it.
mod in_browser;
mod served;

/// Serves the dashboard over the harness's queue on a free port of 127.0.0.1; returns its
/// address and what stops it.
async fn serve_dashboard(h: &Harness) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let settings = DashboardSettings::from_config(&h.config, addr).expect("dashboard settings");
    let stop = CancellationToken::new();
    tokio::spawn(serve(
        Dashboard::new(h.queue.clone(), settings),
        listener,
        stop.clone(),
    ));
    (format!("http://{addr}"), stop)
}

/// A day of history before `now`: jobs in two queues finished hour by hour, most approved,
/// some refused, one in twelve failed; and a few in `invoices` waiting for a retry in half
/// an hour. The overview then has something to show.
async fn seed_history(queue: &Queue, now: i64) {
    const HOUR: i64 = 3_600_000;
    for n in 0..3 {
        let job = NewJob {
            payload: json!({"process_code": "PROC-SEED", "waiting": n}).to_string(),
            queue: Some("invoices".to_owned()),
            run_at: Some(now + HOUR / 2),
            ..NewJob::default()
        };
        queue.enqueue(&job, now - HOUR).await.unwrap();
    }
    for n in 0..150_i64 {
        let at = now - 23 * HOUR + n * (23 * HOUR / 150) - (n * 7_919 % 1_800_000);
        let name = if n % 3 == 0 { "invoices" } else { "default" };
        let job = NewJob {
            payload: json!({"process_code": "PROC-SEED", "n": n}).to_string(),
            idempotency_key: Some(format!("seed-{n}")),
            queue: Some(name.to_owned()),
            ..NewJob::default()
        };
        queue.enqueue(&job, at).await.unwrap();
        let claim = queue
            .claim(name, "seed", 1, 60_000, at)
            .await
            .unwrap()
            .remove(0);
        let done = at + 1_500 + n * 37 % 4_000;
        if n % 12 == 5 {
            let failure = Failure {
                step: "submit".to_owned(),
                message: "DingTalk answered 400 invalidParameter: 表单字段缺失 (requestid 7C0D)"
                    .to_owned(),
                http_status: Some(400),
                duration_ms: 180,
            };
            queue
                .fail(claim.fence(), &Unstored::default(), &failure, done)
                .await
                .unwrap();
            continue;
        }
        let instance = format!("seed-instance-{n}");
        let follow = Follow {
            instance_id: instance.clone(),
            callback_url: None,
            // Those left pending are not read during the test.
            first_check_at: now + 24 * HOUR,
        };
        let result = json!({"instance_id": instance, "files": []}).to_string();
        queue
            .succeed(
                claim.fence(),
                &Unstored::default(),
                &result,
                "done",
                "{}",
                Some(follow),
                done,
            )
            .await
            .unwrap();
        if n % 10 != 0 {
            let decision = Decision {
                instance_id: instance,
                verdict: if n % 9 == 0 {
                    Verdict::Refuse
                } else {
                    Verdict::Agree
                },
                decided_at_ms: Some(done + 600_000),
                learned_from: LearnedFrom::Stream,
                records: None,
            };
            let follow_up = DecisionFollowUp {
                default_url: None,
                fetch_records: false,
            };
            queue
                .record_decisions(&[decision], &follow_up, done + 600_000)
                .await
                .unwrap();
        }
    }
}
