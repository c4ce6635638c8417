//! Handler tests, in process (`oneshot` on the router): who may read and act, what every
//! page and API answer shows and never shows, paging, and bulk actions. Each asserts on the
//! answers and on the rows stored afterwards.

// Test code: a failed set-up step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod pages;
mod queues;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt;

use super::{Dashboard, DashboardSettings};
use crate::queue::outcome::{Decision, DecisionFollowUp, LearnedFrom};
use crate::queue::{Failure, Follow, JobId, NewJob, Queue, StepDone, Unstored, Verdict, now_ms};
use crate::secret::Secret;

/// The dashboard token of the tests that configure one.
const TOKEN: &str = "dashboard-token-0123456789abcdef";
/// Stands for the DingTalk app secret: planted where a careless page would show it (the
/// checkpoint, a notification URL's query and user info).
const APP_SECRET: &str = "app-secret-4f9a8c1e77d2";
/// The host every request names (the listener is on loopback).
const HOST: &str = "127.0.0.1:9188";

/// A queue with a failed job, a succeeded job with its outcome and a notification, and a
/// queued job waiting for a retry; and the dashboard over it.
struct Fixture {
    _dir: tempfile::TempDir,
    queue: Queue,
    app: Router,
    failed: JobId,
    succeeded: JobId,
    waiting: JobId,
}

/// How the fixture's dashboard is set up.
#[derive(Debug, Clone, Copy, Default)]
struct Setup {
    token: bool,
    read_only: bool,
}

impl Fixture {
    async fn new(setup: Setup) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("q.db")).await.unwrap();
        let now = now_ms();
        let failed = failed_job(&queue, now - 60_000).await;
        let succeeded = succeeded_job(&queue, now - 30_000).await;
        let waiting = queue
            .enqueue(
                &NewJob {
                    payload: json!({"process_code": "PROC-WAIT"}).to_string(),
                    run_at: Some(now + 600_000),
                    max_attempts: Some(5),
                    ..NewJob::default()
                },
                now,
            )
            .await
            .unwrap()
            .id;
        let settings = DashboardSettings {
            token: setup.token.then(|| Secret::new(TOKEN)),
            read_only: setup.read_only,
            secure_cookie: false,
            loopback_hosts_only: true,
            max_attempts: 12,
            monthly_call_budget: Some(10_000),
            app_key: "dingapp".to_owned(),
            bulk_cap: 3,
        };
        let app = super::router(Dashboard::new(queue.clone(), settings));
        Fixture {
            _dir: dir,
            queue,
            app,
            failed,
            succeeded,
            waiting,
        }
    }

    /// Sends `request`; returns the status, headers and body.
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    /// GETs `path` with the session `cookie`, if any.
    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = Request::get(path).header(header::HOST, HOST);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, format!("aw_session={cookie}"));
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// A browser's session: its cookie and CSRF token, as a page hands them out.
    async fn browser_session(&self) -> (String, String) {
        let page = self.get(&format!("/jobs/{}", self.failed), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let cookie = page.session_cookie().expect("a session cookie");
        let csrf = page.csrf().expect("a CSRF field");
        (cookie, csrf)
    }

    /// A signed-in browser session (token mode): signs in through the form.
    async fn signed_in(&self) -> (String, String) {
        let form = self.get("/login", None).await;
        let visitor = form.session_cookie().unwrap();
        let csrf = form.csrf().unwrap();
        let done = self
            .send(form_post(
                "/login",
                &format!("csrf={csrf}&token={TOKEN}&next=%2F"),
                Some(&visitor),
                Some("http://127.0.0.1:9188"),
            ))
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let cookie = done.session_cookie().unwrap();
        let page = self.get("/", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::OK);
        (cookie, page.csrf().unwrap())
    }

    async fn status_of(&self, id: JobId) -> String {
        self.queue.get(id).await.unwrap().status
    }
}

/// A form POST as a browser sends it from this origin.
fn form_post(path: &str, body: &str, cookie: Option<&str>, origin: Option<&str>) -> Request<Body> {
    let mut request = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("aw_session={cookie}"));
    }
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request.body(Body::from(body.to_owned())).unwrap()
}

