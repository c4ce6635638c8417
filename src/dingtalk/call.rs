//! The shared call machinery: pacing, token attachment, one refresh on a rejected token, and the
//! brief in-call retries; every endpoint method goes through [`DingTalk::call`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use super::DingTalk;
use super::classify::{Answer, decode};
use super::error::{DingTalkError, ErrorClass, MAX_IN_CALL_WAIT, TOKEN_ENDPOINT};
use super::wire::{TokenRequest, TokenResponse};
use crate::secret::Secret;

/// Which DingTalk host a call goes to; they differ in how the token travels and how errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Host {
    /// api.dingtalk.com: token in the `x-acs-dingtalk-access-token` header.
    Api,
    /// oapi.dingtalk.com: token in the `access_token` query parameter, errors in `errcode`.
    Oapi,
}

/// One DingTalk call, ready to be sent (and re-sent) as often as the retry policy allows.
pub(super) struct Request {
    pub(crate) endpoint: &'static str,
    host: Host,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    /// Serialised once; `None` for GET.
    body: Option<Vec<u8>>,
    /// Sent with a body.
    content_type: &'static str,
    /// Whether repeating the call after an ambiguous failure is harmless.
    idempotent: bool,
}

impl Request {
    /// A JSON POST; `idempotent` decides which failures the client may retry on its own.
    pub(super) fn post(
        endpoint: &'static str,
        host: Host,
        path: impl Into<String>,
        body: &impl Serialize,
        idempotent: bool,
    ) -> Result<Self, DingTalkError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| DingTalkError::Config(format!("{endpoint}: cannot encode body: {e}")))?;
        Ok(Self {
            endpoint,
            host,
            method: Method::POST,
            path: path.into(),
            query: Vec::new(),
            body: Some(body),
            content_type: JSON_UTF8,
            idempotent,
        })
    }

    /// A GET without body (always idempotent).
    pub(super) fn get(endpoint: &'static str, host: Host, path: impl Into<String>) -> Self {
        Self {
            endpoint,
            host,
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
            content_type: JSON_UTF8,
            idempotent: true,
        }
    }

    /// Replaces the body's content type (the Stream gateway documents a bare
    /// `application/json`).
    pub(super) fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    /// Adds a query parameter (form-encoded when sent).
    pub(super) fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }
}

/// What the SDK sends with a JSON body.
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// The in-call retry schedule: a few quick tries with jitter, seconds at most in total.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(MAX_IN_CALL_WAIT)
        .with_max_times(3)
        .with_total_delay(Some(Duration::from_secs(4)))
}

/// Waits at least as long as DingTalk asked, when that is still short enough to wait in-call.
fn adjust_delay(error: &DingTalkError, delay: Option<Duration>) -> Option<Duration> {
    match error.class() {
        ErrorClass::Throttled { retry_after } => delay.map(|d| d.max(retry_after)),
        _ => delay,
    }
}

