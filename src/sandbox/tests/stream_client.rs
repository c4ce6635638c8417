//! A Stream mode client for the gateway tests: opens a connection the way the official
//! SDKs do, reads frames, and acks them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::super::{DEFAULT_APP_KEY, DEFAULT_APP_SECRET};
use super::{Answer, Harness};

/// How long a test waits for a frame that should come.
pub(super) const FRAME_WAIT: Duration = Duration::from_secs(5);

/// `connections/open` as the SDKs send it, with these subscriptions.
pub(super) async fn open_with(h: &Harness, secret: &str, subscriptions: Value) -> Answer {
    let body = json!({
        "clientId": DEFAULT_APP_KEY,
        "clientSecret": secret,
        "subscriptions": subscriptions,
        "ua": "dingtalk-sdk-python/v0.24.3-union",
        "localIp": "127.0.0.1",
    });
    let response = h
        .request(
            reqwest::Method::POST,
            "/v1.0/gateway/connections/open",
            None,
            Some(&body),
        )
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    super::answer(response).await
}

/// A ticket for an EVENT subscriber: `(endpoint, ticket)`.
pub(super) async fn open(h: &Harness) -> (String, String) {
    let answer = open_with(
        h,
        DEFAULT_APP_SECRET,
        json!([{"type": "EVENT", "topic": "*"}]),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    (
        answer.body["endpoint"].as_str().unwrap().to_owned(),
        answer.body["ticket"].as_str().unwrap().to_owned(),
    )
}

/// One WebSocket connection to the gateway.
pub(super) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What reading a frame gave.
#[derive(Debug)]
pub(super) enum Read {
    Frame(Value),
    /// A close frame, with its code.
    Closed(u16),
    /// The socket ended without a close frame (or errored).
    Gone,
}

impl Client {
    /// Opens and connects an EVENT subscriber.
    pub(super) async fn connect(h: &Harness) -> Client {
        let (endpoint, ticket) = open(h).await;
        Client::dial(&endpoint, &ticket).await.unwrap()
    }

    /// Connects with a ticket; the HTTP status when refused, 0 when nothing answered.
    pub(super) async fn dial(endpoint: &str, ticket: &str) -> Result<Client, u16> {
        let url = format!("{endpoint}?ticket={ticket}");
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(_) => Err(0),
        }
    }

    /// The next text frame, close, or end of the socket.
    pub(super) async fn read(&mut self) -> Read {
        loop {
            let next = tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .expect("no frame in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Read::Frame(serde_json::from_str(text.as_str()).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Read::Closed(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Read::Gone,
            }
        }
    }

    /// The next frame of `type`, skipping others (pings, when waiting for events).
    pub(super) async fn next(&mut self, kind: &str) -> Value {
        loop {
            match self.read().await {
                Read::Frame(frame) if frame["type"] == kind => return frame,
                Read::Frame(_) => {}
                other => panic!("waiting for a {kind} frame, got {other:?}"),
            }
        }
    }

    /// The next EVENT frame with its data parsed.
    pub(super) async fn event(&mut self) -> (Value, Value) {
        let frame = self.next("EVENT").await;
        let data = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        (frame, data)
    }

    pub(super) async fn send(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    /// Acks a frame with `code` and `data` (a JSON value sent as a string).
    pub(super) async fn ack_with(&mut self, frame: &Value, code: i64, data: &Value) {
        let ack = json!({
            "code": code,
            "headers": {"messageId": frame["headers"]["messageId"], "contentType": "application/json"},
            "message": "OK",
            "data": data.to_string(),
        });
        self.send(ack.to_string()).await;
    }

    /// Acks an EVENT frame with `status` (`SUCCESS` or `LATER`).
    pub(super) async fn ack(&mut self, frame: &Value, status: &str) {
        self.ack_with(frame, 200, &json!({"status": status})).await;
    }

    pub(super) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }
}
