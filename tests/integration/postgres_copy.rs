//! Moving a SQLite queue to PostgreSQL with `copy-to`: jobs caught in every state (finished,
//! waiting to retry, released at the submit step with a create intent, never started) are
//! copied with their ids and history, the workers then run on PostgreSQL, and every job ends
//! with exactly one approval instance.

use std::time::{Duration, Instant};

use approval_worker::queue::outcome::{Decision, DecisionFollowUp, LearnedFrom, Verdict};
use approval_worker::sandbox::{Endpoint, Fault};

use crate::helpers::cluster::Database;
use crate::helpers::{BINARY_WORKER, Harness, audit, bytes, sigterm, wait_exit};

/// `copy-to URL` through the binary, with the harness's (SQLite) config; (exit code, stdout,
/// stderr).
fn copy_to(h: &Harness, url: &str) -> (i32, String, String) {
    let config = h.config_file("sqlite.toml", "");
    let output = h
        .command()
        .arg("--config")
        .arg(&config)
        .args(["copy-to", url])
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_queue_copied_mid_flight_finishes_on_postgres_with_one_approval_per_job() {
    let Some(database) = Database::create() else {
        return;
    };
    let mut h = Harness::new().await;
    for n in 0..16_u8 {
        let a = h.file(&format!("copy{n}-a.pdf"), &bytes(20_000, n));
        let b = h.file(&format!("copy{n}-b.txt"), &bytes(500, n));
        h.enqueue(&h.payload(&[&a, &b])).await;
    }
    // Creates that take 3 s keep jobs at the submit step, with their intent stored, when the
    // worker stops; failing commits send others into backoff.
    h.sandbox.inject(
        Endpoint::CreateInstance,
        Fault::Latency(Duration::from_secs(3)),
        3,
    );
    h.sandbox
        .inject(Endpoint::Commit, Fault::ServerError(503), 4);
    // The daemon's grace after SIGTERM is 1 s: jobs waiting on a create are then put back at
    // the submit step with its intent, while their creates still land on the sandbox.
    let sqlite_config = h.binary_config("sqlite-worker", BINARY_WORKER);
    let sqlite_log = h.spool.with_file_name("sqlite.log");
    let mut sqlite_daemon = h.spawn_binary(&sqlite_config, &sqlite_log, "warn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.sandbox.instances().len() < 6 {
        assert!(Instant::now() < deadline, "jobs never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _, stderr) = copy_to(&h, &database.url);
    assert_eq!(code, 2, "refused while the worker holds leases: {stderr}");
    assert!(stderr.contains("running under a live lease"), "{stderr}");
    sigterm(&sqlite_daemon);
    assert!(
        wait_exit(&mut sqlite_daemon, Duration::from_secs(10))
            .await
            .success()
    );
    // One more job that never started.
    let late = h.file("late.pdf", &bytes(1_000, 99));
    let late_id = h.enqueue(&h.payload(&[&late])).await;

    let before = h.all_jobs().await;
    let states: Vec<(&str, &str)> = before
        .iter()
        .map(|job| (job.status.as_str(), job.step.as_str()))
        .collect();
    eprintln!("copied states: {states:?}");
    assert!(states.iter().any(|s| s.0 == "succeeded"), "{states:?}");
    assert!(states.contains(&("queued", "submit")), "{states:?}");
    assert!(
        states.iter().any(|s| s.0 == "queued" && s.1 != "submit"),
        "{states:?}"
    );
    // One followed approval decided, its notification waiting in the outbox.
    let decided = before.iter().find(|job| job.status == "succeeded").unwrap();
    let instance = h
        .queue
        .outcome(decided.id)
        .await
        .unwrap()
        .unwrap()
        .instance_id;
    let recorded = h
        .queue
        .record_decisions(
            &[Decision {
                instance_id: instance,
                verdict: Verdict::Refuse,
                decided_at_ms: Some(1_700_000_000_000),
                learned_from: LearnedFrom::Poll,
                records: Some(r#"{"tasks":[]}"#.to_owned()),
            }],
            &DecisionFollowUp {
                default_url: Some("http://127.0.0.1:9/hook".to_owned()),
                fetch_records: false,
            },
            approval_worker::queue::now_ms(),
        )
        .await
        .unwrap();
    assert!(recorded[0].is_some());
    let (code, stdout, stderr) = copy_to(&h, &database.url);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 notifications"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} jobs", before.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("numbered after {late_id}")),
        "{stdout}"
    );
    let (code, _, stderr) = copy_to(&h, &database.url);
    assert_eq!(code, 2, "a second copy is refused: {stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");

    let pg = database.queue().await;
    for job in &before {
        let copied = pg.get(job.id).await.unwrap();
        assert_eq!(
            (
                &copied.status,
                &copied.step,
                copied.attempt,
                copied.uncharged_attempts
            ),
            (&job.status, &job.step, job.attempt, job.uncharged_attempts),
            "job {}",
            job.id
        );
        let checkpoint = |text: &Option<String>| {
            text.as_deref()
                .map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap())
        };
        assert_eq!(checkpoint(&copied.checkpoint), checkpoint(&job.checkpoint));
        let kinds = |events: Vec<approval_worker::queue::EventRow>| -> Vec<String> {
            events.into_iter().map(|e| e.kind).collect()
        };
        assert_eq!(
            kinds(pg.events(job.id).await.unwrap()),
            kinds(h.queue.events(job.id).await.unwrap())
        );
        let outcome = |row: Option<approval_worker::queue::OutcomeRow>| {
            row.map(|o| {
                (
                    o.instance_id,
                    o.outcome,
                    o.decided_at,
                    o.next_check_at,
                    o.checks,
                )
            })
        };
        assert_eq!(
            outcome(pg.outcome(job.id).await.unwrap()),
            outcome(h.queue.outcome(job.id).await.unwrap()),
            "job {}",
            job.id
        );
        let deliveries = |rows: Vec<approval_worker::queue::DeliveryRow>| -> Vec<(String, String)> {
            rows.into_iter()
                .map(|d| (d.delivery_id, d.status))
                .collect()
        };
        assert_eq!(
            deliveries(pg.deliveries(job.id).await.unwrap()),
            deliveries(h.queue.deliveries(job.id).await.unwrap())
        );
    }
    assert_eq!(pg.deliveries(decided.id).await.unwrap().len(), 1);
    let next = pg
        .enqueue(
            &approval_worker::queue::NewJob {
                payload: h.payload(&[&late]).to_string(),
                ..Default::default()
            },
            approval_worker::queue::now_ms(),
        )
        .await
        .unwrap();
    assert!(next.id > late_id, "new ids continue after the copied ones");

    // The workers move to PostgreSQL.
    h.config.database.url = Some(database.url.clone());
    let config = h.binary_config("pg", BINARY_WORKER);
    let log = h.spool.with_file_name("pg.log");
    let mut daemon = h.spawn_binary(&config, &log, "warn");
    h.queue = pg;
    let jobs = h.all_finished(Duration::from_secs(60)).await;
    sigterm(&daemon);
    assert!(
        wait_exit(&mut daemon, Duration::from_secs(10))
            .await
            .success()
    );
    assert_eq!(jobs.len(), before.len() + 1);
    assert!(
        jobs.iter().all(|job| job.status == "succeeded"),
        "{:?}",
        jobs.iter().map(|j| (j.id, &j.status)).collect::<Vec<_>>()
    );
    assert_eq!(
        audit(&h.sandbox.instances(), &jobs),
        (0, 0),
        "(duplicates, lost)"
    );
}
