//! What the pages and the API show — and never show — with a failed job, a succeeded job
//! with its outcome, and a job waiting for a retry; paging; bulk actions.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{APP_SECRET, Fixture, Setup, TOKEN, form_post};
use crate::queue::{NewJob, now_ms};

const ORIGIN: &str = "http://127.0.0.1:9188";

#[tokio::test]
async fn no_page_or_api_answer_shows_the_app_secret_the_token_or_the_session_id() {
    let f = Fixture::new(Setup {
        token: true,
        ..Setup::default()
    })
    .await;
    let (session, _) = f.signed_in().await;
    let paths = [
        "/".to_owned(),
        "/jobs".to_owned(),
        "/jobs?status=failed".to_owned(),
        "/jobs?outcome=agree".to_owned(),
        format!("/jobs/{}", f.failed),
        format!("/jobs/{}", f.succeeded),
        format!("/jobs/{}", f.waiting),
        "/bulk/retry?status=failed".to_owned(),
        "/bulk/cancel".to_owned(),
        "/login".to_owned(),
        "/api/overview".to_owned(),
        "/api/jobs".to_owned(),
        format!("/api/jobs/{}", f.failed),
        format!("/api/jobs/{}", f.succeeded),
        "/api/bulk/retry".to_owned(),
        "/static/style.css".to_owned(),
        "/nowhere".to_owned(),
        "/jobs/999999".to_owned(),
    ];
    for path in &paths {
        let answer = f.get(path, Some(&session)).await;
        assert!(
            matches!(
                answer.status,
                StatusCode::OK | StatusCode::SEE_OTHER | StatusCode::NOT_FOUND
            ),
            "{path}: {}",
            answer.status
        );
        for (what, secret) in [
            ("app secret", APP_SECRET),
            ("token", TOKEN),
            ("session id", &session),
        ] {
            assert!(
                !answer.body.contains(secret),
                "{path} shows the {what}: {}",
                answer.body
            );
            let headers = format!("{:?}", answer.headers);
            assert!(
                !headers.contains(secret),
                "{path}'s headers show the {what}"
            );
        }
    }
    // The pages do show what an operator needs, with the credentials cut out.
    let job = f
        .get(&format!("/jobs/{}", f.succeeded), Some(&session))
        .await;
    assert!(
        job.body.contains("https://hooks.example/cb?…"),
        "{}",
        job.body
    );
    let failed = f.get(&format!("/jobs/{}", f.failed), Some(&session)).await;
    assert!(
        failed.body.contains("not shown here"),
        "the checkpoint is withheld"
    );
}

