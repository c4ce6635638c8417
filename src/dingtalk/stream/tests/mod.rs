//! The Stream client against a gateway inside the test (`gateway.rs`).

mod gateway;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::dingtalk::fake::{APP_SECRET, Fake, Reply, TOKEN_PATH};
use gateway::{Gateway, OPEN_PATH, PATIENCE, event, event_ack, finish, ping, quick, ticket};

#[tokio::test]
async fn opening_sends_the_credentials_subscriptions_and_json_headers_without_a_token() {
    let gateway = Gateway::start().await;
    let ticket = gateway.fake.client().open_stream().await.unwrap();
    assert!(ticket.endpoint.starts_with("ws://127.0.0.1:"), "{ticket:?}");
    assert_eq!(ticket.ticket.expose(), "tk/0+é");
    assert!(
        !format!("{ticket:?}").contains("tk/0"),
        "the ticket is a secret"
    );

    let seen = gateway.fake.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", OPEN_PATH)
    );
    assert_eq!(
        seen.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(seen.header("accept").as_deref(), Some("application/json"));
    assert_eq!(seen.header("x-acs-dingtalk-access-token"), None);
    let body = seen.json();
    assert_eq!(
        body,
        json!({"clientId": "ding-app-key", "clientSecret": APP_SECRET,
            "subscriptions": [{"type": "EVENT", "topic": "*"}, {"type": "SYSTEM", "topic": "ping"}],
            "ua": concat!("approval-worker/", env!("CARGO_PKG_VERSION")),
            "localIp": "127.0.0.1"})
    );
    assert_eq!(gateway.fake.count(TOKEN_PATH), 0);
}

#[tokio::test]
async fn rejected_credentials_stop_the_stream_with_an_error_naming_the_app_key() {
    let fake = Fake::start(|_| {
        Reply::json(
            401,
            json!({"requestid": "R-1", "code": "authFailed", "message": "鉴权失败"}),
        )
    })
    .await;
    let stream = Stream::new(fake.client()).with_timing(quick());
    let (tx, _rx) = mpsc::channel(1);
    let result = tokio::time::timeout(PATIENCE, stream.run(tx, CancellationToken::new()))
        .await
        .expect("a rejected credential must not be retried");
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StreamError::CredentialsRejected { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("ding-app-key") && text.contains("authFailed"),
        "{text}"
    );
    assert!(!format!("{text} {err:?}").contains(APP_SECRET));
    assert_eq!(fake.count(OPEN_PATH), 1, "one attempt, no loop");
}

