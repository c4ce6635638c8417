//! Pausing and resuming queues: who may (the token, CSRF, same origin, never in read-only
//! mode), what is stored, and where a paused queue is shown.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use super::{Fixture, HOST, Setup, TOKEN, bearer_post, form_post};
use crate::queue::now_ms;

const ORIGIN: &str = "http://127.0.0.1:9188";

/// The names of the stored paused queues.
async fn paused(f: &Fixture) -> Vec<String> {
    f.queue
        .paused()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.queue)
        .collect()
}

#[tokio::test]
async fn pausing_a_queue_needs_the_token_and_its_csrf_token_and_is_stored_with_its_reason() {
    let f = Fixture::new(Setup {
        token: true,
        ..Setup::default()
    })
    .await;
    let api = "/api/queues/default/pause?reason=DingTalk%20outage";
    let anonymous = Request::post(api)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(anonymous).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        f.send(bearer_post(api, "dashboard-token-0123456789abcdeX"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let form = "queue=default&reason=outage";
    let signed_out = f
        .send(form_post("/queues/pause", form, None, Some(ORIGIN)))
        .await;
    assert_eq!(signed_out.status, StatusCode::UNAUTHORIZED);
    let (cookie, csrf) = f.signed_in().await;
    let without_csrf = f
        .send(form_post(
            "/queues/pause",
            form,
            Some(&cookie),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(without_csrf.status, StatusCode::FORBIDDEN);
    let cross_origin = f
        .send(form_post(
            "/queues/pause",
            &format!("csrf={csrf}&{form}"),
            Some(&cookie),
            Some("https://evil.example"),
        ))
        .await;
    assert_eq!(cross_origin.status, StatusCode::FORBIDDEN);
    assert!(paused(&f).await.is_empty(), "nothing was paused");

    let before = now_ms();
    let done = f
        .send(form_post(
            "/queues/pause",
            &format!("csrf={csrf}&queue=default&reason=DingTalk+outage"),
            Some(&cookie),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/?done=paused&queue=default");
    let stored = f.queue.paused().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].queue, "default");
    assert_eq!(stored[0].reason.as_deref(), Some("DingTalk outage"));
    assert!(stored[0].paused_at >= before);

    let page = f.get(done.location(), Some(&cookie)).await;
    assert!(
        page.body.contains("Queue <strong>default</strong> paused"),
        "{}",
        page.body
    );
    assert!(page.body.contains("DingTalk outage"));
    assert!(page.body.contains("action=\"/queues/resume\""));

    // A second pause keeps the first one's reason, and says so.
    let again = f.send(bearer_post(api, TOKEN)).await;
    assert_eq!(again.status, StatusCode::OK);
    let again: Value = serde_json::from_str(&again.body).unwrap();
    assert_eq!(
        again,
        json!({"queue": "default", "paused": true, "changed": false})
    );
    assert_eq!(
        f.queue.paused().await.unwrap()[0].reason.as_deref(),
        Some("DingTalk outage")
    );
}

#[tokio::test]
async fn resuming_a_queue_through_the_api_removes_the_stored_pause() {
    let f = Fixture::new(Setup {
        token: true,
        ..Setup::default()
    })
    .await;
    f.queue.pause("default", None, now_ms()).await.unwrap();
    let anonymous = Request::post("/api/queues/default/resume")
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(anonymous).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(paused(&f).await, ["default"]);

    let answer = f
        .send(bearer_post("/api/queues/default/resume", TOKEN))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        answer,
        json!({"queue": "default", "paused": false, "changed": true})
    );
    assert!(paused(&f).await.is_empty());
    let unknown = f.send(bearer_post("/api/queues/default/stop", TOKEN)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let blank = f.send(bearer_post("/api/queues/%20/pause", TOKEN)).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{}", blank.body);
    assert!(paused(&f).await.is_empty());
}

#[tokio::test]
async fn read_only_refuses_pause_and_resume_and_offers_neither() {
    let f = Fixture::new(Setup {
        token: true,
        read_only: true,
    })
    .await;
    f.queue
        .pause("nightly", Some("maintenance"), now_ms())
        .await
        .unwrap();
    let (cookie, csrf) = f.signed_in().await;
    for (path, body) in [
        ("/queues/pause", format!("csrf={csrf}&queue=default")),
        ("/queues/resume", format!("csrf={csrf}&queue=nightly")),
    ] {
        let answer = f
            .send(form_post(path, &body, Some(&cookie), Some(ORIGIN)))
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert!(answer.body.contains("read-only"), "{path}: {}", answer.body);
    }
    for path in ["/api/queues/default/pause", "/api/queues/nightly/resume"] {
        assert_eq!(
            f.send(bearer_post(path, TOKEN)).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(paused(&f).await, ["nightly"], "nothing changed");

    let overview = f.get("/", Some(&cookie)).await;
    assert!(overview.body.contains("maintenance"), "the pause is shown");
    assert!(
        !overview.body.contains("/queues/"),
        "no pause or resume form"
    );
}

#[tokio::test]
async fn a_paused_queue_is_marked_on_the_overview_the_jobs_list_the_job_page_and_the_api() {
    let f = Fixture::new(Setup::default()).await;
    f.queue
        .pause("default", Some("outage"), now_ms())
        .await
        .unwrap();
    f.queue.pause("empty", None, now_ms()).await.unwrap();

    let api: Value = serde_json::from_str(&f.get("/api/overview", None).await.body).unwrap();
    let names: Vec<&str> = api["paused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["queue"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "empty"]);
    assert_eq!(api["paused"][0]["reason"], "outage");
    assert_eq!(api["by_queue"][0]["queue"], "default");
    assert_eq!(api["by_queue"][0]["paused"], true);
    assert_eq!(
        api["by_queue"][1],
        json!({"queue": "empty", "queued": 0, "due": 0, "running": 0, "failed": 0, "paused": true}),
        "a paused queue without jobs is listed too"
    );

    let marker = "class=\"badge paused\"";
    let list = f.get("/jobs", None).await;
    assert_eq!(list.body.matches(marker).count(), 3, "every job's row");
    let job = f.get(&format!("/jobs/{}", f.waiting), None).await;
    assert!(job.body.contains(marker), "{}", job.body);
    assert!(job.body.contains("no worker claims it until the queue is"));
    let jobs: Value = serde_json::from_str(&f.get("/api/jobs", None).await.body).unwrap();
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["queue_paused"] == true)
    );

    f.queue.resume("default").await.unwrap();
    let job = f.get(&format!("/jobs/{}", f.waiting), None).await;
    assert!(!job.body.contains(marker), "resumed: no marker");
}