#[tokio::test]
async fn the_failed_job_page_shows_its_timeline_with_durations_and_the_failure() {
    let f = Fixture::new(Setup::default()).await;
    let page = f.get(&format!("/jobs/{}", f.failed), None).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    for expected in [
        "status-failed",
        "step done",
        "120 ms",
        "failed",
        "HTTP 500",
        "DingTalk answered 500 InternalError: the server failed (requestid 4F2A)",
        "1 of 12",
        "order-failed",
        "action=\"/jobs/1/retry\"",
    ] {
        assert!(body.contains(expected), "no {expected:?} in {body}");
    }
    // The payload is shown as data, never as markup.
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script"), "{body}");

    let api: Value =
        serde_json::from_str(&f.get(&format!("/api/jobs/{}", f.failed), None).await.body).unwrap();
    assert_eq!(api["job"]["status"], "failed");
    assert_eq!(api["job"]["attempt"], 1);
    assert_eq!(api["job"]["max_attempts"], 12);
    let failed = api["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "failed")
        .unwrap();
    assert_eq!(failed["http_status"], 500);
    assert_eq!(failed["step"], "upload_info");
    assert!(api.get("checkpoint").is_none() && api["has_checkpoint"] == true);
}

#[tokio::test]
async fn the_succeeded_job_page_shows_its_outcome_approvers_and_notifications() {
    let f = Fixture::new(Setup::default()).await;
    let page = f.get(&format!("/jobs/{}", f.succeeded), None).await;
    for expected in [
        "inst-ok",
        "outcome-agree",
        "approver7",
        "looks right",
        "Notifications",
        "pending",
    ] {
        assert!(
            page.body.contains(expected),
            "no {expected:?} in {}",
            page.body
        );
    }
    let api: Value = serde_json::from_str(
        &f.get(&format!("/api/jobs/{}", f.succeeded), None)
            .await
            .body,
    )
    .unwrap();
    assert_eq!(api["job"]["instance_id"], "inst-ok");
    assert_eq!(api["outcome"]["outcome"], "agree");
    assert_eq!(
        api["outcome"]["records"]["operation_records"][0]["user_id"],
        "approver7"
    );
    assert_eq!(api["deliveries"][0]["url"], "https://hooks.example/cb?…");
    let list = f.get("/jobs?outcome=agree", None).await;
    assert!(
        list.body
            .contains(&format!("href=\"/jobs/{}\"", f.succeeded))
    );
    assert!(!list.body.contains(&format!("href=\"/jobs/{}\"", f.failed)));
}

#[tokio::test]
async fn the_overview_counts_jobs_by_status_queue_and_outcome_and_charts_the_day() {
    let f = Fixture::new(Setup::default()).await;
    let page = f.get("/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg class=\"chart\""), "{}", page.body);
    assert!(
        page.body.contains(" succeeded 1<"),
        "the legend: {}",
        page.body
    );
    assert!(
        page.body.contains(" failed 1<"),
        "the legend: {}",
        page.body
    );
    assert!(
        page.body.contains(&format!("href=\"/jobs/{}\"", f.waiting)),
        "oldest waiting job"
    );
    let api: Value = serde_json::from_str(&f.get("/api/overview", None).await.body).unwrap();
    let count = |list: &Value, name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["jobs"].clone())
    };
    assert_eq!(count(&api["by_status"], "failed"), Some(json!(1)));
    assert_eq!(count(&api["by_status"], "succeeded"), Some(json!(1)));
    assert_eq!(count(&api["by_status"], "queued"), Some(json!(1)));
    assert_eq!(count(&api["by_outcome"], "agree"), Some(json!(1)));
    assert_eq!(
        api["by_queue"][0],
        json!({"queue": "default", "queued": 1, "due": 0, "running": 0, "failed": 1, "paused": false})
    );
    let hours = api["finished_per_hour"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    let total = |key: &str| hours.iter().map(|h| h[key].as_i64().unwrap()).sum::<i64>();
    assert_eq!((total("succeeded"), total("failed")), (1, 1));
    assert_eq!(api["dingtalk_calls"]["budget"], 10_000);
}

#[tokio::test]
async fn a_job_waiting_for_a_retry_shows_its_next_attempt_and_attempt_n_of_m() {
    let f = Fixture::new(Setup::default()).await;
    let list = f.get("/jobs?status=queued", None).await;
    assert!(list.body.contains("next attempt"), "{}", list.body);
    assert!(
        list.body.contains("0 of 5"),
        "the job's own limit: {}",
        list.body
    );
    let api: Value =
        serde_json::from_str(&f.get("/api/jobs?status=queued", None).await.body).unwrap();
    let job = &api["jobs"][0];
    assert_eq!(job["id"], f.waiting);
    assert!(job["next_attempt_at"].as_i64().unwrap() > now_ms());
    assert_eq!(job["max_attempts"], 5);
}

