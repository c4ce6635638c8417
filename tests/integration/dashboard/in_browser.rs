//! The dashboard in headless Chromium against a running worker and the sandbox: find a failed
//! job, see why, retry it and watch it succeed; cancel queued jobs by filter after seeing how
//! many; pause a queue, see a new job wait, resume it and watch the job succeed; watch a
//! large upload's progress move and a large file's parts reach OSS.

use std::time::{Duration, Instant};

use approval_worker::queue::{JobId, NewJob, now_ms};
use approval_worker::sandbox::{Endpoint, Fault, SandboxOptions};
use fantoccini::Locator;
use serde_json::json;

use super::{seed_history, serve_dashboard};
use crate::helpers::browser::Browser;
use crate::helpers::{Harness, Timing, audit, bytes, event_kinds, md5_hex};

/// The dashboard token of the scenario that signs in.
const TOKEN: &str = "browser-test-token-5b1f0c9e";

on_both_stores!(
    an_operator_finds_a_failed_job_sees_why_retries_it_and_watches_it_succeed,
    an_operator_cancels_queued_jobs_by_filter_after_seeing_how_many,
    an_operator_pauses_a_queue_its_new_job_waits_and_runs_once_resumed,
);

async fn an_operator_finds_a_failed_job_sees_why_retries_it_and_watches_it_succeed(
    mut h: Harness,
    store: &str,
) {
    let Some(mut browser) = Browser::start(&format!("retry_a_failed_job-{store}")).await else {
        return;
    };
    h.config.worker.max_attempts = 2;
    h.config.dingtalk.monthly_call_budget = Some(20_000);
    let token_file = h.dir().join("dashboard-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    h.config.dashboard.token_file = Some(token_file);
    seed_history(&h.queue, now_ms()).await;

    // DingTalk answers the create twice with a 500: the create may have landed, so after
    // its two attempts the job looks for the instance once more, finds none, and fails.
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::ServerError(500), 2);
    h.start_timed();
    let file = h.file("invoice.pdf", b"%PDF-1.4 dashboard test");
    let id = h.enqueue(&h.payload(&[&file])).await;
    let failed = h.finished(id).await;
    assert_eq!(failed.status, "failed", "{failed:?}");
    let error = failed.last_error.clone().unwrap();
    assert!(
        error.contains("reconciliation found no instance"),
        "{error}"
    );
    let (base, stop) = serve_dashboard(&h).await;

    // Signing in leads back to the page asked for.
    browser.open(&format!("{base}/"), "sign-in").await;
    assert!(browser.location().await.starts_with("/login"));
    browser.type_into("input[name=token]", TOKEN).await;
    browser.click("form.signin button[type=submit]").await;
    let overview = browser.text().await;
    browser.screenshot("overview").await;
    assert_eq!(browser.location().await, "/");
    assert!(overview.contains("Finished per hour"), "{overview}");
    assert!(overview.contains("DingTalk calls in"), "{overview}");
    assert!(
        overview.contains("of 20\u{2009}000 counted calls"),
        "{overview}"
    );
    if store == "sqlite" && std::env::var_os("APPROVAL_WORKER_UPDATE_DOCS_SCREENSHOT").is_some() {
        // Tall enough for the whole overview.
        browser.client.set_window_size(1280, 1240).await.unwrap();
        let png = browser.client.screenshot().await.unwrap();
        browser.client.set_window_size(1280, 1000).await.unwrap();
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(&docs, png).unwrap();
        eprintln!("updated {}", docs.display());
    }

    // Filter to failed jobs, and find this one among the day's failures.
    browser.click("header nav a[href='/jobs']").await;
    browser.choose("select[name=status]", "failed").await;
    browser.click("form.filter button[type=submit]").await;
    assert!(browser.location().await.contains("status=failed"));
    let list = browser.text().await;
    browser.screenshot("failed-jobs").await;
    let row = list
        .lines()
        .find(|line| line.starts_with(&format!("{id} failed")))
        .unwrap_or_else(|| panic!("no row for job {id} in\n{list}"));
    assert!(row.contains("reconciliation found no instance"), "{row}");
    browser.click(&format!("a[href='/jobs/{id}']")).await;

    // Its page says where and why it failed: each create's HTTP 500, then the last look.
    let page = browser.text().await;
    browser.screenshot("failed-job").await;
    assert!(page.contains(&format!("Job {id}")), "{page}");
    assert!(page.contains(&error), "the error {error:?} in {page}");
    assert!(
        page.contains("(limit 2;"),
        "attempts past the limit: {page}"
    );
    let timeline = browser
        .client
        .find(Locator::Css("ol.timeline"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(timeline.contains("step done commit"), "{timeline}");
    assert!(timeline.contains("retry scheduled submit"), "{timeline}");
    assert!(
        timeline.contains("failed reconcile attempt 3"),
        "{timeline}"
    );
    let mut statuses = Vec::new();
    for shown in browser
        .client
        .find_all(Locator::Css("ol.timeline .http"))
        .await
        .unwrap()
    {
        statuses.push(shown.text().await.unwrap());
    }
    assert_eq!(
        statuses,
        ["HTTP 500", "HTTP 500"],
        "both creates: {timeline}"
    );

    // Retry it, and watch it succeed.
    browser.click("form[action$='/retry'] button").await;
    assert!(browser.text().await.contains("Queued again"));
    let done = browser.reload_until("Approval outcome", "succeeded").await;
    assert!(done.contains("succeeded"), "{done}");
    let job = h.finished(id).await;
    assert_eq!(job.status, "succeeded");
    assert!(
        event_kinds(&h.queue, id)
            .await
            .contains(&"retried".to_owned())
    );
    assert_eq!(
        h.received(Endpoint::CreateInstance).len(),
        3,
        "two refused, one made"
    );
    let mine: Vec<_> = h
        .all_jobs()
        .await
        .into_iter()
        .filter(|j| j.id == id)
        .collect();
    assert_eq!(
        audit(&h.sandbox.instances(), &mine),
        (0, 0),
        "one approval, no duplicate"
    );

    browser.close().await;
    stop.cancel();
    h.stop().await;
}

async fn an_operator_cancels_queued_jobs_by_filter_after_seeing_how_many(
    mut h: Harness,
    store: &str,
) {
    let Some(mut browser) = Browser::start(&format!("bulk_cancel_by_filter-{store}")).await else {
        return;
    };
    let later = now_ms() + 3_600_000;
    let mut bulk: Vec<JobId> = Vec::new();
    for n in 0..5 {
        let job = NewJob {
            payload: json!({"process_code": "PROC-LATER", "n": n}).to_string(),
            queue: Some("nightly".to_owned()),
            run_at: Some(later),
            ..NewJob::default()
        };
        bulk.push(h.enqueue_job(job).await);
    }
    let other = h
        .enqueue_job(NewJob {
            payload: json!({"process_code": "PROC-OTHER"}).to_string(),
            queue: Some("daytime".to_owned()),
            run_at: Some(later),
            ..NewJob::default()
        })
        .await;
    h.start_timed();
    let (base, stop) = serve_dashboard(&h).await;

    browser.open(&format!("{base}/jobs"), "all-jobs").await;
    browser.type_into("input[name=queue]", "nightly").await;
    browser.choose("select[name=status]", "queued").await;
    browser.click("form.filter button[type=submit]").await;
    let list = browser.text().await;
    browser.screenshot("queued-nightly").await;
    assert!(
        list.contains("Showing 5 of status queued, queue nightly"),
        "{list}"
    );
    assert!(list.contains("next attempt in"), "{list}");
    browser.click("a.button.danger").await;

    let confirm = browser.text().await;
    browser.screenshot("confirm-cancel").await;
    assert!(
        confirm.contains("5 queued or running jobs match: status queued, queue nightly."),
        "{confirm}"
    );
    for id in bulk.iter().chain([&other]) {
        assert_eq!(
            h.queue.get(*id).await.unwrap().status,
            "queued",
            "nothing yet"
        );
    }
    browser
        .click("form[action='/bulk/cancel'] button[type=submit]")
        .await;
    let after = browser.text().await;
    browser.screenshot("cancelled").await;
    assert!(after.contains("5 jobs cancelled"), "{after}");

    for id in &bulk {
        let job = h.queue.get(*id).await.unwrap();
        assert_eq!(job.status, "cancelled", "{job:?}");
        assert_eq!(event_kinds(&h.queue, *id).await, ["cancelled"]);
    }
    assert_eq!(
        h.queue.get(other).await.unwrap().status,
        "queued",
        "another queue's job"
    );

    browser.close().await;
    stop.cancel();
    h.stop().await;
}

async fn an_operator_pauses_a_queue_its_new_job_waits_and_runs_once_resumed(
    mut h: Harness,
    store: &str,
) {
    let Some(mut browser) = Browser::start(&format!("pause_and_resume-{store}")).await else {
        return;
    };
    h.start_timed();
    let (base, stop) = serve_dashboard(&h).await;

    // Pause the queue the worker serves, saying why.
    browser.open(&format!("{base}/"), "overview").await;
    assert!(browser.text().await.contains("No queue is paused"));
    browser
        .type_into("form.pause input[name=queue]", "default")
        .await;
    browser
        .type_into("form.pause input[name=reason]", "DingTalk outage")
        .await;
    browser.click("form.pause button[type=submit]").await;
    let paused = browser.text().await;
    browser.screenshot("paused").await;
    assert!(paused.contains("Queue default paused"), "{paused}");
    assert!(paused.contains("DingTalk outage"), "{paused}");
    let stored = h.queue.paused().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].queue, "default");
    assert_eq!(stored[0].reason.as_deref(), Some("DingTalk outage"));

    // A job enqueued now waits, though the worker looks for due jobs every poll interval.
    let file = h.file("receipt.pdf", b"%PDF-1.4 paused");
    let id = h.enqueue(&h.payload(&[&file])).await;
    let poll = Duration::from_millis(h.config.worker.poll_interval_ms);
    stays_unclaimed(&h, id, poll, 25).await;
    browser.open(&format!("{base}/jobs/{id}"), "waiting").await;
    let waiting = browser.text().await;
    assert!(waiting.contains("queued"), "{waiting}");
    assert!(
        waiting.contains("paused no worker claims it until the queue is resumed"),
        "{waiting}"
    );
    assert!(h.received(Endpoint::CreateInstance).is_empty());

    // Resume it from the overview, and watch the job succeed.
    browser.open(&format!("{base}/"), "overview-paused").await;
    browser
        .click("#paused-queues form[action='/queues/resume'] button")
        .await;
    let resumed = browser.text().await;
    browser.screenshot("resumed").await;
    assert!(resumed.contains("Queue default resumed"), "{resumed}");
    assert!(resumed.contains("No queue is paused"), "{resumed}");
    assert!(h.queue.paused().await.unwrap().is_empty());
    browser.open(&format!("{base}/jobs/{id}"), "job").await;
    let done = browser.reload_until("Approval outcome", "succeeded").await;
    assert!(!done.contains("no worker claims it"), "{done}");
    let job = h.finished(id).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(h.received(Endpoint::CreateInstance).len(), 1);

    browser.close().await;
    stop.cancel();
    h.stop().await;
}

