//! The real binary under load, with faults on, killed with SIGKILL at random moments and
//! restarted each time: at the end every job has succeeded with exactly one approval
//! instance, none is lost and none is stuck. Also the graceful stop on SIGTERM.
//!
//! `APPROVAL_WORKER_KILL_ROUNDS=300 cargo test --release --test integration kill::` runs the
//! long mode; `APPROVAL_WORKER_KILL_SEED` replays one run's random choices.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use approval_worker::sandbox::{Endpoint, Fault};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::summary;
use crate::helpers::{BINARY_WORKER, Harness, audit, bytes, sigterm, wait_exit, wait_for_line};

/// Kills in the default (CI) mode.
const CI_KILLS: u32 = 30;
/// At least this many jobs, spread over the rounds so every kill lands on work in flight.
const MIN_JOBS: u32 = 100;
/// Environment variable choosing the number of kills (the long mode).
const ROUNDS_ENV: &str = "APPROVAL_WORKER_KILL_ROUNDS";
/// Environment variable fixing the random seed.
const SEED_ENV: &str = "APPROVAL_WORKER_KILL_SEED";
/// How long a worker runs before it is killed: long enough to start and claim, short
/// enough that it dies in the middle of steps.
const LIFETIME_MS: std::ops::Range<u64> = 150..1200;
/// After the last kill, how long the survivors may take (leases of killed workers expire
/// after 5 s; an ambiguous create settles after 4 s).
const FINAL_TIMEOUT: Duration = Duration::from_secs(90);

/// A fault the kill test may inject; the throttle page is left out because its five-minute
/// ban would only make the test wait (its handling is covered in `faults`).
pub fn random_fault(rng: &mut StdRng) -> (Endpoint, Fault) {
    let endpoints = Endpoint::all();
    let endpoint = endpoints[rng.random_range(0..endpoints.len())];
    let fault = match rng.random_range(0..8) {
        0 => Fault::ServerError([500, 502, 503][rng.random_range(0..3)]),
        1 => Fault::Throttle {
            pascal_case: rng.random(),
        },
        // A token endpoint answering "invalid credential" means a wrong secret, which
        // fails jobs for good: not a transient fault.
        2 if endpoint != Endpoint::Token => Fault::TokenRevoked,
        3 => Fault::DropConnection,
        4 | 5 => Fault::LoseResponse,
        _ => Fault::Latency(Duration::from_millis(rng.random_range(100..2600))),
    };
    (endpoint, fault)
}