#[tokio::test]
async fn the_jobs_list_pages_by_id_and_says_when_more_match() {
    let f = Fixture::new(Setup::default()).await;
    let now = now_ms();
    let jobs: Vec<NewJob> = (0..57)
        .map(|n| NewJob {
            payload: json!({"n": n}).to_string(),
            queue: Some("paged".to_owned()),
            ..NewJob::default()
        })
        .collect();
    let ids: Vec<i64> = f
        .queue
        .enqueue_many(&jobs, now)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let first = f.get("/jobs?queue=paged", None).await;
    assert_eq!(first.body.matches("<tr><td class=\"num\">").count(), 50);
    let oldest_shown = ids[ids.len() - 50];
    let older = format!("/jobs?queue=paged&amp;before={oldest_shown}");
    assert!(
        first.body.contains(&older),
        "an older link after #{oldest_shown}: {}",
        first.body
    );
    assert!(first.body.contains("More match"));

    let second = f
        .get(&format!("/jobs?queue=paged&before={oldest_shown}"), None)
        .await;
    assert_eq!(second.body.matches("<tr><td class=\"num\">").count(), 7);
    assert!(!second.body.contains("Older"), "the last page");
    assert!(second.body.contains(&format!("href=\"/jobs/{}\"", ids[0])));

    let api: Value =
        serde_json::from_str(&f.get("/api/jobs?queue=paged", None).await.body).unwrap();
    assert_eq!(api["more"], true);
    assert_eq!(api["next_before"], oldest_shown);
    let bad = f.get("/jobs?status=lost", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("status"));
}

