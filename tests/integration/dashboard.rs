//! The dashboard as operators use it: in headless Chromium against a worker and the sandbox
//! (find a failed job, see why, retry it and watch it succeed; cancel queued jobs by filter
//! after seeing how many), and served by the binary (`dashboard` alone, and by `run`).

use std::net::SocketAddr;
use std::time::Duration;

use approval_worker::dashboard::{Dashboard, DashboardSettings, serve};
use approval_worker::queue::outcome::{Decision, DecisionFollowUp, LearnedFrom, Verdict};
use approval_worker::queue::{Failure, Follow, JobId, NewJob, Queue, Unstored, now_ms};
use approval_worker::sandbox::{Endpoint, Fault};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::browser::Browser;
use crate::helpers::{Harness, audit, event_kinds};

/// The dashboard token of the tests that sign in.
const TOKEN: &str = "browser-test-token-5b1f0c9e";

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
/// some refused, one in twelve failed, so the overview has something to show.
async fn seed_history(queue: &Queue, now: i64) {
    const HOUR: i64 = 3_600_000;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_failed_job_sees_why_retries_it_and_watches_it_succeed() {
    let Some(mut browser) = Browser::start("retry_a_failed_job").await else {
        return;
    };
    let mut h = Harness::new().await;
    h.config.worker.max_attempts = 2;
    h.config.dingtalk.monthly_call_budget = Some(20_000);
    let token_file = h.dir().join("dashboard-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    h.config.dashboard.token_file = Some(token_file);
    seed_history(&h.queue, now_ms()).await;

    // DingTalk refuses the create twice: both attempts fail, and the job with them.
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::ServerError(500), 2);
    h.start_timed();
    let file = h.file("invoice.pdf", b"%PDF-1.4 dashboard test");
    let id = h.enqueue(&h.payload(&[&file])).await;
    let failed = h.finished(id).await;
    assert_eq!(failed.status, "failed", "{failed:?}");
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
    if std::env::var_os("APPROVAL_WORKER_UPDATE_DOCS_SCREENSHOT").is_some() {
        let png = browser.client.screenshot().await.unwrap();
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(&docs, png).unwrap();
    }

    // Filter to failed jobs, and find this one.
    browser.click("header nav a[href='/jobs']").await;
    browser.choose("select[name=status]", "failed").await;
    browser.click("form.filter button[type=submit]").await;
    assert!(browser.location().await.contains("status=failed"));
    let list = browser.text().await;
    browser.screenshot("failed-jobs").await;
    assert!(list.contains("HTTP 500") || list.contains("500"), "{list}");
    browser.click(&format!("a[href='/jobs/{id}']")).await;

    // Its timeline says where and why it failed.
    let page = browser.text().await;
    browser.screenshot("failed-job").await;
    assert!(page.contains(&format!("Job {id}")), "{page}");
    assert!(page.contains("HTTP 500"), "{page}");
    assert!(page.contains("2 of 2"), "{page}");
    let history = browser
        .client
        .find(fantoccini::Locator::Css("ol.timeline"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(history.contains("step done"), "{history}");
    assert!(history.contains("retry scheduled"), "{history}");
    assert!(history.contains("failed"), "{history}");
    let error = failed.last_error.clone().unwrap();
    assert!(page.contains(&error), "the error {error:?} in {page}");

    // Retry it, and watch it succeed.
    browser.click("form[action$='/retry'] button").await;
    assert!(browser.text().await.contains("Queued again"));
    let done = browser.reload_until("succeeded", "succeeded").await;
    assert!(done.contains("Approval outcome"), "{done}");
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
        audit(&h.sandbox.instances(), &mine).0,
        0,
        "one approval, no duplicate"
    );

    browser.close().await;
    stop.cancel();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cancels_queued_jobs_by_filter_after_seeing_how_many() {
    let Some(mut browser) = Browser::start("bulk_cancel_by_filter").await else {
        return;
    };
    let mut h = Harness::new().await;
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
    assert!(list.contains("next attempt in"), "{list}");
    browser.click("a.button.danger").await;

    let confirm = browser.text().await;
    browser.screenshot("confirm-cancel").await;
    assert!(
        confirm.contains("5 queued or running jobs match: queue nightly, status queued"),
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

#[tokio::test]
async fn the_dashboard_command_serves_the_database_alone_and_run_serves_it_too() {
    let h = Harness::new().await;
    let id = h.enqueue(&json!({"process_code": "PROC-CLI"})).await;
    let config = h.config_file("dashboard.toml", "");
    let mut command = h.command();
    command
        .args(["--config"])
        .arg(&config)
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut alone = crate::helpers::Daemon::spawn(command);
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", "echo hi-there >&2; sleep 3"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut d = crate::helpers::Daemon::spawn(sh);
    eprintln!("SH {}", d.wait_for_log("hi-there"));
    let base = served_at(&alone.wait_for_log("serving the dashboard at"));
    let jobs: serde_json::Value = reqwest::get(format!("{base}/api/jobs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"][0]["id"], id);
    alone.signal("TERM");
    assert_eq!(alone.wait_exit(Duration::from_secs(10)), Some(0));

    let config = h.config_file("run.toml", "[dashboard]\nlisten = \"127.0.0.1:0\"\n");
    let mut run = h.spawn_run(&config, &[]);
    let base = served_at(&run.wait_for_log("serving the dashboard at"));
    let page = reqwest::get(format!("{base}/jobs/{id}")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&format!("Job {id}")));
    run.signal("TERM");
    assert_eq!(run.wait_exit(Duration::from_secs(30)), Some(0));
}

#[tokio::test]
async fn a_dashboard_other_hosts_can_reach_is_refused_without_allow_remote_and_a_token() {
    let h = Harness::new().await;
    let config = h.config_file("remote.toml", "");
    let out = h
        .command()
        .arg("--config")
        .arg(&config)
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("allow_remote"), "{stderr}");

    let config = h.config_file(
        "remote-no-token.toml",
        "[dashboard]\nallow_remote = true\ntoken_env = \"APPROVAL_WORKER_TEST_NO_SUCH_TOKEN\"\n",
    );
    let out = h
        .command()
        .arg("--config")
        .arg(&config)
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a token"), "{stderr}");
}

/// The URL in a "serving the dashboard at http://…/" log line.
fn served_at(line: &str) -> String {
    let at = line.find("http://").expect("a URL in the log line");
    line[at..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned()
}