/// Checks, at every poll interval for `polls` of them, that job `id` is still queued and has
/// never been claimed: the running worker had that many chances to take it.
async fn stays_unclaimed(h: &Harness, id: JobId, poll: Duration, polls: u32) {
    let until = Instant::now() + poll * polls;
    while Instant::now() < until {
        let job = h.queue.get(id).await.unwrap();
        assert_eq!(
            (job.status.as_str(), job.attempt),
            ("queued", 0),
            "a paused queue's job was claimed: {job:?}"
        );
        tokio::time::sleep(poll).await;
    }
    assert!(event_kinds(&h.queue, id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_a_large_uploads_progress_move_on_its_page() {
    let Some(mut browser) = Browser::start("large_upload_progress").await else {
        return;
    };
    const MIB: usize = 1024 * 1024;
    let mut h = Harness::with_sandbox(SandboxOptions {
        oss_bytes_per_sec: Some(3 * MIB as u64),
        ..SandboxOptions::default()
    })
    .await;
    // Large beside what loopback's socket buffers take in before OSS reads it.
    let data = bytes(30 * MIB, 9);
    let big = h.file("scan.tiff", &data);
    h.start_timed_with(slow_link_timing());
    let (base, stop) = serve_dashboard(&h).await;
    let id = h.enqueue(&h.payload(&[&big])).await;

    browser.open(&format!("{base}/jobs/{id}"), "job").await;
    let first = browser
        .reload_until("uploading file 1 of 1 (scan.tiff)", "uploading")
        .await;
    let before = percent(&first).expect("a percentage");
    assert!(first.contains(" of 30.00 MiB ("), "{first}");
    assert!(first.contains("/s, about "), "{first}");
    // The page reloads itself while the upload runs: no reload from here.
    let deadline = Instant::now() + Duration::from_secs(30);
    let later = loop {
        let text = browser.text().await;
        if let Some(now) = percent(&text).filter(|now| *now > before) {
            browser.screenshot("moved").await;
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the upload's progress never moved past {before} %: {text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(later <= 100);

    let done = browser.reload_until("Approval outcome", "succeeded").await;
    assert!(!done.contains("uploading file"), "{done}");
    assert_eq!(h.finished(id).await.status, "succeeded");
    let stored = h.sandbox.files();
    assert_eq!(stored[0].md5, md5_hex(&data), "the file arrived whole");

    browser.close().await;
    stop.cancel();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_a_large_files_parts_reach_oss_on_its_page() {
    let Some(mut browser) = Browser::start("parts_progress").await else {
        return;
    };
    // 12 MiB in 48 parts at 3 MiB/s: four seconds, two of the page's own reloads at least.
    let mut h = crate::multipart::harness(Some(3 * 1024 * 1024), None).await;
    let data = crate::multipart::random_bytes(12 * 1024 * 1024, 21);
    let big = h.file("scan.tiff", &data);
    h.start_timed_with(slow_link_timing());
    let (base, stop) = serve_dashboard(&h).await;
    let id = h.enqueue(&h.payload(&[&big])).await;

    browser.open(&format!("{base}/jobs/{id}"), "job").await;
    let first = browser.reload_until("parts in OSS", "parts").await;
    let before = parts_done(&first).expect("a parts line");
    assert!(first.contains(" of 48 parts in OSS ("), "{first}");
    // The page reloads itself while the upload runs: no reload from here.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = browser.text().await;
        if parts_done(&text).is_some_and(|now| now > before) {
            browser.screenshot("parts_moved").await;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the parts in OSS never passed {before}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let done = browser.reload_until("Approval outcome", "succeeded").await;
    assert!(!done.contains("parts in OSS"), "{done}");
    assert!(
        done.contains("put_part × 48"),
        "one history entry for the parts: {done}"
    );
    assert_eq!(h.finished(id).await.status, "succeeded");
    crate::multipart::assert_stored_identically(&h, &data);

    browser.close().await;
    stop.cancel();
    h.stop().await;
}

/// Timings for an upload over the sandbox's slow OSS link: the client's socket buffer
/// (up to 4 MiB under Linux's defaults) drains at the link's pace after the last byte is
/// handed over, more than a second of silence before OSS answers at 3 MiB/s, and longer on
/// a loaded machine, so the 2 s default would cut uploads that are going well.
fn slow_link_timing() -> Timing {
    Timing {
        request_timeout: Duration::from_secs(10),
        submit_settle: Duration::from_secs(20),
        ..Timing::default()
    }
}

/// N in an "N of 48 parts in OSS" line.
fn parts_done(text: &str) -> Option<u32> {
    let end = text.find(" of 48 parts in OSS")?;
    let start = text[..end].rfind(|c: char| !c.is_ascii_digit())? + 1;
    text[start..end].parse().ok()
}

/// The percentage in an "uploading file …: 12.00 MiB of 30.00 MiB (40 %)" line.
fn percent(text: &str) -> Option<u32> {
    let line = &text[text.find("uploading file")?..];
    let end = line.find(" %)")?;
    let start = line[..end].rfind('(')? + 1;
    line[start..end].parse().ok()
}
