//! DingTalk's Stream mode: `connections/open` hands out single-use tickets, a WebSocket
//! listener on its own port (DingTalk's is another host than the API) pings clients and
//! pushes `bpms_instance_change` events until they are acked, with faults for tests.

mod frames;
mod gateway;
mod open;
mod socket;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

pub(super) use gateway::Gateway;
pub(super) use open::open;
pub(super) use socket::{bind, pump, serve};

/// How the Stream gateway behaves.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Where the WebSocket endpoint listens (not the API's port); port 0 picks a free one.
    pub bind: SocketAddr,
    /// Whether instances publish `bpms_instance_change` events at all. The benchmark's
    /// sandbox turns this off: nothing connects there, and undelivered events are kept.
    pub publish_events: bool,
    /// How long a ticket from `connections/open` may wait before its WebSocket connects.
    pub ticket_ttl: Duration,
    /// Time between SYSTEM `ping` frames on each connection.
    pub ping_interval: Duration,
    /// How long a delivered event waits for its ack before it is redelivered.
    pub ack_timeout: Duration,
    /// How long an event acked `LATER` waits before it is redelivered.
    pub later_delay: Duration,
    /// How long a connection stays open after its SYSTEM `disconnect` frame.
    pub disconnect_grace: Duration,
    /// Largest frame (and message) a client may send; a larger one closes its connection
    /// with 1009, as WebSocket servers do.
    pub max_frame_bytes: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            publish_events: true,
            ticket_ttl: Duration::from_secs(90),
            ping_interval: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            later_delay: Duration::from_secs(10),
            disconnect_grace: Duration::from_secs(2),
            max_frame_bytes: 64 * 1024,
        }
    }
}

/// What became of one delivery of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Sent; no ack yet.
    Pending,
    /// Acked `SUCCESS` (or code 200 without a status): the event is done.
    Success,
    /// Acked `LATER` or with a failure code: redelivered after `later_delay`.
    Later,
    /// No ack within `ack_timeout`: redelivered.
    TimedOut,
    /// The connection closed before the ack: redelivered on another connection.
    Lost,
}

/// One delivery (one `messageId`) of an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamDelivery {
    /// New for every delivery.
    pub message_id: String,
    /// The connection it went to (the `connectionId` header).
    pub connection_id: String,
    /// What the client answered.
    pub status: AckStatus,
    /// The ack's `code`, once acked.
    pub ack_code: Option<i64>,
}

/// An event the gateway published, with every delivery of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamEvent {
    /// Stays the same across redeliveries.
    pub event_id: String,
    /// `bpms_instance_change`.
    pub event_type: String,
    /// The event's data (sent as a JSON string in the frame's `data`).
    pub data: serde_json::Value,
    /// Deliveries in the order they were sent.
    pub deliveries: Vec<StreamDelivery>,
    /// Whether a delivery was acked `SUCCESS`.
    pub acked: bool,
}

impl StreamEvent {
    /// `data.type`: `start`, `finish`, `terminate` or `delete`.
    pub fn kind(&self) -> &str {
        self.data["type"].as_str().unwrap_or_default()
    }

    /// `data.processInstanceId`.
    pub fn instance_id(&self) -> &str {
        self.data["processInstanceId"].as_str().unwrap_or_default()
    }
}

/// One SYSTEM `ping` sent, and whether the client answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamPing {
    /// The connection pinged.
    pub connection_id: String,
    /// The ping's `messageId`.
    pub message_id: String,
    /// An ack with this `messageId` came back.
    pub answered: bool,
    /// The ack's `data` equalled the ping's (compared as JSON).
    pub echoed: bool,
}

/// Counters of the Stream gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StreamStats {
    /// Tickets handed out by `connections/open`.
    pub tickets_issued: u64,
    /// Tickets a WebSocket connected with.
    pub tickets_used: u64,
    /// Connect attempts refused (unknown, used or expired ticket).
    pub tickets_refused: u64,
    /// WebSocket connections open now.
    pub open_connections: usize,
    /// Connections accepted so far.
    pub connections_accepted: u64,
    /// Client frames that were not an ack (not JSON, binary, no `headers.messageId`).
    pub malformed_frames: u64,
    /// Client frames over `max_frame_bytes` (their connection was closed).
    pub oversized_frames: u64,
    /// Acks for a `messageId` never sent, or no longer awaited (late after a timeout).
    pub stray_acks: u64,
}

impl super::Sandbox {
    /// `ws://127.0.0.1:PORT/connect`, what `connections/open` sends clients to: a port of
    /// its own, as DingTalk's endpoint is another host than its API.
    pub fn stream_endpoint(&self) -> String {
        self.shared.stream.endpoint().to_owned()
    }

    /// Every event published so far, oldest first, with its deliveries and their acks.
    pub fn stream_events(&self) -> Vec<StreamEvent> {
        self.shared.stream.events()
    }

    /// Every SYSTEM `ping` sent so far and whether it was answered.
    pub fn stream_pings(&self) -> Vec<StreamPing> {
        self.shared.stream.pings()
    }

    /// Tickets, connections and the frames the gateway could not use.
    pub fn stream_stats(&self) -> StreamStats {
        self.shared.stream.stats()
    }

    /// Sends every connection a SYSTEM `disconnect` frame with `reason` and closes it after
    /// `disconnect_grace` (it gets no new events meanwhile); returns how many were told.
    pub fn stream_disconnect(&self, reason: &str) -> usize {
        self.shared.stream.disconnect_all(reason)
    }

    /// Drops every connection's socket without a close frame, as a network failure would;
    /// events they had not acked are redelivered. Returns how many.
    pub fn stream_drop_connections(&self) -> usize {
        self.shared.stream.drop_all()
    }

    /// The next event delivered goes out twice at once (same `eventId`, two `messageId`s).
    pub fn stream_duplicate_next_event(&self) {
        self.shared.stream.duplicate_next();
    }

    /// From now on every delivery and redelivery waits `by` first; zero turns it off.
    pub fn stream_delay_events(&self, by: Duration) {
        self.shared.stream.set_delay(by);
    }
}
