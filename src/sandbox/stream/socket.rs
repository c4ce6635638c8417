//! The WebSocket side of the gateway: its own listener (DingTalk's is another host than
//! the API), the ticket check before the upgrade, one task per connection (frames out,
//! acks in, pings), and the pump that routes events.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::super::error;
use super::super::state::Shared;
use super::super::wire;
use super::StreamOptions;
use super::gateway::Outbound;

/// Frames this many times over the limit are not even read: the WebSocket library ends
/// the connection itself. Between the limit and this, the gateway closes with 1009.
const HARD_LIMIT_FACTOR: usize = 16;

/// Binds the Stream listener; returns it with the endpoint clients are given.
pub(crate) async fn bind(options: &StreamOptions) -> io::Result<(TcpListener, String)> {
    let tcp = TcpListener::bind(options.bind).await?;
    let addr = tcp.local_addr()?;
    let url_addr = if addr.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
    } else {
        addr
    };
    Ok((tcp, format!("ws://{url_addr}/connect")))
}

/// Serves `GET /connect?ticket=…` until the sandbox stops.
pub(crate) fn serve(shared: Arc<Shared>, tcp: TcpListener) -> JoinHandle<()> {
    let closing = shared.closing.clone();
    let app = Router::new()
        .route("/connect", get(connect))
        .fallback(|| async { error::not_found() })
        .with_state(shared);
    tokio::spawn(async move {
        let server = axum::serve(tcp, app).with_graceful_shutdown(closing.cancelled_owned());
        if let Err(e) = server.await {
            tracing::debug!("sandbox: stream listener ended with {e}");
        }
    })
}

/// Runs the gateway's routing: deliveries, redeliveries and ack timeouts.
pub(crate) fn pump(shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let next = shared.stream.pump_once();
            let timer = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shared.closing.cancelled() => break,
                () = shared.stream.woken() => {}
                () = timer => {}
            }
        }
    })
}

/// The ticket is checked, and used up, before the upgrade: a refused client gets an HTTP
/// error, not a WebSocket that closes.
async fn connect(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = uri.query().map(wire::decode_form).unwrap_or_default();
    let Some(ticket) = query.get("ticket").filter(|t| !t.is_empty()) else {
        return error::api(400, "invalidParameter", "ticket is required");
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return error::api(
                400,
                "invalidParameter",
                format!("not a WebSocket upgrade: {rejection}"),
            );
        }
    };
    let now = shared.lock().now();
    let events = match shared.stream.claim_ticket(ticket, now) {
        Ok(events) => events,
        Err(refusal) => return error::api(401, "invalidTicket", refusal.message()),
    };
    let hard_limit = shared
        .stream
        .options
        .max_frame_bytes
        .saturating_mul(HARD_LIMIT_FACTOR);
    upgrade
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| connection(shared, socket, events))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// One client connection, from upgrade to close.
async fn connection(shared: Arc<Shared>, mut socket: WebSocket, events: bool) {
    let gateway = &shared.stream;
    let options = &gateway.options;
    let (tx, mut outbound) = mpsc::unbounded_channel();
    let (key, connection_id) = gateway.register(tx, events);
    tracing::debug!(%connection_id, events, "sandbox: stream connection open");
    let mut pings = tokio::time::interval_at(
        Instant::now() + options.ping_interval,
        options.ping_interval,
    );
    let mut close_at: Option<Instant> = None;
    loop {
        let closing_time = async {
            match close_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shared.closing.cancelled() => {
                let _ = socket.send(close(1001, "sandbox stopping")).await;
                break;
            }
            () = closing_time => {
                let _ = socket.send(close(1000, "disconnect")).await;
                break;
            }
            received = socket.recv() => match received {
                // Closed, or a read error (such as a frame over the hard limit).
                None | Some(Err(_)) => break,
                Some(Ok(Message::Text(text))) if text.len() > options.max_frame_bytes => {
                    gateway.oversized();
                    let _ = socket.send(close(1009, "frame too large")).await;
                    break;
                }
                Some(Ok(Message::Text(text))) => gateway.client_text(key, text.as_str()),
                Some(Ok(Message::Binary(_))) => gateway.malformed(),
                // Pings are answered by the library; a close's answer goes out on the next
                // read, which then ends the loop.
                Some(Ok(_)) => {}
            },
            out = outbound.recv() => match out {
                Some(Outbound::Frame(text)) => {
                    if socket.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Disconnect(text)) => {
                    if socket.send(Message::text(text)).await.is_err() {
                        break;
                    }
                    close_at = Some(Instant::now() + options.disconnect_grace);
                }
                // Dropping the socket closes TCP without a WebSocket close.
                Some(Outbound::Drop) | None => break,
            },
            _ = pings.tick() => {
                if socket.send(Message::text(gateway.ping(&connection_id))).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(socket);
    tracing::debug!(%connection_id, "sandbox: stream connection closed");
    gateway.closed(key);
}
