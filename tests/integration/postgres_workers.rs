//! Several `run` processes on one PostgreSQL database, as on several hosts: producers insert
//! with `psql` while the daemons run, the daemons are killed with SIGKILL at random moments
//! and restarted, the sandbox injects faults, and at the end every job has succeeded with
//! exactly one approval instance and no attempt was claimed twice.

use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::summary;
use crate::helpers::{BINARY_WORKER, Harness, audit, bytes, sigterm, wait_exit, wait_for_line};
use crate::kill::{enqueue_random, random_fault};
use crate::processes::assert_no_double_claim;

/// Daemons sharing the database.
const DAEMONS: usize = 3;
/// Kills in the default (CI) mode; `APPROVAL_WORKER_KILL_ROUNDS` sets another number.
const CI_KILLS: u32 = 30;
/// Jobs enqueued through the queue API before and during the kills.
const API_JOBS: u32 = 60;
/// Rows `psql` inserts while the daemons run.
const SQL_ROWS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_killed_at_random_on_one_database_lose_no_job_and_duplicate_no_approval() {
    let Some(h) = Harness::on_postgres().await else {
        return;
    };
    let kills: u32 = std::env::var("APPROVAL_WORKER_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_KILLS);
    let seed: u64 = rand::random();
    eprintln!("postgres kill test: {kills} kills of {DAEMONS} daemons, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let config = h.binary_config("worker", BINARY_WORKER);
    let url = h.config.database.url.clone().unwrap();
    // A log per daemon started, at warn level but for the line saying it is ready, which
    // the final SIGTERM waits for (one sent before the handler exists would kill it).
    let log_of = |slot: usize, generation: u32| {
        h.spool
            .with_file_name(format!("daemon-{slot}-{generation}.log"))
    };
    const LOG_LEVEL: &str = "warn,approval_worker::worker::pool=info";
    let mut generations = [0_u32; DAEMONS];

    let mut enqueued = 0;
    for _ in 0..API_JOBS / 2 {
        enqueue_random(&h, &mut rng, enqueued).await;
        enqueued += 1;
    }
    // A producer on "another host": plain SQL through psql, one row per statement.
    let rows: Vec<String> = (0..SQL_ROWS)
        .map(|n| {
            let file = h.file(&format!("psql-{n}.pdf"), &bytes(3_000 + n * 10, n as u8));
            let payload = h.payload(&[&file]).to_string().replace('\'', "''");
            format!(
                "INSERT INTO jobs (payload, priority) VALUES ('{payload}', {});",
                n % 3
            )
        })
        .collect();
    let producer = std::thread::spawn({
        let url = url.clone();
        move || {
            for row in rows {
                let output = Command::new("psql")
                    .arg(&url)
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &row])
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                std::thread::sleep(Duration::from_millis(30));
            }
        }
    });

    let mut daemons: Vec<_> = (0..DAEMONS)
        .map(|slot| h.spawn_binary(&config, &log_of(slot, 0), LOG_LEVEL))
        .collect();
    let started = Instant::now();
    for round in 0..kills {
        if round % 2 == 0 && enqueued < API_JOBS {
            enqueue_random(&h, &mut rng, enqueued).await;
            enqueued += 1;
        }
        if rng.random_bool(0.3) {
            let (endpoint, fault) = random_fault(&mut rng);
            h.sandbox.inject(endpoint, fault, 1);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        let victim = rng.random_range(0..DAEMONS);
        daemons[victim].kill().expect("SIGKILL");
        daemons[victim].wait().expect("reaped");
        generations[victim] += 1;
        daemons[victim] = h.spawn_binary(&config, &log_of(victim, generations[victim]), LOG_LEVEL);
    }
    while enqueued < API_JOBS {
        enqueue_random(&h, &mut rng, enqueued).await;
        enqueued += 1;
    }
    producer.join().expect("the psql producer");

    let jobs = h.all_finished(Duration::from_secs(120)).await;
    for (slot, generation) in generations.iter().enumerate() {
        wait_for_line(&log_of(slot, *generation), "worker started").await;
    }
    for daemon in &mut daemons {
        sigterm(daemon);
    }
    for daemon in &mut daemons {
        assert!(wait_exit(daemon, Duration::from_secs(10)).await.success());
    }
    assert_eq!(jobs.len(), API_JOBS as usize + SQL_ROWS);
    for job in &jobs {
        let events = h.queue.events(job.id).await.unwrap();
        assert_eq!(job.status, "succeeded", "{job:?}\n{}", summary(&events));
        assert_no_double_claim(job, &events);
    }
    assert_eq!(
        audit(&h.sandbox.instances(), &jobs),
        (0, 0),
        "(duplicates, lost)"
    );
    eprintln!(
        "postgres kill test: {} jobs, {kills} kills in {:.1} s, all succeeded once",
        jobs.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_rides_out_a_postgres_restart_and_leaves_no_job_running() {
    // A cluster of its own: the restart cuts every connection to the server.
    let Some(cluster) = crate::helpers::cluster::Cluster::start() else {
        return;
    };
    let h = Harness::on_postgres_in(&cluster, Default::default()).await;
    let config = h.binary_config("worker", BINARY_WORKER);
    let log = h.spool.with_file_name("restart.log");
    let mut rng = StdRng::seed_from_u64(7);
    for n in 0..40 {
        enqueue_random(&h, &mut rng, n).await;
    }
    // Slow creates keep jobs in flight when the server goes away.
    h.sandbox.inject(
        approval_worker::sandbox::Endpoint::CreateInstance,
        approval_worker::sandbox::Fault::Latency(Duration::from_millis(300)),
        10,
    );
    let mut daemon = h.spawn_binary(&config, &log, "warn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.sandbox.instances().len() < 5 {
        assert!(
            Instant::now() < deadline,
            "no job finished before the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.restart();
    let jobs = h.all_finished(Duration::from_secs(90)).await;
    sigterm(&daemon);
    assert!(
        wait_exit(&mut daemon, Duration::from_secs(10))
            .await
            .success()
    );
    assert_eq!(jobs.len(), 40);
    for job in &jobs {
        let events = h.queue.events(job.id).await.unwrap();
        assert_eq!(job.status, "succeeded", "{job:?}\n{}", summary(&events));
    }
    assert_eq!(
        audit(&h.sandbox.instances(), &jobs),
        (0, 0),
        "(duplicates, lost)"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("lost the database connection listening for new jobs")
            || text.contains("listening for new jobs failed"),
        "the listener saw the restart: {text}"
    );
}

/// A measurement of pacing, which a machine busy with other tests distorts (late timers send
/// calls late or waste their slots), so `cargo test` leaves it out and `.ci/run` runs it on its
/// own after the suite: `cargo test --test integration -- --ignored shared_rate_limit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the machine to itself; .ci/run runs it alone"]
async fn three_daemons_of_64_runners_keep_to_the_shared_rate_limit() {
    const LIMIT: u32 = 20;
    const JOBS: usize = 240;
    let sandbox = approval_worker::sandbox::SandboxOptions {
        qps_limit: Some(LIMIT),
        ..Default::default()
    };
    let Some(h) = Harness::on_postgres_with(sandbox).await else {
        return;
    };
    let config = h.config_file(
        "paced.toml",
        &format!(
            "[dingtalk]\nconnect_timeout_secs = 1\nrequest_timeout_secs = 2\n\
             rate_limit_per_sec = {LIMIT}\n{}",
            BINARY_WORKER.replace("concurrency = 8", "concurrency = 64")
        ),
    );
    let file = h.file("paced.pdf", &bytes(2_000, 1));
    let payload = h.payload(&[&file]);
    let jobs: Vec<approval_worker::queue::NewJob> = (0..JOBS)
        .map(|_| approval_worker::queue::NewJob {
            payload: payload.to_string(),
            ..Default::default()
        })
        .collect();
    h.queue
        .enqueue_many(&jobs, approval_worker::queue::now_ms())
        .await
        .unwrap();
    let logs: Vec<_> = (0..DAEMONS)
        .map(|n| h.spool.with_file_name(format!("paced-{n}.log")))
        .collect();
    let mut daemons: Vec<_> = logs
        .iter()
        .map(|log| h.spawn_binary(&config, log, "warn"))
        .collect();
    let jobs = h.all_finished(Duration::from_secs(120)).await;
    for daemon in &mut daemons {
        sigterm(daemon);
    }
    for daemon in &mut daemons {
        assert!(wait_exit(daemon, Duration::from_secs(10)).await.success());
    }
    assert!(jobs.iter().all(|job| job.status == "succeeded"));
    let throttled: Vec<String> = h
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| r.endpoint.to_string())
        .collect();
    let warnings: String = logs
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    assert!(throttled.is_empty(), "throttled: {throttled:?}\n{warnings}");
    // One create per job: the rate of creates, from the first to the last, is the rate of
    // the binding API.
    let mut created: Vec<i64> = Vec::new();
    for job in &jobs {
        let events = h.queue.events(job.id).await.unwrap();
        created.extend(
            events
                .iter()
                .filter(|e| e.kind == "succeeded")
                .map(|e| e.at),
        );
    }
    created.sort_unstable();
    let span_s = (created[created.len() - 1] - created[0]) as f64 / 1000.0;
    let rate = (created.len() - 1) as f64 / span_s;
    eprintln!(
        "shared rate limit: {} creates in {span_s:.2} s = {rate:.2}/s (limit {LIMIT}/s)",
        created.len()
    );
    assert!(
        rate <= f64::from(LIMIT) * 1.05,
        "{rate:.2}/s is over the limit"
    );
    assert!(
        rate >= f64::from(LIMIT) * 0.9,
        "{rate:.2}/s leaves the limit unused"
    );
}

#[tokio::test]
async fn rows_a_producer_inserts_with_psql_that_are_no_valid_job_fail_alone_with_a_reason() {
    let Some(mut h) = Harness::on_postgres().await else {
        return;
    };
    let url = h.config.database.url.clone().unwrap();
    let good = h.file("good.pdf", &bytes(300, 1));
    let good = h.payload(&[&good]).to_string().replace('\'', "''");
    let rows = [
        ("an array", "[1, 2]", "invalid type"),
        ("an empty object", "{}", "missing field `process_code`"),
        ("a string", "\"approve me\"", "invalid type"),
        (
            "an unknown field",
            r#"{"process_code":"PROC-1","originator_user_id":"u","colour":"red"}"#,
            "unknown field `colour`",
        ),
    ];
    let mut sql = String::new();
    for (_, payload, _) in &rows {
        sql.push_str(&format!("INSERT INTO jobs (payload) VALUES ('{payload}');"));
    }
    sql.push_str(&format!("INSERT INTO jobs (payload) VALUES ('{good}');"));
    h.start();
    let output = Command::new("psql")
        .arg(&url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (id, (what, _, reason)) in (1..).zip(&rows) {
        let job = h.finished(id).await;
        assert_eq!(job.status, "failed", "{what}: {job:?}");
        let error = job.last_error.unwrap_or_default();
        assert!(error.contains(reason), "{what}: {error}");
        assert_eq!(job.attempt, 1, "{what}: failed at once, not retried");
    }
    let good = h.finished(5).await;
    assert_eq!(good.status, "succeeded", "{good:?}");
    h.stop().await;
}
