//! One Stream connection: the WebSocket handshake, then reading frames, answering pings,
//! handing instance changes to the caller and acking them when the caller answers, until the
//! connection ends. Writes go through a writer task, so a slow socket never stops the reader
//! and a slow caller never stops either.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::USER_AGENT;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::wire::{self, Frame, INSTANCE_CHANGE};
use super::{Ack, Delivery, Responder, StreamStatus, StreamTicket, StreamTiming};

/// Largest frame or message we accept. DingTalk's events are a few KiB; a bigger one is a
/// broken or hostile peer: tungstenite fails the read, the connection ends and is reopened
/// (the event, never acked, comes again and fails again, which the logs show).
pub(super) const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// How long the writer may take to send our close frame when we end a connection.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Frames waiting for the writer. Only acks and pongs queue here; a peer that leaves this
/// many unread is not reading at all, and the connection is dropped.
const OUTGOING_CAPACITY: usize = 1024;

pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What ended a connection, for the log line and the reconnect decision.
#[derive(Debug)]
pub(super) enum End {
    /// Our shutdown token was cancelled.
    Shutdown,
    /// The caller dropped the receiving end of the delivery channel.
    ReceiverGone,
    /// SYSTEM `disconnect`: the gateway moves us elsewhere.
    ServerDisconnect(String),
    /// The peer closed the socket (with a close frame or without).
    Closed(String),
    /// Reading or writing failed (reset, oversized message, protocol error).
    Failed(String),
    /// Nothing arrived for the idle timeout, not even a pong.
    Idle,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown => f.write_str("shutting down"),
            Self::ReceiverGone => f.write_str("nobody receives instance changes any more"),
            Self::ServerDisconnect(reason) => write!(f, "DingTalk asked to reconnect: {reason}"),
            Self::Closed(reason) => write!(f, "DingTalk closed the connection: {reason}"),
            Self::Failed(reason) => write!(f, "connection failed: {reason}"),
            Self::Idle => f.write_str("nothing received for too long"),
        }
    }
}

/// Opens the WebSocket at the ticket's endpoint (`ws://` or `wss://`). The error text never
/// carries the ticket.
pub(super) async fn connect(
    ticket: &StreamTicket,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Socket, String> {
    let secret = ticket.ticket.expose();
    let scrub = |text: String| crate::secret::redact(&text, &[secret]);
    let mut url = reqwest::Url::parse(&ticket.endpoint)
        .map_err(|e| format!("endpoint {:?}: {e}", ticket.endpoint))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(format!(
            "endpoint {:?}: expected a ws:// or wss:// URL",
            ticket.endpoint
        ));
    }
    url.query_pairs_mut().append_pair("ticket", secret);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| scrub(e.to_string()))?;
    request.headers_mut().insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("approval-worker/", env!("CARGO_PKG_VERSION"))),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let connector = Connector::Rustls(Arc::clone(tls));
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(connector),
    )
    .await
    .map_err(|e| scrub(describe(&e)))?;
    Ok(socket)
}

/// TLS for `wss://` with the ring provider named explicitly (see Cargo.toml) and the same
/// root certificates reqwest trusts.
pub(super) fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An ack that waits for the caller's answer.
type PendingAck = Pin<Box<dyn Future<Output = String> + Send>>;

/// One connection's loop; returns why it ended.
pub(super) struct Session<'a> {
    pub(super) deliveries: &'a mpsc::Sender<Delivery>,
    pub(super) shutdown: &'a CancellationToken,
    pub(super) status: &'a StreamStatus,
    pub(super) timing: &'a StreamTiming,
}

