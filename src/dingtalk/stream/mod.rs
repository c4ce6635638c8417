//! DingTalk Stream mode (§5.13): one long-lived WebSocket on which DingTalk pushes events,
//! and the approval instance changes it carries, handed to the caller with a responder.
//!
//! Start it with [`Stream::new`] and [`Stream::run`], giving a channel for [`Delivery`]s and a
//! shutdown token; it reconnects by itself until the token is cancelled. The caller answers
//! every delivery with [`Ack::Success`] once the change is stored, or [`Ack::Later`] (or by
//! dropping it) to have DingTalk send it again; only that answer reaches DingTalk, so a change
//! is never lost between the socket and the caller's commit. DingTalk redelivers with the same
//! `event_id`, and sometimes does even after a correct ack: the caller deduplicates on it.
//!
//! Knows nothing of jobs; `run.rs` holds the reconnect loop, `session.rs` one connection,
//! `wire.rs` the frames.

mod run;
mod session;
mod wire;

use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::DingTalk;
use super::call::{Host, Request};
use super::error::{DingTalkError, STREAM_OPEN_ENDPOINT};
use crate::secret::Secret;
pub(crate) use run::Stream;
use wire::{OpenBody, OpenResponse, SUBSCRIPTIONS};

/// What the gateway handed out for one connection: where to connect, and the single-use
/// ticket that admits us there.
#[derive(Debug, Clone)]
pub(crate) struct StreamTicket {
    /// `wss://…/connect`, another host than the API; always the one returned.
    pub(crate) endpoint: String,
    /// Short-lived and single-use, but a credential all the same: never logged.
    pub(crate) ticket: Secret,
}

/// One approval instance change (`bpms_instance_change`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceChange {
    /// Stays the same across redeliveries: the key to deduplicate on.
    pub(crate) event_id: String,
    pub(crate) instance_id: String,
    pub(crate) process_code: Option<String>,
    pub(crate) kind: ChangeKind,
    /// `agree` or `refuse` (lowercase) on [`ChangeKind::Finish`].
    pub(crate) result: Option<String>,
    /// When the instance finished, unix ms.
    pub(crate) finish_time_ms: Option<i64>,
    /// When DingTalk raised the event (the `eventBornTime` header), unix ms.
    pub(crate) born_at_ms: Option<i64>,
}

/// What happened to the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Start,
    /// Decided: see [`InstanceChange::result`].
    Finish,
    /// Withdrawn by the originator or stopped by an admin.
    Terminate,
    Delete,
    /// A type DingTalk does not document, lowercased (empty when missing).
    Other(String),
}

impl ChangeKind {
    /// The wire spelling.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Start => "start",
            Self::Finish => "finish",
            Self::Terminate => "terminate",
            Self::Delete => "delete",
            Self::Other(other) => other,
        }
    }
}

/// The caller's answer to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ack {
    /// Stored: DingTalk may forget it.
    Success,
    /// Not stored: DingTalk sends it again later (seconds to minutes).
    Later,
}

/// A change waiting for the caller's answer.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) change: InstanceChange,
    pub(crate) responder: Responder,
}

impl Delivery {
    /// Answers DingTalk (see [`Responder::ack`]).
    pub(crate) fn ack(self, answer: Ack) {
        self.responder.ack(answer);
    }
}

/// Sends the ack of one delivery. Dropping it unanswered answers [`Ack::Later`].
#[derive(Debug)]
pub(crate) struct Responder(oneshot::Sender<Ack>);

impl Responder {
    /// Sends the ack frame. After the connection that carried the event is gone this does
    /// nothing: DingTalk redelivers unacked events on the next one.
    pub(crate) fn ack(self, answer: Ack) {
        // The receiver is gone only with its connection; see above.
        let _ = self.0.send(answer);
    }
}

/// A moment's view of the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// Whether a socket is open now.
    pub(crate) connected: bool,
    /// Sockets opened so far.
    pub(crate) connections: u64,
    /// Instance changes handed to the caller, redeliveries included.
    pub(crate) events: u64,
}

impl StreamState {
    /// Sockets opened after the first.
    pub(crate) fn reconnects(&self) -> u64 {
        self.connections.saturating_sub(1)
    }
}

/// The stream's state, for metrics, health checks and tests, shared with the running stream;
/// [`StreamStatus::subscribe`] lets one wait for a change instead of polling.
#[derive(Debug)]
pub(crate) struct StreamStatus(watch::Sender<StreamState>);

