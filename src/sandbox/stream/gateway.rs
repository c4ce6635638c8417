//! The Stream gateway's state: tickets, open connections, published events with their
//! deliveries, pings and acks (handing events to connections is in `routing`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

mod routing;

use super::super::ids;
use super::frames;
use super::{AckStatus, StreamEvent, StreamOptions, StreamPing, StreamStats};

/// What a connection's task is told to do.
pub(crate) enum Outbound {
    /// Send this text frame.
    Frame(String),
    /// Send this SYSTEM `disconnect` frame, then close after the grace period.
    Disconnect(String),
    /// Drop the socket without a close frame, as a network failure would.
    Drop,
}

/// Why a ticket did not open a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketRefusal {
    Unknown,
    Used,
    Expired,
}

impl TicketRefusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            TicketRefusal::Unknown => "ticket is unknown",
            TicketRefusal::Used => "ticket was already used; open a new connection for a new one",
            TicketRefusal::Expired => "ticket has expired; open a new connection for a new one",
        }
    }
}

struct Ticket {
    /// On the sandbox's clock, so `Sandbox::advance_clock` expires tickets as it does tokens.
    expires_at: std::time::Instant,
    used: bool,
    /// The client subscribed to EVENT topics.
    events: bool,
}

struct Conn {
    connection_id: String,
    tx: mpsc::UnboundedSender<Outbound>,
    events: bool,
    /// Told to disconnect: gets no new events.
    draining: bool,
}

struct Event {
    view: StreamEvent,
    data_text: String,
    born_ms: i64,
    in_flight: usize,
}

/// A delivery waiting for its ack.
struct Flight {
    event: usize,
    delivery: usize,
    conn: u64,
    deadline: Instant,
}

/// What a `messageId` the gateway sent belongs to.
enum Sent {
    Event,
    Ping(usize),
    Disconnect,
}

struct Ping {
    view: StreamPing,
    data: Value,
}

#[derive(Default)]
struct Inner {
    tickets: HashMap<String, Ticket>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    /// The connection the last event went to; the next one goes to the one after it.
    last_receiver: u64,
    events: Vec<Event>,
    /// Events to deliver, each no sooner than its instant.
    waiting: Vec<(usize, Instant)>,
    in_flight: HashMap<String, Flight>,
    sent: HashMap<String, Sent>,
    pings: Vec<Ping>,
    duplicate_next: u32,
    delay: Duration,
    stats: StreamStats,
}

/// The gateway: options, the state behind its own mutex, and the pump's wake-up.
pub(crate) struct Gateway {
    pub(crate) options: StreamOptions,
    endpoint: String,
    corp_id: String,
    app_id: String,
    inner: Mutex<Inner>,
    wake: Notify,
    changes: watch::Sender<u64>,
}

impl Gateway {
    pub(crate) fn new(
        options: StreamOptions,
        endpoint: String,
        corp_id: String,
        app_key: &str,
        changes: watch::Sender<u64>,
    ) -> Self {
        // Stable per app, as DingTalk's unified app id is.
        let digest = ids::md5_hex(app_key.as_bytes());
        let app_id = format!(
            "{}-{}-{}-{}-{}",
            &digest[..8],
            &digest[8..12],
            &digest[12..16],
            &digest[16..20],
            &digest[20..]
        );
        Self {
            options,
            endpoint,
            corp_id,
            app_id,
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
            changes,
        }
    }

    /// Never hold the guard across an await.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// `ws://host:port/connect`, what `connections/open` returns.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The corp id events carry.
    pub(crate) fn corp_id(&self) -> &str {
        &self.corp_id
    }