impl Session<'_> {
    pub(super) async fn run(&self, socket: Socket) -> End {
        let (sink, mut source) = socket.split();
        let (outgoing, queue) = mpsc::channel(OUTGOING_CAPACITY);
        let mut writer = tokio::spawn(write_frames(sink, queue));
        let mut writer_done = false;
        let mut pending: FuturesUnordered<PendingAck> = FuturesUnordered::new();
        let mut keepalive = tokio::time::interval(self.timing.keepalive);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();

        let end = loop {
            let step = tokio::select! {
                () = self.shutdown.cancelled() => Err(End::Shutdown),
                written = &mut writer, if !writer_done => {
                    writer_done = true;
                    let reason = match written {
                        Ok(Err(e)) => describe(&e),
                        _ => "writer stopped".to_owned(),
                    };
                    Err(End::Failed(reason))
                }
                Some(ack) = pending.next(), if !pending.is_empty() => {
                    queue_frame(&outgoing, Message::text(ack))
                }
                message = source.next() => {
                    last_heard = Instant::now();
                    match message {
                        None => Err(End::Closed("end of stream".to_owned())),
                        Some(Err(e)) => Err(End::Failed(describe(&e))),
                        Some(Ok(message)) => self.on_message(message, &outgoing, &mut pending),
                    }
                }
                _ = keepalive.tick() => {
                    let silent = last_heard.elapsed();
                    if silent >= self.timing.idle_timeout {
                        Err(End::Idle)
                    } else if silent >= self.timing.keepalive {
                        queue_frame(&outgoing, Message::Ping(Default::default()))
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(end) = step {
                break end;
            }
        };

        // A polite close when we end it; the writer gets a moment to send it, no more.
        if matches!(end, End::Shutdown | End::ReceiverGone | End::Idle) {
            let _ = outgoing.try_send(Message::Close(None));
        }
        drop(outgoing);
        if !writer_done
            && tokio::time::timeout(CLOSE_GRACE, &mut writer)
                .await
                .is_err()
        {
            writer.abort();
        }
        end
    }

    /// Handles one message; `Err` ends the connection.
    fn on_message(
        &self,
        message: Message,
        outgoing: &mpsc::Sender<Message>,
        pending: &mut FuturesUnordered<PendingAck>,
    ) -> Result<(), End> {
        match message {
            Message::Text(text) => match serde_json::from_str::<Frame>(text.as_str()) {
                Ok(frame) => self.on_frame(&frame, outgoing, pending),
                Err(e) => {
                    warn!(error = %e, frame = %wire::excerpt(text.as_str()), "ignoring an unreadable Stream frame");
                    Ok(())
                }
            },
            Message::Close(frame) => Err(End::Closed(frame.map_or_else(
                || "no close frame".to_owned(),
                |f| format!("{} {}", f.code, f.reason),
            ))),
            // tungstenite answers pings itself; binary frames are not part of the protocol.
            Message::Binary(bytes) => {
                debug!(bytes = bytes.len(), "ignoring a binary Stream frame");
                Ok(())
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    fn on_frame(
        &self,
        frame: &Frame,
        outgoing: &mpsc::Sender<Message>,
        pending: &mut FuturesUnordered<PendingAck>,
    ) -> Result<(), End> {
        let Some(message_id) = frame.header("messageId").map(str::to_owned) else {
            warn!(kind = %frame.kind, "ignoring a Stream frame without messageId: it cannot be acked");
            return Ok(());
        };
        let topic = frame.header("topic").unwrap_or_default();
        let reply = |data: &str| queue_frame(outgoing, Message::text(wire::ack(&message_id, data)));
        let answer = |ack| queue_frame(outgoing, Message::text(wire::event_ack(&message_id, ack)));
        match frame.kind.as_str() {
            "SYSTEM" if topic == "disconnect" => {
                Err(End::ServerDisconnect(wire::disconnect_reason(&frame.data)))
            }
            "SYSTEM" => {
                if topic != "ping" {
                    debug!(topic, "acking a SYSTEM Stream frame of an unknown topic");
                }
                reply(&frame.data)
            }
            "EVENT" if frame.header("eventType") == Some(INSTANCE_CHANGE) => {
                match wire::instance_change(frame) {
                    Ok(change) => self.deliver(change, message_id, outgoing, pending),
                    Err(reason) => {
                        // Redelivering an event we can never read would repeat forever.
                        warn!(
                            event_id = frame.header("eventId").unwrap_or_default(),
                            %reason,
                            data = %wire::excerpt(&frame.data),
                            "acking an unreadable approval instance event without handling it"
                        );
                        answer(Ack::Success)
                    }
                }
            }
            kind => {
                debug!(
                    kind,
                    event_type = frame.header("eventType").unwrap_or_default(),
                    "acking a Stream frame nobody here handles"
                );
                answer(Ack::Success)
            }
        }
    }

    /// Hands one change to the caller; its ack waits in `pending` for the caller's answer.
    fn deliver(
        &self,
        change: super::InstanceChange,
        message_id: String,
        outgoing: &mpsc::Sender<Message>,
        pending: &mut FuturesUnordered<PendingAck>,
    ) -> Result<(), End> {
        let (tx, rx) = oneshot::channel();
        let event_id = change.event_id.clone();
        let delivery = Delivery {
            change,
            responder: Responder(tx),
        };
        match self.deliveries.try_send(delivery) {
            Ok(()) => {
                self.status.count_event();
                pending.push(Box::pin(async move {
                    let answer = rx.await.unwrap_or(Ack::Later);
                    wire::event_ack(&message_id, answer)
                }));
                Ok(())
            }
            // Waiting here would stop pings and acks; DingTalk keeps the event for us instead.
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(%event_id, "instance changes are not taken fast enough; asking DingTalk to resend one later");
                queue_frame(
                    outgoing,
                    Message::text(wire::event_ack(&message_id, Ack::Later)),
                )
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(End::ReceiverGone),
        }
    }
}

/// Queues a frame for the writer; a full queue means the peer stopped reading.
fn queue_frame(outgoing: &mpsc::Sender<Message>, message: Message) -> Result<(), End> {
    outgoing.try_send(message).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => {
            End::Failed(format!("{OUTGOING_CAPACITY} frames wait to be written"))
        }
        mpsc::error::TrySendError::Closed(_) => End::Failed("writer stopped".to_owned()),
    })
}

/// Writes queued frames until the queue closes, then closes the socket's sending side.
async fn write_frames(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut queue: mpsc::Receiver<Message>,
) -> Result<(), WsError> {
    while let Some(message) = queue.recv().await {
        let closing = matches!(message, Message::Close(_));
        sink.send(message).await?;
        if closing {
            return Ok(());
        }
    }
    sink.close().await
}

/// A tungstenite error and its causes on one line.
fn describe(error: &WsError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