impl DingTalk {
    /// Sends `request` with a valid token, parsing the answer into `T`; retries briefly where
    /// the error type allows it (see [`DingTalkError::retry_in_call`]).
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        request: &Request,
    ) -> Result<T, DingTalkError> {
        // One token refresh per call, however many attempts the retry policy makes.
        let refreshed = AtomicBool::new(false);
        (|| self.attempt(request, &refreshed))
            .retry(backoff())
            .sleep(tokio::time::sleep)
            .when(|e| e.retry_in_call(request.idempotent))
            .adjust(adjust_delay)
            .notify(|e, delay| {
                debug!(endpoint = request.endpoint, error = %e, ?delay, "retrying DingTalk call");
            })
            .await
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        request: &Request,
        refreshed: &AtomicBool,
    ) -> Result<T, DingTalkError> {
        self.inner.limiter.ready(request.endpoint).await?;
        let token = self.token().await?;
        let result = match self.send(request, Some(&token)).await {
            Err(e)
                if e.class() == ErrorClass::TokenInvalid
                    && !refreshed.swap(true, Ordering::AcqRel) =>
            {
                debug!(
                    endpoint = request.endpoint,
                    "access token rejected, refreshing"
                );
                self.inner.tokens.invalidate(&token);
                let token = self.token().await?;
                self.inner.limiter.ready(request.endpoint).await?;
                self.send(request, Some(&token)).await
            }
            other => other,
        };
        if let Err(e) = &result
            && let ErrorClass::Throttled { retry_after } = e.class()
        {
            self.inner.limiter.pause(retry_after);
        }
        result
    }

    /// The current access token, fetched (once, for all concurrent callers) when needed.
    pub(super) async fn token(&self) -> Result<Secret, DingTalkError> {
        self.inner.tokens.get(|| self.fetch_token()).await
    }

    /// §5.1, with in-call retries; not paced, since DingTalk exempts it from the limits we pace.
    async fn fetch_token(&self) -> Result<(Secret, Duration), DingTalkError> {
        let settings = &self.inner.settings;
        let body = TokenRequest {
            app_key: &settings.app_key,
            app_secret: settings.app_secret.expose(),
        };
        let request = Request::post(
            TOKEN_ENDPOINT,
            Host::Api,
            "/v1.0/oauth2/accessToken",
            &body,
            true,
        )?;
        let response: TokenResponse = self.call_with_app_credentials(&request).await?;
        // Checked here so an unusable token is never cached.
        if response.access_token.is_empty()
            || HeaderValue::from_str(&response.access_token).is_err()
        {
            return Err(DingTalkError::Decode {
                endpoint: request.endpoint,
                status: StatusCode::OK.as_u16(),
                detail: "accessToken is empty or not a valid header value".to_owned(),
            });
        }
        Ok((
            Secret::new(response.access_token),
            Duration::from_secs(response.expire_in),
        ))
    }

    /// Sends a call that carries the app key and secret in its body instead of a token (the
    /// token call, opening a stream), retrying briefly like [`DingTalk::call`]. Not paced:
    /// DingTalk exempts the token call from the limits we pace, and streams open rarely.
    pub(super) async fn call_with_app_credentials<T: DeserializeOwned>(
        &self,
        request: &Request,
    ) -> Result<T, DingTalkError> {
        (|| self.send(request, None))
            .retry(backoff())
            .sleep(tokio::time::sleep)
            .when(|e| e.retry_in_call(request.idempotent))
            .adjust(adjust_delay)
            .await
    }

    /// One HTTP exchange. `token` is `None` for the calls that authenticate with the app's
    /// own key and secret.
    async fn send<T: DeserializeOwned>(
        &self,
        request: &Request,
        token: Option<&Secret>,
    ) -> Result<T, DingTalkError> {
        let inner = &self.inner;
        if request.endpoint == TOKEN_ENDPOINT {
            inner.token_fetches.fetch_add(1, Ordering::Relaxed);
        }
        let base = match request.host {
            Host::Api => &inner.settings.api_base,
            Host::Oapi => &inner.settings.oapi_base,
        };
        let url = format!("{}{}", base.trim_end_matches('/'), request.path);
        let mut builder = inner.http.request(request.method.clone(), url);
        let mut query: Vec<(&str, &str)> = request
            .query
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        match (request.host, token) {
            (Host::Api, Some(token)) => {
                let mut value =
                    HeaderValue::from_str(token.expose()).map_err(|_| DingTalkError::Decode {
                        endpoint: TOKEN_ENDPOINT,
                        status: StatusCode::OK.as_u16(),
                        detail: "access token is not a valid header value".to_owned(),
                    })?;
                // Keeps it out of HTTP/2 header compression tables and of header Debug output.
                value.set_sensitive(true);
                builder = builder.header("x-acs-dingtalk-access-token", value);
            }
            (Host::Oapi, Some(token)) => query.push(("access_token", token.expose())),
            (_, None) => {}
        }
        if !query.is_empty() {
            builder = builder.query(&query);
        }
        if let Some(body) = &request.body {
            builder = builder
                .header(CONTENT_TYPE, request.content_type)
                .body(body.clone());
        }

        let secrets = [
            token.map_or("", Secret::expose),
            inner.settings.app_secret.expose(),
        ];
        let started = std::time::Instant::now();
        let (status, result) = self.exchange::<T>(request, builder, token.is_none()).await;
        let result = result.map_err(|e| e.redacted(&secrets));
        inner.calls.record(request.endpoint, &result);
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(_) => debug!(
                endpoint = request.endpoint,
                status, elapsed_ms, "DingTalk call"
            ),
            Err(e) => debug!(
                endpoint = request.endpoint,
                status,
                elapsed_ms,
                error = %e,
                "DingTalk call failed"
            ),
        }
        result
    }

    /// Sends and decodes; also returns the HTTP status (0 when no answer arrived) for logging.
    async fn exchange<T: DeserializeOwned>(
        &self,
        request: &Request,
        builder: reqwest::RequestBuilder,
        credentials_call: bool,
    ) -> (u16, Result<T, DingTalkError>) {
        let endpoint = request.endpoint;
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => return (0, Err(transport_error(endpoint, e))),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return (status.as_u16(), Err(transport_error(endpoint, e))),
        };
        let result = decode(&Answer {
            endpoint,
            host: request.host,
            credentials_call,
            status,
            headers: &headers,
            body: &body,
        });
        (status.as_u16(), result)
    }
}

/// A reqwest failure as a `Transport` error, without the URL (oapi URLs carry the token).
fn transport_error(endpoint: &'static str, error: reqwest::Error) -> DingTalkError {
    // Connect (incl. DNS, TLS handshake) and builder errors happen before any request byte
    // leaves; everything later (timeouts, resets) may have reached DingTalk.
    let sent = !(error.is_connect() || error.is_builder());
    DingTalkError::Transport {
        endpoint,
        sent,
        detail: crate::net::describe(error),
    }
}