pub fn kind(fault: &Fault) -> String {
    let text = fault.to_string();
    text.split('(').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_job_and_duplicates_no_approval() {
    let kills: u32 = std::env::var(ROUNDS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_KILLS);
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill test: {kills} kills, seed {seed} ({SEED_ENV} to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let h = Harness::new().await;
    let config = h.binary_config("worker", BINARY_WORKER);
    let log = h.spool.with_file_name("worker.log");
    let per_round = MIN_JOBS.div_ceil(kills).max(1);
    let mut faults: BTreeMap<String, u32> = BTreeMap::new();
    let mut jobs = 0_u32;
    let started = Instant::now();

    for round in 0..kills {
        for _ in 0..per_round {
            enqueue_random(&h, &mut rng, jobs).await;
            jobs += 1;
        }
        let mut round_faults: Vec<(Endpoint, Fault)> = (0..rng.random_range(0..=2))
            .map(|_| random_fault(&mut rng))
            .collect();
        if rng.random_bool(0.5) {
            // A slow create makes kills land between sending it and recording its answer,
            // the moment that must never turn into a second approval.
            let delay = Duration::from_millis(rng.random_range(200..1000));
            round_faults.push((Endpoint::CreateInstance, Fault::Latency(delay)));
        }
        for (endpoint, fault) in round_faults {
            *faults.entry(kind(&fault)).or_default() += 1;
            h.sandbox.inject(endpoint, fault, 1);
        }
        let mut child = h.spawn_binary(&config, &log, "warn");
        tokio::time::sleep(Duration::from_millis(rng.random_range(LIFETIME_MS))).await;
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reaped");
        assert!(
            !status.success(),
            "round {round}: the worker exited before the kill"
        );
    }

    // At info level the final worker logs "worker started" (earlier rounds log only
    // warnings), so the SIGTERM below cannot land before its signal handler exists.
    let mut child = h.spawn_binary(&config, &log, "info");
    let finished = h.all_finished(FINAL_TIMEOUT).await;
    wait_for_line(&log, "worker started").await;
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "final worker exit: {status}");

    let instances = h.sandbox.instances();
    let (duplicates, lost) = audit(&instances, &finished);
    let (mut rescued, mut reconciled, mut adopted) = (0, 0, 0);
    for job in &finished {
        let events = h.queue.events(job.id).await.unwrap();
        let job_rescues = events.iter().filter(|e| e.kind == "rescued").count();
        rescued += job_rescues;
        assert!(
            job.uncharged_attempts >= job_rescues as i64,
            "a killed worker's attempt was charged: {job:?}"
        );
        reconciled += events
            .iter()
            .filter(|e| e.step.as_deref() == Some("reconcile"))
            .count();
        adopted += usize::from(
            job.checkpoint
                .as_deref()
                .unwrap_or("")
                .contains("\"adopted\":true"),
        );
        assert_eq!(job.status, "succeeded", "{job:?}\n{}", summary(&events));
    }
    let injected: u32 = faults.values().sum();
    eprintln!(
        "kill test: {kills} kills survived, {} jobs, {} instances, {injected} faults injected {faults:?}, \
         {rescued} rescues, {reconciled} reconciliations ({adopted} adopted), {duplicates} duplicates, {lost} lost, {:.1} s, seed {seed}",
        finished.len(),
        instances.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(finished.len(), jobs as usize);
    assert_eq!((duplicates, lost), (0, 0), "duplicates and lost jobs");
    assert_eq!(instances.len(), jobs as usize);
}

/// One job with one to three attachments of random sizes (up to 600 KiB).
pub async fn enqueue_random(h: &Harness, rng: &mut StdRng, n: u32) -> i64 {
    let count = rng.random_range(1..=3);
    let paths: Vec<PathBuf> = (0..count)
        .map(|k| {
            let size = rng.random_range(1..600_000);
            h.file(&format!("job{n}-{k}.pdf"), &bytes(size, (n + k) as u8))
        })
        .collect();
    let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
    h.enqueue(&h.payload(&refs)).await
}

/// Sends SIGTERM once the PUT of a job's attachment reached OSS; returns the job's id and
/// how long the process took to exit.
async fn sigterm_during_upload(h: &Harness, latency: Duration) -> (i64, Duration) {
    let config = h.binary_config("graceful", BINARY_WORKER);
    let log = h.spool.with_file_name("graceful.log");
    let file = h.file("large.zip", &bytes(3 * 1024 * 1024, 7));
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.sandbox
        .inject(Endpoint::OssPut, Fault::Latency(latency), 1);
    let mut child = h.spawn_binary(&config, &log, "info");
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.received(Endpoint::OssPut).is_empty() {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let signalled = Instant::now();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15)).await;
    let took = signalled.elapsed();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status}\n{log_text}");
    (id, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_that_outlasts_the_grace_releases_the_job_uncharged() {
    let h = Harness::new().await;
    // The PUT hangs for 8 s; the grace period is 1 s.
    let (id, took) = sigterm_during_upload(&h, Duration::from_secs(8)).await;
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    let job = h.queue.get(id).await.unwrap();
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "queued", "{}", summary(&events));
    assert_eq!(job.step, "put");
    assert_eq!((job.attempt, job.uncharged_attempts), (1, 1), "not charged");
    assert_eq!(events.last().unwrap().kind, "released");

    restart_and_finish(&h, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_within_the_grace_finishes_the_step_then_releases() {
    let h = Harness::new().await;
    // The PUT waits 0.5 s, inside the 1 s grace period: it completes and is checkpointed.
    let (id, took) = sigterm_during_upload(&h, Duration::from_millis(500)).await;
    assert!(took < Duration::from_secs(4), "exited after {took:?}");
    let job = h.queue.get(id).await.unwrap();
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "queued", "{}", summary(&events));
    assert_eq!(job.step, "commit", "the upload was kept");
    assert_eq!((job.attempt, job.uncharged_attempts), (1, 1), "not charged");
    assert_eq!(events.last().unwrap().kind, "released");

    restart_and_finish(&h, id).await;
    assert_eq!(h.received(Endpoint::OssPut).len(), 1, "not uploaded again");
}

async fn restart_and_finish(h: &Harness, id: i64) {
    let config = h.binary_config("restart", BINARY_WORKER);
    let log = h.spool.with_file_name("restart.log");
    let mut child = h.spawn_binary(&config, &log, "info");
    let job = h.finished(id).await;
    sigterm(&child);
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert_eq!(
        job.attempt - job.uncharged_attempts,
        1,
        "one charged attempt"
    );
    assert_eq!(h.sandbox.instances().len(), 1);
}