/// An API POST with `Authorization: Bearer token`.
fn bearer_post(path: &str, token: &str) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// An answer, read whole.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The session id a `Set-Cookie` header sets, if one does.
    fn session_cookie(&self) -> Option<String> {
        self.set_cookie()
            .and_then(|c| c.strip_prefix("aw_session=").map(str::to_owned))
            .and_then(|c| c.split(';').next().map(str::to_owned))
            .filter(|id| !id.is_empty())
    }

    fn set_cookie(&self) -> Option<&str> {
        self.headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        self.body[at..].split('"').next().map(str::to_owned)
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A job that failed in `upload_info` with HTTP 500, its checkpoint holding a credential.
async fn failed_job(queue: &Queue, at: i64) -> JobId {
    let id = queue
        .enqueue(
            &NewJob {
                payload: json!({"process_code": "PROC-FAIL", "form": [{"name": "事由", "value": "<script>alert(1)</script>"}]}).to_string(),
                idempotency_key: Some("order-failed".to_owned()),
                ..NewJob::default()
            },
            at,
        )
        .await
        .unwrap()
        .id;
    let claim = queue
        .claim("default", "w1", 1, 30_000, at)
        .await
        .unwrap()
        .remove(0);
    let checkpoint = json!({"step": "put", "upload": {"headers": {"Authorization": APP_SECRET}}});
    queue
        .checkpoint(
            claim.fence(),
            &Unstored::default(),
            &StepDone {
                step: "space",
                duration_ms: 120,
                at_ms: at + 120,
            },
            "upload_info",
            &checkpoint.to_string(),
        )
        .await
        .unwrap();
    let failure = Failure {
        step: "upload_info".to_owned(),
        message: "DingTalk answered 500 InternalError: the server failed (requestid 4F2A)"
            .to_owned(),
        http_status: Some(500),
        duration_ms: 310,
    };
    queue
        .fail(claim.fence(), &Unstored::default(), &failure, at + 500)
        .await
        .unwrap();
    id
}

/// A job that created instance `inst-ok`, approved, with the approvers' records and a
/// notification to a URL whose query and user info hold a credential.
async fn succeeded_job(queue: &Queue, at: i64) -> JobId {
    let id = queue
        .enqueue(
            &NewJob {
                payload: json!({"process_code": "PROC-OK"}).to_string(),
                ..NewJob::default()
            },
            at,
        )
        .await
        .unwrap()
        .id;
    let claim = queue
        .claim("default", "w1", 1, 30_000, at)
        .await
        .unwrap()
        .remove(0);
    let follow = Follow {
        instance_id: "inst-ok".to_owned(),
        callback_url: Some(format!(
            "https://bot:{APP_SECRET}@hooks.example/cb?key={APP_SECRET}"
        )),
        first_check_at: at + 60_000,
    };
    queue
        .succeed(
            claim.fence(),
            &Unstored::default(),
            &json!({"instance_id": "inst-ok", "files": []}).to_string(),
            "done",
            "{}",
            Some(follow),
            at + 200,
        )
        .await
        .unwrap();
    let records = json!({
        "status": "COMPLETED", "result": "agree",
        "tasks": [{"user_id": "approver7", "status": "COMPLETED", "result": "AGREE"}],
        "operation_records": [{"date": "2026-12-03T10:00Z", "user_id": "approver7",
                               "kind": "EXECUTE_TASK_NORMAL", "result": "AGREE",
                               "remark": "looks right"}],
    });
    let decision = Decision {
        instance_id: "inst-ok".to_owned(),
        verdict: Verdict::Agree,
        decided_at_ms: Some(at + 1_000),
        learned_from: LearnedFrom::Poll,
        records: Some(records.to_string()),
    };
    let follow_up = DecisionFollowUp {
        default_url: None,
        fetch_records: false,
    };
    queue
        .record_decisions(&[decision], &follow_up, at + 1_000)
        .await
        .unwrap();
    id
}
