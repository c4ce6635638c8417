//! Large attachments in parts (DingTalk's multipart upload): the real binary killed with
//! SIGKILL again and again in the middle of one, and an in-process worker meeting expired
//! signatures and a part OSS refuses (both on SQLite and PostgreSQL), and a file written to
//! between parts. Every check is on what the sandbox stored and received and on the job's
//! row and history.

use std::time::Duration;

use approval_worker::queue::EventRow;
use approval_worker::sandbox::{Endpoint, Fault, Received, SandboxOptions};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::faults::summary;
use crate::helpers::{BINARY_WORKER, Harness, md5_hex, sigterm, wait_exit, wait_for_line};

/// Part size in these tests: the smallest OSS takes is 100 KiB.
pub const PART: u64 = 256 * 1024;
/// SIGKILLs the kill test lands in the middle of one upload.
const KILLS: u32 = 20;
/// Environment variable fixing the kill test's random seed.
const SEED_ENV: &str = "APPROVAL_WORKER_PARTS_SEED";

/// A harness whose worker sends files of 1 MiB and more in parts of [`PART`], against a
/// sandbox whose OSS takes at most `oss_bytes_per_sec`.
pub async fn harness(oss_bytes_per_sec: Option<u64>, ticket_ttl: Option<Duration>) -> Harness {
    let options = sandbox_options(oss_bytes_per_sec, ticket_ttl);
    in_parts(Harness::with_sandbox(options).await)
}

/// [`harness`] on a PostgreSQL database of its own; `None` where PostgreSQL is missing
/// and not required.
async fn harness_on_postgres(oss_bytes_per_sec: Option<u64>) -> Option<Harness> {
    let options = sandbox_options(oss_bytes_per_sec, None);
    Some(in_parts(Harness::on_postgres_with(options).await?))
}

fn sandbox_options(oss_bytes_per_sec: Option<u64>, ticket_ttl: Option<Duration>) -> SandboxOptions {
    let defaults = SandboxOptions::default();
    SandboxOptions {
        oss_bytes_per_sec,
        ticket_ttl: ticket_ttl.unwrap_or(defaults.ticket_ttl),
        ..defaults
    }
}

/// `h` with its worker sending files of 1 MiB and more in parts of [`PART`].
fn in_parts(mut h: Harness) -> Harness {
    h.config.upload.multipart_threshold_bytes = 1024 * 1024;
    h.config.upload.part_bytes = PART;
    h.config.upload.max_file_bytes = 64 * 1024 * 1024;
    h
}

/// Random bytes: unlike a repeating pattern, no two parts are alike, so a part sent in the
/// wrong place or twice in place of another changes the file's MD5.
pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0; size];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// The part PUTs the sandbox received, refused ones included.
fn part_puts(h: &Harness) -> Vec<Received> {
    h.received(Endpoint::OssPut)
        .into_iter()
        .filter(|put| put.part_number.is_some())
        .collect()
}

/// Bytes that reached OSS in part PUTs, whole or cut off.
fn bytes_received(puts: &[Received]) -> u64 {
    puts.iter().map(|put| put.body_len).sum()
}

/// Asserts that the one file in the sandbox's space is `data` (its MD5).
pub fn assert_stored_identically(h: &Harness, data: &[u8]) {
    let files = h.sandbox.files();
    assert_eq!(files.len(), 1, "one file committed: {files:?}");
    assert_eq!(files[0].md5, md5_hex(data), "the committed file's content");
}

