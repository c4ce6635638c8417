//! Signed outcome notifications to the producer: one HTTP POST of a JSON body per attempt,
//! signed as `sign.rs` describes. Knows nothing of jobs: the caller chooses the URL, the body,
//! the delivery id and when to try again ([`WebhookError::retryable`]).
//!
//! Each attempt sends `Content-Type: application/json`, `User-Agent:
//! approval-worker/<version>`, `X-Approval-Worker-Delivery: <delivery id>`,
//! `X-Approval-Worker-Timestamp: <unix ms>` and `X-Approval-Worker-Signature: v1=<hex>`. A 2xx
//! is delivered; redirects are never followed.

mod error;
mod sign;

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use tracing::debug;

use crate::secret::Secret;
pub(crate) use error::WebhookError;
use sign::{DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_header};
#[cfg(test)]
use sign::{VerifyError, verify};

/// Answers are quoted in errors only this far.
const EXCERPT_CHARS: usize = 200;
/// How much of an answer's body is read for the excerpt; the rest is not waited for.
const EXCERPT_READ_BYTES: usize = 4096;

/// A delivery the receiver accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// The 2xx it answered with.
    pub(crate) status: u16,
}

/// The webhook HTTP client. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    http: reqwest::Client,
}

impl Webhook {
    /// A client that gives up connecting after `connect_timeout` and on a whole attempt
    /// (answer body included) after `request_timeout`.
    pub(crate) fn new(
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, WebhookError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("approval-worker/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            // Following one would send the signed outcome wherever the answer points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError::Client(crate::net::describe(e)))?;
        Ok(Self { http })
    }

    /// POSTs `body` to `url`, signed with `secret` at `now_ms`. `delivery_id` must be the same
    /// for every attempt of one delivery, so the receiver can deduplicate.
    pub(crate) async fn deliver(
        &self,
        url: &str,
        delivery_id: &str,
        body: &[u8],
        secret: &Secret,
        now_ms: i64,
    ) -> Result<Delivered, WebhookError> {
        let target = Url::parse(url)
            .map_err(|e| WebhookError::Invalid(format!("the URL does not parse: {e}")))?;
        let shown = display_url(&target);
        if !matches!(target.scheme(), "http" | "https") {
            return Err(WebhookError::Invalid(format!(
                "{shown}: expected an http(s) URL"
            )));
        }
        let delivery = HeaderValue::from_str(delivery_id).map_err(|_| {
            WebhookError::Invalid(format!("delivery id {delivery_id:?} is not a header value"))
        })?;
        if secret.expose().is_empty() {
            // An empty key signs, but proves nothing to the receiver.
            return Err(WebhookError::Invalid(
                "the signing secret is empty".to_owned(),
            ));
        }
        let signature = signature_header(secret.expose().as_bytes(), now_ms, body);

        let started = std::time::Instant::now();
        let sent = self
            .http
            .post(target)
            .header(CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, delivery)
            .header(TIMESTAMP_HEADER, now_ms.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                // Connect (DNS, TLS handshake) and builder errors happen before any byte
                // of the request leaves.
                let sent = !(e.is_connect() || e.is_builder());
                let detail = crate::secret::redact(&crate::net::describe(e), &[secret.expose()]);
                debug!(url = %shown, %detail, "webhook not reached");
                return Err(WebhookError::Transport {
                    url: shown,
                    sent,
                    detail,
                });
            }
        };
        let status = response.status().as_u16();
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        debug!(url = %shown, delivery_id, status, elapsed_ms, "webhook answered");
        if response.status().is_success() {
            return Ok(Delivered { status });
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| excerpt(&String::from_utf8_lossy(l.as_bytes())));
        let answer = read_start(response).await;
        Err(WebhookError::Status {
            url: shown,
            status,
            excerpt: crate::secret::redact(
                &excerpt(&String::from_utf8_lossy(&answer)),
                &[secret.expose()],
            ),
            location,
        })
    }
}

/// The URL as errors and logs show it: without credentials, query or fragment.
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // Only fails for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// The first bytes of an answer's body; whatever arrived if reading fails.
async fn read_start(mut response: reqwest::Response) -> Vec<u8> {
    let mut start = Vec::new();
    while start.len() < EXCERPT_READ_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => start.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    start
}

/// `text` on one line, at most [`EXCERPT_CHARS`] characters (then `…`).
fn excerpt(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
