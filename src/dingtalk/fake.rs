//! Test-only fake DingTalk on 127.0.0.1: answers the token call itself, records every request
//! and lets each test script the other answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{ClientSettings, DingTalk};
use crate::secret::Secret;

/// App secret the fake client uses; tests assert it never appears in errors.
pub(crate) const APP_SECRET: &str = "APP-SECRET-0123456789";
pub(crate) const TOKEN_PATH: &str = "/v1.0/oauth2/accessToken";

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Raw query string, as encoded by the client.
    pub(crate) query: String,
    headers: HeaderMap,
    pub(crate) body: Bytes,
    /// How many requests to the same path came before this one.
    pub(crate) nth: usize,
}

impl Seen {
    pub(crate) fn body_text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The headers every api.dingtalk.com JSON call must carry.
    pub(crate) fn assert_api_json_headers(&self) {
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(self.header("accept").as_deref(), Some("application/json"));
        let token = self.header("x-acs-dingtalk-access-token").unwrap();
        assert!(
            token.starts_with("tok-"),
            "raw token expected, got {token:?}"
        );
        assert!(
            self.header("user-agent")
                .unwrap()
                .starts_with("approval-worker/")
        );
    }
}

/// A scripted answer.
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self::text(status, &body.to_string()).header("content-type", "application/json")
    }

    pub(crate) fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub(crate) fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Respond = dyn Fn(&Seen) -> Reply + Send + Sync;

struct Shared {
    seen: Mutex<Vec<Seen>>,
    respond: Box<Respond>,
    token_reply: Box<dyn Fn(usize) -> Reply + Send + Sync>,
    token_calls: AtomicUsize,
}

/// A running fake; lives until the test's runtime shuts down.
pub(crate) struct Fake {
    base: String,
    shared: Arc<Shared>,
}

impl Fake {
    /// Token call answered with `tok-1`, `tok-2`, … (7200 s); everything else by `respond`.
    pub(crate) async fn start(respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::with_token(
            |n| {
                Reply::json(
                    200,
                    serde_json::json!({"accessToken": format!("tok-{n}"), "expireIn": 7200}),
                )
            },
            respond,
        )
        .await
    }

    /// Like [`Fake::start`] with a scripted token answer (`n` counts token calls from 1).
    pub(crate) async fn with_token(
        token_reply: impl Fn(usize) -> Reply + Send + Sync + 'static,
        respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            seen: Mutex::new(Vec::new()),
            respond: Box::new(respond),
            token_reply: Box::new(token_reply),
            token_calls: AtomicUsize::new(0),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, shared }
    }

    pub(crate) fn settings(&self) -> ClientSettings {
        ClientSettings {
            api_base: self.base.clone(),
            oapi_base: format!("{}/", self.base),
            app_key: "ding-app-key".into(),
            app_secret: Secret::new(APP_SECRET),
            agent_id: 3012345678,
            rate_limit_per_sec: 0,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }

    pub(crate) fn client(&self) -> DingTalk {
        DingTalk::new(self.settings()).unwrap()
    }

    /// Every request except token calls, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.all_requests()
            .into_iter()
            .filter(|s| s.path != TOKEN_PATH)
            .collect()
    }

    /// Every request including token calls.
    pub(crate) fn all_requests(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub(crate) fn last(&self) -> Seen {
        self.requests().pop().expect("no request reached the fake")
    }

    pub(crate) fn count(&self, path: &str) -> usize {
        self.all_requests()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = {
        let mut log = shared.seen.lock().unwrap();
        let nth = log.iter().filter(|s| s.path == uri.path()).count();
        let seen = Seen {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            headers,
            body,
            nth,
        };
        log.push(seen.clone());
        seen
    };
    let reply = if seen.path == TOKEN_PATH {
        let n = shared.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
        (shared.token_reply)(n)
    } else {
        (shared.respond)(&seen)
    };
    tokio::time::sleep(reply.delay).await;
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        reply.body.clone(),
    )
        .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}