impl Default for StreamStatus {
    fn default() -> Self {
        Self(watch::Sender::new(StreamState::default()))
    }
}

impl StreamStatus {
    /// The state now.
    pub(crate) fn now(&self) -> StreamState {
        *self.0.borrow()
    }

    /// Whether a socket is open now.
    #[cfg(test)]
    pub(crate) fn connected(&self) -> bool {
        self.now().connected
    }

    /// Sockets opened after the first.
    pub(crate) fn reconnects(&self) -> u64 {
        self.now().reconnects()
    }

    /// Instance changes handed to the caller, redeliveries included.
    #[cfg(test)]
    pub(crate) fn events(&self) -> u64 {
        self.now().events
    }

    /// Sees every change from now on.
    #[cfg(test)]
    pub(crate) fn subscribe(&self) -> watch::Receiver<StreamState> {
        self.0.subscribe()
    }

    fn set_connected(&self, connected: bool) {
        self.0.send_modify(|state| {
            state.connected = connected;
            if connected {
                state.connections += 1;
            }
        });
    }

    fn count_event(&self) {
        self.0.send_modify(|state| state.events += 1);
    }
}

/// Why the stream stopped for good (it never stops for anything that may pass).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// The gateway refused the app key and secret: no retry can help until an operator fixes
    /// them.
    #[error(
        "DingTalk refused app key {app_key} for a Stream connection; check app_key and \
         app_secret: {source}"
    )]
    CredentialsRejected {
        app_key: String,
        #[source]
        source: DingTalkError,
    },
    /// rustls would not set up (no usable protocol version in the crypto provider).
    #[error("cannot set up TLS for Stream connections: {0}")]
    Tls(#[source] rustls::Error),
}

/// Backoff and liveness timings; the defaults suit DingTalk, tests shorten them.
#[derive(Debug, Clone)]
pub(crate) struct StreamTiming {
    /// Wait before the second attempt after a failure; doubles per failure.
    pub(crate) first_retry: Duration,
    /// Longest wait between attempts.
    pub(crate) max_retry: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub(crate) stable_after: Duration,
    /// Silence after which we ping the gateway ourselves.
    pub(crate) keepalive: Duration,
    /// Silence after which the connection counts as dead (a half-open TCP connection
    /// otherwise looks healthy forever).
    pub(crate) idle_timeout: Duration,
}

impl Default for StreamTiming {
    fn default() -> Self {
        Self {
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

impl DingTalk {
    /// §5.13: asks the gateway for a connection (endpoint and single-use ticket) with the
    /// app's key and secret. A 401 `authFailed` is [`DingTalkError::is_credentials_rejected`].
    pub(crate) async fn open_stream(&self) -> Result<StreamTicket, DingTalkError> {
        let settings = &self.inner.settings;
        let body = OpenBody {
            client_id: &settings.app_key,
            client_secret: settings.app_secret.expose(),
            subscriptions: SUBSCRIPTIONS,
            ua: concat!("approval-worker/", env!("CARGO_PKG_VERSION")),
            local_ip: local_ip(&settings.api_base, settings.connect_timeout).await,
        };
        let request = Request::post(
            STREAM_OPEN_ENDPOINT,
            Host::Api,
            "/v1.0/gateway/connections/open",
            &body,
            true,
        )?
        .content_type("application/json");
        let response: OpenResponse = self.call_with_app_credentials(&request).await?;
        if response.endpoint.is_empty() || response.ticket.is_empty() {
            return Err(DingTalkError::Decode {
                endpoint: STREAM_OPEN_ENDPOINT,
                status: 200,
                detail: "endpoint or ticket is empty".to_owned(),
            });
        }
        Ok(StreamTicket {
            endpoint: response.endpoint,
            ticket: Secret::new(response.ticket),
        })
    }
}

/// The address this host reaches the API from, which the SDKs report as `localIp`; empty
/// when it cannot be told. Connecting a UDP socket sends nothing, it only picks the route.
async fn local_ip(api_base: &str, limit: Duration) -> String {
    let Ok(url) = reqwest::Url::parse(api_base) else {
        return String::new();
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return String::new();
    };
    let route = async {
        let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.ok()?;
        socket.connect((host, port)).await.ok()?;
        socket.local_addr().ok().map(|a| a.ip().to_string())
    };
    tokio::time::timeout(limit, route)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