#[tokio::test]
async fn the_socket_presents_the_ticket_and_pings_are_answered_with_their_data() {
    let mut gateway = Gateway::start().await;
    let running = gateway.run(8, quick());
    let mut peer = gateway.next_peer().await;
    assert_eq!(peer.ticket, ticket(0));

    let data = r#"{"opaque": "abc", "n": 1}"#;
    peer.send(ping("p-1", data)).await;
    assert_eq!(
        peer.next_json().await,
        json!({"code": 200, "headers": {"messageId": "p-1", "contentType": "application/json"},
            "message": "OK", "data": data})
    );

    peer.ws
        .send(Message::Ping(b"hb".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(PATIENCE, peer.ws.next())
        .await
        .unwrap();
    assert!(matches!(pong, Some(Ok(Message::Pong(p))) if p.as_ref() == b"hb"));
    assert_eq!(
        running.status.now(),
        StreamState {
            connected: true,
            connections: 1,
            events: 0
        }
    );
}

#[tokio::test]
async fn an_instance_change_is_acked_only_when_the_caller_says_success() {
    let mut gateway = Gateway::start().await;
    let mut running = gateway.run(8, quick());
    let mut peer = gateway.next_peer().await;

    peer.send(finish("m-1", "INST-1")).await;
    let delivery = running.next_delivery().await;
    assert_eq!(
        delivery.change,
        InstanceChange {
            event_id: "ev-m-1".into(),
            instance_id: "INST-1".into(),
            process_code: Some("PROC-1".into()),
            kind: ChangeKind::Finish,
            result: Some("agree".into()),
            finish_time_ms: Some(1_661_946_720_000),
            born_at_ms: Some(1_661_946_720_500),
        }
    );
    // The reader goes on while the change waits: a ping sent after the event is answered,
    // and nothing for the event came before that answer.
    peer.send(ping("p-1", "{}")).await;
    assert_eq!(peer.next_json().await["headers"]["messageId"], "p-1");

    delivery.ack(Ack::Success);
    assert_eq!(peer.next_json().await, event_ack("m-1", "SUCCESS"));
    assert_eq!(running.status.events(), 1);
}

#[tokio::test]
async fn later_and_a_dropped_responder_are_both_acked_later() {
    let mut gateway = Gateway::start().await;
    let mut running = gateway.run(8, quick());
    let mut peer = gateway.next_peer().await;

    peer.send(finish("m-1", "INST-1")).await;
    peer.send(finish("m-2", "INST-2")).await;
    let first = running.next_delivery().await;
    let second = running.next_delivery().await;
    // Answered out of order, as a batching caller may.
    drop(second);
    assert_eq!(peer.next_json().await, event_ack("m-2", "LATER"));
    first.responder.ack(Ack::Later);
    assert_eq!(peer.next_json().await, event_ack("m-1", "LATER"));
}

#[tokio::test]
async fn other_events_callbacks_and_unknown_system_topics_are_acked_and_not_delivered() {
    let mut gateway = Gateway::start().await;
    let mut running = gateway.run(8, quick());
    let mut peer = gateway.next_peer().await;

    peer.send(event(
        "m-1",
        "bpms_task_change",
        r#"{"processInstanceId":"I"}"#,
    ))
    .await;
    assert_eq!(peer.next_json().await, event_ack("m-1", "SUCCESS"));
    let callback = json!({"type": "CALLBACK", "headers": {"topic": "/v1.0/im/bot/messages/get", "messageId": "m-2"}, "data": "{}"});
    peer.send(callback).await;
    assert_eq!(peer.next_json().await, event_ack("m-2", "SUCCESS"));
    let keepalive = json!({"type": "SYSTEM", "headers": {"topic": "KEEPALIVE", "messageId": "m-3"}, "data": "{\"k\":1}"});
    peer.send(keepalive).await;
    assert_eq!(peer.next_json().await["data"], "{\"k\":1}");

    peer.send(finish("m-4", "INST-4")).await;
    assert_eq!(running.next_delivery().await.change.instance_id, "INST-4");
    assert_eq!(running.status.events(), 1);
}

#[tokio::test]
async fn malformed_frames_are_skipped_and_later_events_still_arrive() {
    let mut gateway = Gateway::start().await;
    let mut running = gateway.run(8, quick());
    let mut peer = gateway.next_peer().await;

    peer.ws.send(Message::text("{not json")).await.unwrap();
    peer.ws
        .send(Message::binary(vec![0, 159, 146, 150]))
        .await
        .unwrap();
    peer.send(
        json!({"type": "EVENT", "headers": {"eventType": "bpms_instance_change"}, "data": "{}"}),
    )
    .await;
    // An instance event whose payload cannot be read is acked, so it is not resent forever.
    peer.send(event("m-1", "bpms_instance_change", "garbage"))
        .await;
    assert_eq!(peer.next_json().await, event_ack("m-1", "SUCCESS"));

    peer.send(finish("m-2", "INST-2")).await;
    assert_eq!(running.next_delivery().await.change.instance_id, "INST-2");
    assert_eq!(gateway.opens(), 1, "still the first connection");
}

#[tokio::test]
async fn a_disconnect_frame_opens_a_new_connection_with_a_fresh_ticket() {
    let mut gateway = Gateway::start().await;
    let running = gateway.run(8, quick());
    let mut first = gateway.next_peer().await;
    first
        .send(
            json!({"type": "SYSTEM", "headers": {"topic": "disconnect", "messageId": "d-1"},
            "data": "{\"reason\":\"gateway upgrade\"}"}),
        )
        .await;
    first.closed().await;
    let second = gateway.next_peer().await;
    assert_eq!((first.ticket, second.ticket), (ticket(0), ticket(1)));
    assert_eq!(gateway.opens(), 2);
    running.until(|s| s.connected && s.reconnects() == 1).await;
}

#[tokio::test]
async fn a_dropped_socket_is_reopened_with_a_fresh_ticket_and_unacked_events_stay_unacked() {
    let mut gateway = Gateway::start().await;
    let mut running = gateway.run(8, quick());
    let mut first = gateway.next_peer().await;
    first.send(finish("m-1", "INST-1")).await;
    let delivery = running.next_delivery().await;
    drop(first);

    let mut second = gateway.next_peer().await;
    assert_eq!(second.ticket, ticket(1));
    // The old connection's ack has nowhere to go; DingTalk redelivers on the new one.
    delivery.ack(Ack::Success);
    second.send(finish("m-2", "INST-1")).await;
    let again = running.next_delivery().await;
    again.ack(Ack::Success);
    assert_eq!(second.next_json().await, event_ack("m-2", "SUCCESS"));
}

#[tokio::test]
async fn a_connect_failure_is_retried_with_a_fresh_ticket() {
    let mut gateway = Gateway::with_endpoints(|n, ws| {
        if n == 0 {
            "https://127.0.0.1:1/not-a-websocket".to_owned()
        } else {
            ws.to_owned()
        }
    })
    .await;
    let _running = gateway.run(8, quick());
    assert_eq!(gateway.next_peer().await.ticket, ticket(1));
}

#[tokio::test]
async fn an_oversized_frame_drops_the_connection_and_the_stream_reconnects() {
    let mut gateway = Gateway::start().await;
    let _running = gateway.run(8, quick());
    let mut first = gateway.next_peer().await;
    let huge = "x".repeat(session::MAX_MESSAGE_BYTES + 1);
    // The client may reset the socket while this is still being written.
    let _ = first.ws.send(Message::text(huge)).await;
    assert_eq!(gateway.next_peer().await.ticket, ticket(1));
}

#[tokio::test]
async fn a_silent_connection_is_given_up_and_reopened() {
    let mut gateway = Gateway::start().await;
    let timing = StreamTiming {
        keepalive: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(200),
        ..quick()
    };
    let _running = gateway.run(8, timing);
    // Never read: tungstenite answers pings only while reading, so this peer stays silent.
    let _silent = gateway.next_peer().await;
    assert_eq!(gateway.next_peer().await.ticket, ticket(1));
}

#[tokio::test]
async fn a_full_delivery_channel_is_answered_later_without_blocking_the_socket() {
    let mut gateway = Gateway::start().await;
    let mut running = gateway.run(1, quick());
    let mut peer = gateway.next_peer().await;
    peer.send(finish("m-1", "INST-1")).await;
    peer.send(finish("m-2", "INST-2")).await;
    assert_eq!(peer.next_json().await, event_ack("m-2", "LATER"));
    peer.send(ping("p-1", "{}")).await;
    assert_eq!(peer.next_json().await["headers"]["messageId"], "p-1");
    assert_eq!(running.next_delivery().await.change.instance_id, "INST-1");
}

#[tokio::test]
async fn shutdown_closes_the_socket_and_returns() {
    let mut gateway = Gateway::start().await;
    let running = gateway.run(8, quick());
    let mut peer = gateway.next_peer().await;
    running.until(|s| s.connected).await;
    running.shutdown.cancel();
    let status = Arc::clone(&running.status);
    running.finished().await.unwrap();
    assert!(matches!(peer.closed().await, Some(Message::Close(_))));
    assert!(!status.connected());
}

#[tokio::test]
async fn shutdown_interrupts_the_wait_before_reconnecting() {
    let mut gateway = Gateway::start().await;
    let timing = StreamTiming {
        first_retry: Duration::from_secs(600),
        max_retry: Duration::from_secs(600),
        ..quick()
    };
    let running = gateway.run(8, timing);
    drop(gateway.next_peer().await);
    // Once the client noticed, stop it during its ten-minute backoff.
    running.until(|s| s.connections == 1 && !s.connected).await;
    running.shutdown.cancel();
    running.finished().await.unwrap();
    assert_eq!(gateway.opens(), 1);
}

#[tokio::test]
async fn a_dropped_receiver_stops_the_stream() {
    let mut gateway = Gateway::start().await;
    let mut running = gateway.run(8, quick());
    let mut peer = gateway.next_peer().await;
    let (_, closed) = mpsc::channel::<Delivery>(1);
    drop(std::mem::replace(&mut running.deliveries, closed));
    peer.send(finish("m-1", "INST-1")).await;
    running.finished().await.unwrap();
}

#[test]
fn tls_for_wss_sets_up_with_the_ring_provider() {
    assert!(session::tls_config().is_ok());
}