pub fn part_events(events: &[EventRow]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == "step_done" && e.step.as_deref() == Some("put_part"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_parts_killed_twenty_times_is_committed_byte_identical_resending_at_most_a_part_per_kill()
 {
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("parts kill test: seed {seed} ({SEED_ENV} to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    // 16 MiB at 2 MiB/s: eight seconds of sending, more than twenty short lives can give it
    // once each has started, claimed and signed its parts.
    let h = harness(Some(2 * 1024 * 1024), None).await;
    let data = random_bytes(16 * 1024 * 1024, seed);
    let file = h.file("scan.tiff", &data);
    let id = h.enqueue(&h.payload(&[&file])).await;
    let config = h.binary_config("parts", BINARY_WORKER);
    let log = h.spool.with_file_name("parts.log");

    for kill in 1..=KILLS {
        let mut child = h.spawn_binary(&config, &log, "warn");
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..450))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let job = h.queue.get(id).await.unwrap();
        assert_ne!(
            job.status, "succeeded",
            "the upload finished after {kill} kills, before all {KILLS} landed in it"
        );
        // The killed process's lease would run out in 5 s; the next one rescues it at once.
        h.sql("UPDATE jobs SET lease_expires_at = 0 WHERE status = 'running'")
            .await;
    }
    let sent_before_last_run = bytes_received(&part_puts(&h));
    assert!(
        sent_before_last_run > 0,
        "no part reached OSS in {KILLS} lives"
    );

    let mut child = h.spawn_binary(&config, &log, "info");
    let job = h.finished(id).await;
    wait_for_line(&log, "worker started").await;
    sigterm(&child);
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );

    let events = h.queue.events(id).await.unwrap();
    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert_stored_identically(&h, &data);
    let puts = part_puts(&h);
    let resent = bytes_received(&puts) - data.len() as u64;
    eprintln!(
        "parts kill test: {KILLS} kills, {} part PUTs, {resent} bytes sent again ({:.2} parts a kill), \
         {} inits, {} target queries, {} rescues, seed {seed}",
        puts.len(),
        resent as f64 / PART as f64 / f64::from(KILLS),
        h.received(Endpoint::MultipartInit).len(),
        h.received(Endpoint::MultipartQuery).len(),
        events.iter().filter(|e| e.kind == "rescued").count(),
    );
    assert!(
        resent <= u64::from(KILLS) * PART,
        "{resent} bytes sent again over {KILLS} kills, more than a part ({PART} bytes) a kill"
    );
    let parts = (data.len() as u64).div_ceil(PART);
    for part in 1..=parts {
        let whole = puts.iter().any(|put| {
            put.part_number == Some(part as u32) && put.status == 200 && put.body_len == PART
        });
        assert!(whole, "part {part} never reached OSS whole");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_whose_signature_oss_refuses_as_expired_is_signed_again_and_only_it_is_sent_again() {
    // 2 MiB in eight parts at 1 MiB/s: a quarter of a second each.
    expired_signature(harness(Some(1024 * 1024), None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_part_whose_signature_oss_refuses_as_expired_is_signed_again() {
    if let Some(h) = harness_on_postgres(Some(1024 * 1024)).await {
        expired_signature(h).await;
    }
}

async fn expired_signature(mut h: Harness) {
    let data = random_bytes(2 * 1024 * 1024, 11);
    let file = h.file("plan.pdf", &data);
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    h.wait_until(id, "three parts in OSS", |_, events| {
        part_events(events) >= 3
    })
    .await;
    // The targets signed with the first query (all eight) stop working at OSS.
    h.sandbox.expire_tickets();
    let job = h.finished(id).await;
    let events = h.queue.events(id).await.unwrap();

    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert_stored_identically(&h, &data);
    let redone: Vec<&EventRow> = events.iter().filter(|e| e.kind == "step_failed").collect();
    assert_eq!(redone.len(), 1, "{}", summary(&events));
    let error = redone[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("of 8: OSS refused its signature") && error.contains("expired"),
        "{error}"
    );
    assert_eq!(h.received(Endpoint::MultipartInit).len(), 1, "one upload");
    assert_eq!(
        h.received(Endpoint::MultipartQuery).len(),
        2,
        "signed once, then again after the refusal"
    );
    let puts = part_puts(&h);
    let refused: Vec<&Received> = puts.iter().filter(|put| put.status == 403).collect();
    assert_eq!(refused.len(), 1, "{puts:?}");
    assert_eq!(
        bytes_received(&puts) - data.len() as u64,
        refused[0].body_len,
        "only the refused part went again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_about_to_expire_is_fetched_again_before_its_part_so_oss_refuses_none() {
    // Targets live 2 s and are renewed with half a second to spare; eight parts of a quarter
    // of a second each outlive the first set.
    let mut h = harness(Some(1024 * 1024), Some(Duration::from_secs(2))).await;
    let data = random_bytes(2 * 1024 * 1024, 12);
    let file = h.file("plan.pdf", &data);
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    let job = h.finished(id).await;
    let events = h.queue.events(id).await.unwrap();

    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert_stored_identically(&h, &data);
    assert!(
        h.received(Endpoint::MultipartQuery).len() >= 2,
        "the targets were renewed"
    );
    let puts = part_puts(&h);
    assert!(puts.iter().all(|put| put.status == 200), "{puts:?}");
    assert_eq!(bytes_received(&puts), data.len() as u64, "no part twice");
    assert_eq!(part_events(&events), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_oss_refuses_with_a_server_error_is_retried_alone_from_the_checkpoint() {
    server_error_on_a_part(harness(Some(1024 * 1024), None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_part_oss_refuses_with_a_server_error_is_retried_alone() {
    if let Some(h) = harness_on_postgres(Some(1024 * 1024)).await {
        server_error_on_a_part(h).await;
    }
}

async fn server_error_on_a_part(mut h: Harness) {
    let data = random_bytes(2 * 1024 * 1024, 13);
    let file = h.file("plan.pdf", &data);
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    h.wait_until(id, "two parts in OSS", |_, events| part_events(events) >= 2)
        .await;
    h.sandbox
        .inject(Endpoint::OssPut, Fault::ServerError(503), 1);
    let job = h.finished(id).await;
    let events = h.queue.events(id).await.unwrap();

    assert_eq!(job.status, "succeeded", "{}", summary(&events));
    assert_stored_identically(&h, &data);
    let retries: Vec<&EventRow> = events
        .iter()
        .filter(|e| e.kind == "retry_scheduled")
        .collect();
    assert_eq!(retries.len(), 1, "{}", summary(&events));
    assert_eq!(retries[0].step.as_deref(), Some("put_part"));
    assert!(
        retries[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("of 8: OSS upload")),
        "{:?}",
        retries[0].error
    );
    assert_eq!(h.received(Endpoint::MultipartInit).len(), 1, "one upload");
    let puts = part_puts(&h);
    let refused: Vec<&Received> = puts.iter().filter(|put| put.status == 503).collect();
    assert_eq!(refused.len(), 1, "{puts:?}");
    assert!(
        bytes_received(&puts) - data.len() as u64 <= PART,
        "at most the refused part went again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_to_between_its_parts_fails_the_job_naming_the_part_and_commits_nothing() {
    let mut h = harness(Some(1024 * 1024), None).await;
    let data = random_bytes(2 * 1024 * 1024, 14);
    let file = h.file("plan.pdf", &data);
    let id = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    h.wait_until(id, "two parts in OSS", |_, events| part_events(events) >= 2)
        .await;
    let mut grown = data.clone();
    grown.extend_from_slice(b"appended");
    std::fs::write(&file, &grown).unwrap();
    let job = h.finished(id).await;
    let events = h.queue.events(id).await.unwrap();

    assert_eq!(job.status, "failed", "{}", summary(&events));
    let error = job.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("of 8:") && error.contains("file changed"),
        "{error}"
    );
    assert!(h.sandbox.files().is_empty(), "nothing committed");
    assert!(h.received(Endpoint::Commit).is_empty());
}