#[tokio::test]
async fn a_bulk_retry_shows_how_many_first_and_takes_at_most_the_cap() {
    let f = Fixture::new(Setup::default()).await;
    let now = now_ms();
    for n in 0..4 {
        let id = f
            .queue
            .enqueue(
                &NewJob {
                    payload: json!({"n": n}).to_string(),
                    ..NewJob::default()
                },
                now,
            )
            .await
            .unwrap()
            .id;
        f.queue.cancel(id, "submit", now).await.unwrap();
    }
    // Five jobs match (one failed, four cancelled); the fixture's cap is 3.
    let (cookie, _) = f.browser_session().await;
    let confirm = f.get("/bulk/retry", Some(&cookie)).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("More than 3"), "{}", confirm.body);
    assert!(confirm.body.contains("Retry 3 jobs"), "{}", confirm.body);
    let csrf = confirm.csrf().unwrap();
    let done = f
        .send(form_post(
            "/bulk/retry",
            &format!("csrf={csrf}"),
            Some(&cookie),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/jobs?done=retry&n=3&flagged=0&more=true");
    let notice = f.get(done.location(), Some(&cookie)).await;
    assert!(
        notice.body.contains("3 jobs queued again"),
        "{}",
        notice.body
    );
    assert!(notice.body.contains("run it again"), "{}", notice.body);

    let count: Value = serde_json::from_str(&f.get("/api/bulk/retry", None).await.body).unwrap();
    assert_eq!(count["matching"], 2);
    // A program on this host (no browser headers, no cookie) needs no token when none is set.
    let local = axum::http::Request::post("/api/bulk/retry")
        .header(axum::http::header::HOST, super::HOST)
        .body(axum::body::Body::empty())
        .unwrap();
    let rest: Value = serde_json::from_str(&f.send(local).await.body).unwrap();
    assert_eq!(rest, json!({"acted": 2, "flagged": 0, "more": false}));
    let statuses: Vec<String> = f
        .queue
        .list(&crate::queue::JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.status)
        .collect();
    assert!(
        !statuses.iter().any(|s| s == "failed" || s == "cancelled"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_running_upload_shows_its_bytes_speed_and_time_left_and_the_page_reloads_itself() {
    let f = Fixture::new(Setup::default()).await;
    let now = now_ms();
    let (id, claimed) = running_job(&f, now).await;
    store_step(&f, &claimed, "upload_info", "put", "{}", now).await;
    report_upload(&f, &claimed, 40 * 1024 * 1024, now).await;

    let page = f.get(&format!("/jobs/{id}"), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(
            "uploading file 1 of 1 (scan.tiff): 40.00 MiB of 100.00 MiB (40 %), 10.00 MiB/s, \
             about 6 s left"
        ),
        "{}",
        page.body
    );
    assert_eq!(page.headers["refresh"], "2");
    let api: Value =
        serde_json::from_str(&f.get(&format!("/api/jobs/{id}"), None).await.body).unwrap();
    assert_eq!(api["upload"]["bytes_sent"], 40 * 1024 * 1024);
    assert_eq!(api["upload"]["file_name"], "scan.tiff");
    assert_eq!(api["upload"]["eta_secs"], 6.0);

    let quiet = f.get(&format!("/jobs/{}", f.failed), None).await;
    assert!(!quiet.body.contains("Uploading"));
    assert!(
        quiet.headers.get("refresh").is_none(),
        "no upload, no reload"
    );
}

#[tokio::test]
async fn an_upload_in_parts_shows_its_parts_and_counts_those_stored_since_the_last_report() {
    let f = Fixture::new(Setup::default()).await;
    let now = now_ms();
    let (id, claimed) = running_job(&f, now).await;
    let step = crate::approval::Step::PutParts {
        progress: crate::approval::Progress {
            union_id: "u".into(),
            space_id: 1,
            granted_at_ms: now,
            files: vec![],
        },
        upload: crate::approval::PartedUpload {
            upload_key: "k".into(),
            size: 100 * 1024 * 1024,
            modified: None,
            part_bytes: 8 * 1024 * 1024,
            parts_done: 7,
            started_at_ms: now - 4_000,
            targets: vec![],
        },
    };
    store_step(
        &f,
        &claimed,
        "put_part",
        step.name(),
        &step.to_checkpoint(),
        now,
    )
    .await;
    let unreported = f.get(&format!("/jobs/{id}"), None).await;
    assert!(unreported.body.contains("7 of 13 parts in OSS"));
    assert_eq!(
        unreported.headers["refresh"], "2",
        "reloads before the worker's first report"
    );
    // The worker's last report, a moment before the seventh part was stored.
    report_upload(&f, &claimed, 48 * 1024 * 1024, now).await;

    let page = f.get(&format!("/jobs/{id}"), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("7 of 13 parts in OSS (56.00 MiB of 100.00 MiB)"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("uploading file 1 of 1 (scan.tiff): 56.00 MiB of 100.00 MiB (56 %)"),
        "{}",
        page.body
    );
    let api: Value =
        serde_json::from_str(&f.get(&format!("/api/jobs/{id}"), None).await.body).unwrap();
    assert_eq!(api["upload"]["bytes_sent"], 56 * 1024 * 1024);
    assert_eq!(
        api["parts"],
        "7 of 13 parts in OSS (56.00 MiB of 100.00 MiB)"
    );
}

/// A new job, claimed at `now`: its id and its claim.
async fn running_job(f: &Fixture, now: i64) -> (i64, crate::queue::ClaimedJob) {
    let id = f
        .queue
        .enqueue(
            &NewJob {
                payload: json!({"process_code": "PROC-BIG"}).to_string(),
                ..NewJob::default()
            },
            now,
        )
        .await
        .unwrap()
        .id;
    let claimed = f
        .queue
        .claim("default", "w1", 10, 60_000, now)
        .await
        .unwrap()
        .into_iter()
        .find(|job| job.id == id)
        .unwrap();
    (id, claimed)
}

/// Stores `checkpoint` at `step` for `claimed`, once `done` finished at `now`.
async fn store_step(
    f: &Fixture,
    claimed: &crate::queue::ClaimedJob,
    done: &'static str,
    step: &str,
    checkpoint: &str,
    now: i64,
) {
    let done = crate::queue::StepDone {
        step: done,
        duration_ms: 40,
        at_ms: now,
    };
    f.queue
        .checkpoint(
            claimed.fence(),
            &crate::queue::Unstored::default(),
            &done,
            step,
            checkpoint,
        )
        .await
        .unwrap();
}

/// The worker's report at `now` of `sent` bytes of scan.tiff (100 MiB), begun 4 s before.
async fn report_upload(f: &Fixture, claimed: &crate::queue::ClaimedJob, sent: i64, now: i64) {
    let report = crate::queue::UploadReport {
        fence: claimed.fence(),
        file_index: 0,
        file_count: 1,
        file_name: "scan.tiff".to_owned(),
        bytes_sent: sent,
        bytes_total: 100 * 1024 * 1024,
        started_at: now - 4_000,
    };
    f.queue.report_uploads(&[report], now).await.unwrap();
}
