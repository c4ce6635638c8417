//! Deliveries to a receiver on 127.0.0.1 that records what arrived and answers as scripted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::*;

const SECRET: &str = "whsec-0123456789";
const BODY: &[u8] = br#"{"jobId":42,"instanceId":"INST-1","outcome":"approved"}"#;
const TOLERANCE: Duration = Duration::from_secs(300);

/// What the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }
}

/// A scripted answer.
#[derive(Clone)]
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
    delay: Duration,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        location: None,
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(reply: Answer) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .fallback(handle)
            .with_state((Arc::clone(&seen), reply));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/outcome?token=q-secret",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State((seen, reply)): State<(Arc<Mutex<Vec<Seen>>>, Answer)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    tokio::time::sleep(reply.delay).await;
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    if let Some(location) = reply.location {
        response
            .headers_mut()
            .insert("location", location.parse().unwrap());
    }
    response
}

fn webhook() -> Webhook {
    Webhook::new(Duration::from_secs(2), Duration::from_secs(5)).unwrap()
}

async fn deliver_to(url: &str) -> Result<Delivered, WebhookError> {
    webhook()
        .deliver(
            url,
            "dlv-42-1",
            BODY,
            &Secret::new(SECRET),
            crate::clock::now_ms(),
        )
        .await
}

#[tokio::test]
async fn a_delivery_arrives_signed_so_the_receiver_can_verify_it() {
    let receiver = Receiver::start(answer(204, "")).await;
    let sent_at = crate::clock::now_ms();
    let delivered = webhook()
        .deliver(
            &receiver.url,
            "dlv-42-1",
            BODY,
            &Secret::new(SECRET),
            sent_at,
        )
        .await
        .unwrap();
    assert_eq!(delivered, Delivered { status: 204 });

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    assert_eq!(got.path, "/hooks/outcome");
    assert_eq!(got.body.as_ref(), BODY);
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(
        got.header("user-agent"),
        concat!("approval-worker/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(got.header(DELIVERY_HEADER), "dlv-42-1");
    assert_eq!(got.header(TIMESTAMP_HEADER), sent_at.to_string());
    assert!(got.header(SIGNATURE_HEADER).starts_with("v1="));
    let check = |secret: &str| {
        verify(
            secret.as_bytes(),
            got.header(TIMESTAMP_HEADER),
            &got.body,
            got.header(SIGNATURE_HEADER),
            crate::clock::now_ms(),
            TOLERANCE,
        )
    };
    assert_eq!(check(SECRET), Ok(()));
    assert_eq!(check("another-secret"), Err(VerifyError::Mismatch));
    assert!(
        got.headers.iter().all(|(_, v)| !v
            .as_bytes()
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes())),
        "the secret itself is never sent"
    );
}

#[tokio::test]
async fn a_server_error_is_retryable_with_its_status_and_a_short_excerpt() {
    let page = format!(
        "<html>\n  <body>{}</body>\n</html>",
        "overloaded ".repeat(100)
    );
    let receiver = Receiver::start(answer(500, &page)).await;
    let err = deliver_to(&receiver.url).await.unwrap_err();
    assert!(err.retryable());
    assert_eq!(err.status(), Some(500));
    let WebhookError::Status { excerpt, url, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(excerpt.starts_with("<html> <body>overloaded"), "{excerpt}");
    assert!(excerpt.chars().count() <= EXCERPT_CHARS + 1, "{excerpt}");
    assert!(
        !url.contains("q-secret"),
        "the query may hold a token: {url}"
    );
    assert!(!err.to_string().contains("q-secret"), "{err}");
}

#[tokio::test]
async fn client_errors_are_retryable_except_gone() {
    for (status, retryable) in [(429, true), (408, true), (404, true), (410, false)] {
        let receiver = Receiver::start(answer(status, "no")).await;
        let err = deliver_to(&receiver.url).await.unwrap_err();
        assert_eq!((err.status(), err.retryable()), (Some(status), retryable));
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_not_retried() {
    let mut reply = answer(302, "moved");
    reply.location = Some("http://elsewhere.example/collect".into());
    let receiver = Receiver::start(reply).await;
    let err = deliver_to(&receiver.url).await.unwrap_err();
    assert_eq!(
        receiver.seen().len(),
        1,
        "one request, the redirect not followed"
    );
    assert_eq!(err.status(), Some(302));
    assert!(!err.retryable());
    assert!(err.to_string().contains("elsewhere.example"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_retryable_and_known_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let err = deliver_to(&url).await.unwrap_err();
    assert!(err.retryable());
    assert!(
        matches!(err, WebhookError::Transport { sent: false, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retryable() {
    let mut reply = answer(200, "");
    reply.delay = Duration::from_secs(30);
    let receiver = Receiver::start(reply).await;
    let quick = Webhook::new(Duration::from_secs(2), Duration::from_millis(200)).unwrap();
    let err = quick
        .deliver(&receiver.url, "d", BODY, &Secret::new(SECRET), 0)
        .await
        .unwrap_err();
    assert!(err.retryable());
    assert!(
        matches!(err, WebhookError::Transport { sent: true, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn unusable_urls_delivery_ids_and_secrets_fail_without_sending() {
    let receiver = Receiver::start(answer(204, "")).await;
    let hook = webhook();
    let secret = Secret::new(SECRET);
    for (url, id, secret) in [
        ("not a url", "d", &secret),
        ("ftp://127.0.0.1/x", "d", &secret),
        (receiver.url.as_str(), "bad\nid", &secret),
        (receiver.url.as_str(), "d", &Secret::new("")),
    ] {
        let err = hook.deliver(url, id, BODY, secret, 0).await.unwrap_err();
        assert!(matches!(err, WebhookError::Invalid(_)), "{err:?}");
        assert!(!err.retryable());
    }
    assert!(receiver.seen().is_empty());
}