    /// Resolves when the pump has something to do.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    pub(crate) fn issue_ticket(&self, now: std::time::Instant, events: bool) -> String {
        let ticket = ids::uuid_like();
        let mut inner = self.lock();
        inner.tickets.insert(
            ticket.clone(),
            Ticket {
                expires_at: now + self.options.ticket_ttl,
                used: false,
                events,
            },
        );
        inner.stats.tickets_issued += 1;
        drop(inner);
        self.touch();
        ticket
    }

    /// Uses up `ticket`; whether its client subscribed to events.
    pub(crate) fn claim_ticket(
        &self,
        ticket: &str,
        now: std::time::Instant,
    ) -> Result<bool, TicketRefusal> {
        let mut inner = self.lock();
        let outcome = match inner.tickets.get_mut(ticket) {
            None => Err(TicketRefusal::Unknown),
            Some(t) if t.used => Err(TicketRefusal::Used),
            Some(t) if t.expires_at <= now => Err(TicketRefusal::Expired),
            Some(t) => {
                t.used = true;
                Ok(t.events)
            }
        };
        match outcome {
            Ok(_) => inner.stats.tickets_used += 1,
            Err(_) => inner.stats.tickets_refused += 1,
        }
        drop(inner);
        self.touch();
        outcome
    }

    /// A WebSocket is open: returns its key and `connectionId`.
    pub(crate) fn register(
        &self,
        tx: mpsc::UnboundedSender<Outbound>,
        events: bool,
    ) -> (u64, String) {
        let connection_id = ids::uuid_like();
        let mut inner = self.lock();
        inner.next_conn += 1;
        let key = inner.next_conn;
        inner.conns.insert(
            key,
            Conn {
                connection_id: connection_id.clone(),
                tx,
                events,
                draining: false,
            },
        );
        inner.stats.connections_accepted += 1;
        drop(inner);
        self.wake.notify_one();
        self.touch();
        (key, connection_id)
    }

    /// The connection is gone: what it had not acked goes to another one.
    pub(crate) fn closed(&self, conn: u64) {
        let mut inner = self.lock();
        inner.remove_conn(conn, Instant::now());
        drop(inner);
        self.wake.notify_one();
        self.touch();
    }

    /// Whether events are published at all; when not, callers need not build them.
    pub(crate) fn publishes(&self) -> bool {
        self.options.publish_events
    }

    /// A new event, delivered to a connection as soon as one subscribes.
    pub(crate) fn publish(&self, event_type: &str, data: Value, born_ms: i64) {
        if !self.publishes() {
            return;
        }
        let data_text = data.to_string();
        let mut inner = self.lock();
        let index = inner.events.len();
        let not_before = Instant::now() + inner.delay;
        inner.events.push(Event {
            view: StreamEvent {
                event_id: ids::random_hex(16),
                event_type: event_type.to_owned(),
                data,
                deliveries: Vec::new(),
                acked: false,
            },
            data_text,
            born_ms,
            in_flight: 0,
        });
        inner.waiting.push((index, not_before));
        drop(inner);
        self.wake.notify_one();
        self.touch();
    }

    /// A text frame from a client: an ack of an event, a ping or a disconnect, or junk.
    pub(crate) fn client_text(&self, conn: u64, text: &str) {
        let mut inner = self.lock();
        match frames::parse_ack(text) {
            None => inner.stats.malformed_frames += 1,
            Some(ack) => match inner.sent.get(&ack.message_id) {
                Some(Sent::Event) => {
                    let now = Instant::now();
                    let (status, requeue_at) = if ack.succeeded() {
                        (AckStatus::Success, now)
                    } else {
                        (
                            AckStatus::Later,
                            now + self.options.later_delay + inner.delay,
                        )
                    };
                    let awaited = inner
                        .in_flight
                        .get(&ack.message_id)
                        .is_some_and(|f| f.conn == conn);
                    if awaited {
                        inner.settle(&ack.message_id, status, ack.code, requeue_at);
                    } else {
                        inner.stats.stray_acks += 1;
                    }
                }
                Some(Sent::Ping(index)) => {
                    let index = *index;
                    let ping = &mut inner.pings[index];
                    ping.view.answered = true;
                    ping.view.echoed = ack.data == ping.data;
                }
                // Optional, and nothing to do: the connection closes anyway.
                Some(Sent::Disconnect) => {}
                None => inner.stats.stray_acks += 1,
            },
        }
        drop(inner);
        self.wake.notify_one();
        self.touch();
    }

    /// A binary frame, which the protocol never uses.
    pub(crate) fn malformed(&self) {
        self.lock().stats.malformed_frames += 1;
        self.touch();
    }

    /// A frame over the size limit (its connection closes).
    pub(crate) fn oversized(&self) {
        self.lock().stats.oversized_frames += 1;
        self.touch();
    }

    /// A ping frame for `conn`: the frame to send.
    pub(crate) fn ping(&self, connection_id: &str) -> String {
        let message_id = ids::uuid_like();
        let (frame, data) = frames::ping(&message_id, &ids::uuid_like(), ids::now_ms());
        let mut inner = self.lock();
        let index = inner.pings.len();
        inner.pings.push(Ping {
            view: StreamPing {
                connection_id: connection_id.to_owned(),
                message_id: message_id.clone(),
                answered: false,
                echoed: false,
            },
            data: serde_json::from_str(&data).unwrap_or(Value::Null),
        });
        inner.sent.insert(message_id, Sent::Ping(index));
        drop(inner);
        self.touch();
        frame
    }

    /// Tells every connection to disconnect; returns how many were told.
    pub(crate) fn disconnect_all(&self, reason: &str) -> usize {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut told = 0;
        for conn in inner.conns.values_mut().filter(|c| !c.draining) {
            let message_id = ids::uuid_like();
            let frame = frames::disconnect(&message_id, reason, ids::now_ms());
            if conn.tx.send(Outbound::Disconnect(frame)).is_ok() {
                conn.draining = true;
                inner.sent.insert(message_id, Sent::Disconnect);
                told += 1;
            }
        }
        told
    }

    /// Drops every connection's socket; returns how many.
    pub(crate) fn drop_all(&self) -> usize {
        let inner = self.lock();
        inner
            .conns
            .values()
            .filter(|c| c.tx.send(Outbound::Drop).is_ok())
            .count()
    }

    pub(crate) fn duplicate_next(&self) {
        self.lock().duplicate_next += 1;
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    pub(crate) fn events(&self) -> Vec<StreamEvent> {
        self.lock().events.iter().map(|e| e.view.clone()).collect()
    }

    pub(crate) fn pings(&self) -> Vec<StreamPing> {
        self.lock().pings.iter().map(|p| p.view.clone()).collect()
    }

    pub(crate) fn stats(&self) -> StreamStats {
        let inner = self.lock();
        StreamStats {
            open_connections: inner.conns.len(),
            ..inner.stats
        }
    }
}
