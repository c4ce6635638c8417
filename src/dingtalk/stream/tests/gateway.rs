//! The gateway side of the Stream tests: the fake DingTalk answers connections/open with a
//! `ws://` endpoint on 127.0.0.1 and numbered tickets; each accepted socket goes to the test,
//! which speaks §5.13 on it itself.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request as WsRequest, Response};
use tokio_util::sync::CancellationToken;

use crate::dingtalk::fake::{Fake, Reply};
use crate::dingtalk::stream::{
    Delivery, Stream, StreamError, StreamState, StreamStatus, StreamTiming,
};

pub(super) const OPEN_PATH: &str = "/v1.0/gateway/connections/open";
/// Longest wait for anything the test expects to happen.
pub(super) const PATIENCE: Duration = Duration::from_secs(5);

/// The n-th ticket the gateway hands out (from 0); characters that need URL encoding on
/// purpose.
pub(super) fn ticket(n: usize) -> String {
    format!("tk/{n}+é")
}

/// A socket the client opened, with the ticket it presented.
pub(super) struct Peer {
    pub(super) ticket: String,
    pub(super) ws: WebSocketStream<TcpStream>,
}

impl Peer {
    pub(super) async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// The next text frame as JSON, skipping WebSocket pings and pongs.
    pub(super) async fn next_json(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("no frame from the client")
                .expect("socket ended")
                .unwrap();
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads until the client closes the socket.
    pub(super) async fn closed(&mut self) -> Option<Message> {
        let mut last = None;
        tokio::time::timeout(PATIENCE, async {
            while let Some(Ok(message)) = self.ws.next().await {
                last = Some(message);
            }
        })
        .await
        .expect("the client kept the socket open");
        last
    }
}

pub(super) struct Gateway {
    pub(super) fake: Fake,
    peers: mpsc::UnboundedReceiver<Peer>,
}

impl Gateway {
    pub(super) async fn start() -> Self {
        Self::with_endpoints(|_, ws| ws.to_owned()).await
    }

    /// `endpoint(n, ws_url)` chooses the endpoint of the n-th opening.
    pub(super) async fn with_endpoints(endpoint: fn(usize, &str) -> String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_url = format!("ws://{}/connect", listener.local_addr().unwrap());
        let (tx, peers) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut uri = String::new();
                // The error type is tungstenite's, not ours to shrink.
                #[allow(clippy::result_large_err)]
                let callback = |request: &WsRequest, response: Response| {
                    uri = request.uri().to_string();
                    Ok(response)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    continue;
                };
                let query = uri.split_once('?').map(|(_, q)| q).unwrap_or_default();
                let ticket = reqwest::Url::parse(&format!("http://x/?{query}"))
                    .unwrap()
                    .query_pairs()
                    .find(|(k, _)| k == "ticket")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let _ = tx.send(Peer { ticket, ws });
            }
        });
        let fake = Fake::start(move |seen| {
            assert_eq!(seen.path, OPEN_PATH);
            Reply::json(
                200,
                json!({"endpoint": endpoint(seen.nth, &ws_url), "ticket": ticket(seen.nth)}),
            )
        })
        .await;
        Self { fake, peers }
    }

    pub(super) async fn next_peer(&mut self) -> Peer {
        tokio::time::timeout(PATIENCE, self.peers.recv())
            .await
            .expect("the client did not connect")
            .unwrap()
    }

    pub(super) fn opens(&self) -> usize {
        self.fake.count(OPEN_PATH)
    }

    pub(super) fn run(&self, capacity: usize, timing: StreamTiming) -> Running {
        let stream = Stream::new(self.fake.client()).with_timing(timing);
        let status = stream.status();
        let (tx, deliveries) = mpsc::channel(capacity);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(stream.run(tx, shutdown.clone()));
        Running {
            deliveries,
            shutdown,
            task,
            status,
        }
    }
}

pub(super) struct Running {
    pub(super) deliveries: mpsc::Receiver<Delivery>,
    pub(super) shutdown: CancellationToken,
    task: JoinHandle<Result<(), StreamError>>,
    pub(super) status: Arc<StreamStatus>,
}

impl Running {
    pub(super) async fn next_delivery(&mut self) -> Delivery {
        tokio::time::timeout(PATIENCE, self.deliveries.recv())
            .await
            .expect("nothing delivered")
            .unwrap()
    }

    /// Waits until the stream's state satisfies `condition`.
    pub(super) async fn until(&self, condition: impl FnMut(&StreamState) -> bool) {
        let mut state = self.status.subscribe();
        tokio::time::timeout(PATIENCE, state.wait_for(condition))
            .await
            .expect("the stream never got there")
            .unwrap();
    }

    pub(super) async fn finished(self) -> Result<(), StreamError> {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the stream did not stop")
            .unwrap()
    }
}

/// Quick retries; nothing else times out during a test unless it says so.
pub(super) fn quick() -> StreamTiming {
    StreamTiming {
        first_retry: Duration::from_millis(20),
        max_retry: Duration::from_millis(200),
        stable_after: Duration::from_secs(60),
        keepalive: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(120),
    }
}

pub(super) fn ping(message_id: &str, data: &str) -> Value {
    json!({"specVersion": "1.0", "type": "SYSTEM",
        "headers": {"topic": "ping", "messageId": message_id, "contentType": "application/json", "time": "1661946720000"},
        "data": data})
}

pub(super) fn event(message_id: &str, event_type: &str, data: &str) -> Value {
    json!({"specVersion": "1.0", "type": "EVENT",
        "headers": {"topic": "*", "messageId": message_id, "contentType": "application/json",
            "eventType": event_type, "eventId": format!("ev-{message_id}"), "eventBornTime": "1661946720500",
            "eventCorpId": "ding-corp", "time": "1661946720600"},
        "data": data})
}

pub(super) fn finish(message_id: &str, instance_id: &str) -> Value {
    let data = json!({"processInstanceId": instance_id, "processCode": "PROC-1", "type": "finish",
        "result": "agree", "finishTime": 1661946720000_i64, "createTime": 1661946000000_i64});
    event(message_id, "bpms_instance_change", &data.to_string())
}

/// The ack an EVENT frame gets.
pub(super) fn event_ack(message_id: &str, status: &str) -> Value {
    json!({"code": 200, "headers": {"messageId": message_id, "contentType": "application/json"},
        "message": "OK", "data": json!({"status": status}).to_string()})
}
