//! The Stream gateway's faults and hostile clients: dropped sockets, disconnect frames,
//! duplicated and delayed events, malformed and oversized frames.

use std::time::{Duration, Instant};

use serde_json::json;

use super::super::{AckStatus, SandboxOptions, StreamOptions};
use super::Harness;
use super::stream_client::{Client, Read};

async fn harness(stream: StreamOptions) -> Harness {
    Harness::with(SandboxOptions {
        stream,
        ..SandboxOptions::default()
    })
    .await
}

#[tokio::test]
async fn an_event_whose_socket_drops_before_the_ack_comes_again_on_the_next_connection() {
    let h = Harness::start().await;
    let mut first = Client::connect(&h).await;
    let token = h.token().await;
    let id = h.instance(&token).await;
    let (lost, _) = first.event().await;

    assert_eq!(h.sandbox.stream_drop_connections(), 1);
    assert!(
        matches!(first.read().await, Read::Gone),
        "no close frame on a drop"
    );
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s
                .stream_stats()
                .open_connections
                == 0)
            .await
    );
    // Events wait while nobody is connected.
    h.sandbox
        .decide(&id, super::super::Decision::Refuse)
        .unwrap();

    let mut second = Client::connect(&h).await;
    let (again, data) = second.event().await;
    assert_eq!(again["headers"]["eventId"], lost["headers"]["eventId"]);
    assert_eq!(data["type"], "start");
    second.ack(&again, "SUCCESS").await;
    let (finish, data) = second.event().await;
    assert_eq!(
        (data["type"].as_str(), data["result"].as_str()),
        (Some("finish"), Some("refuse"))
    );
    second.ack(&finish, "SUCCESS").await;

    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s
                .stream_events()
                .iter()
                .all(|e| e.acked))
            .await
    );
    let statuses: Vec<AckStatus> = h.sandbox.stream_events()[0]
        .deliveries
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, [AckStatus::Lost, AckStatus::Success]);
}

#[tokio::test]
async fn a_disconnect_frame_comes_before_the_close_and_the_admin_route_sends_it() {
    let h = harness(StreamOptions {
        disconnect_grace: Duration::from_millis(100),
        ..StreamOptions::default()
    })
    .await;
    let mut client = Client::connect(&h).await;
    let told = h
        .post(
            "/sandbox/stream/disconnect",
            None,
            json!({"reason": "gateway upgrade"}),
        )
        .await;
    assert_eq!(told.body["connections"], 1);

    let frame = client.next("SYSTEM").await;
    assert_eq!(frame["headers"]["topic"], "disconnect");
    assert_eq!(
        frame["data"],
        json!({"reason": "gateway upgrade"}).to_string()
    );
    // An ack is optional and harmless.
    client.ack_with(&frame, 200, &json!({})).await;
    assert!(matches!(client.read().await, Read::Closed(1000)));
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s
                .stream_stats()
                .open_connections
                == 0)
            .await
    );
    assert_eq!(h.sandbox.stream_stats().stray_acks, 0);
}

#[tokio::test]
async fn a_connection_told_to_disconnect_gets_no_new_events() {
    let h = harness(StreamOptions {
        disconnect_grace: Duration::from_secs(30),
        ..StreamOptions::default()
    })
    .await;
    let mut old = Client::connect(&h).await;
    assert_eq!(h.sandbox.stream_disconnect("bye"), 1);
    old.next("SYSTEM").await;
    let token = h.token().await;
    h.instance(&token).await;
    let mut new = Client::connect(&h).await;
    let (frame, _) = new.event().await;
    new.ack(&frame, "SUCCESS").await;
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s.stream_events()[0].acked)
            .await
    );
    assert_eq!(h.sandbox.stream_events()[0].deliveries.len(), 1);
}

#[tokio::test]
async fn a_duplicated_event_arrives_twice_with_one_event_id() {
    let h = Harness::start().await;
    let mut client = Client::connect(&h).await;
    h.sandbox.stream_duplicate_next_event();
    let token = h.token().await;
    h.instance(&token).await;
    let (first, _) = client.event().await;
    let (second, _) = client.event().await;
    assert_eq!(first["headers"]["eventId"], second["headers"]["eventId"]);
    assert_ne!(
        first["headers"]["messageId"],
        second["headers"]["messageId"]
    );
    client.ack(&first, "SUCCESS").await;
    client.ack(&second, "SUCCESS").await;
    let both = h
        .sandbox
        .wait_for(Duration::from_secs(5), |s| {
            s.stream_events()[0]
                .deliveries
                .iter()
                .all(|d| d.status == AckStatus::Success)
        })
        .await;
    assert!(both, "{:?}", h.sandbox.stream_events());
}

#[tokio::test]
async fn delayed_events_arrive_no_sooner_than_the_delay() {
    let h = Harness::start().await;
    let mut client = Client::connect(&h).await;
    h.post("/sandbox/stream/delay", None, json!({"ms": 300}))
        .await;
    let token = h.token().await;
    let started = Instant::now();
    h.instance(&token).await;
    let (frame, _) = client.event().await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    client.ack(&frame, "SUCCESS").await;
}

#[tokio::test]
async fn malformed_stray_and_oversized_frames_do_not_disturb_the_gateway() {
    let h = harness(StreamOptions {
        max_frame_bytes: 1024,
        ..StreamOptions::default()
    })
    .await;
    let mut client = Client::connect(&h).await;
    client.send("not json").await;
    client.send(r#"{"headers":{}}"#).await;
    client.send("[1,2,3]").await;
    client.send_binary(vec![0, 159, 146, 150]).await;
    let stray = json!({"code": 200, "headers": {"messageId": "never-sent"}, "data": "{}"});
    client.send(stray.to_string()).await;

    // The connection still works.
    let token = h.token().await;
    h.instance(&token).await;
    let (frame, _) = client.event().await;
    client.ack(&frame, "SUCCESS").await;
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s.stream_events()[0].acked)
            .await
    );
    let stats = h.sandbox.stream_stats();
    assert_eq!((stats.malformed_frames, stats.stray_acks), (4, 1));

    client.send("x".repeat(2000)).await;
    assert!(matches!(client.read().await, Read::Closed(1009)));
    let far_too_big = "y".repeat(64 * 1024);
    let mut other = Client::connect(&h).await;
    other.send(far_too_big).await;
    assert!(matches!(other.read().await, Read::Closed(_) | Read::Gone));

    // And the gateway still serves new connections.
    let mut fresh = Client::connect(&h).await;
    h.instance(&token).await;
    let (frame, _) = fresh.event().await;
    fresh.ack(&frame, "SUCCESS").await;
    assert_eq!(h.sandbox.stream_stats().oversized_frames, 1);
}

#[tokio::test]
async fn the_admin_routes_drop_connections_and_list_what_the_gateway_did() {
    let h = Harness::start().await;
    let mut client = Client::connect(&h).await;
    let token = h.token().await;
    h.instance(&token).await;
    let (frame, _) = client.event().await;
    client.ack(&frame, "SUCCESS").await;
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s.stream_events()[0].acked)
            .await
    );

    let state = h.get("/sandbox/stream", "").await;
    assert_eq!(state.status, 200);
    assert_eq!(
        state.body["events"][0]["deliveries"][0]["status"],
        "success"
    );
    assert_eq!(state.body["stats"]["tickets_used"], 1);

    let dropped = h.post("/sandbox/stream/drop", None, json!({})).await;
    assert_eq!(dropped.body["connections"], 1);
    assert!(matches!(client.read().await, Read::Gone));
    assert_eq!(
        h.post("/sandbox/stream/duplicate-next", None, json!({}))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn stopping_the_sandbox_closes_its_stream_connections_and_listener() {
    let h = Harness::start().await;
    let mut client = Client::connect(&h).await;
    let (endpoint, ticket) = super::stream_client::open(&h).await;
    h.sandbox.shutdown().await;
    assert!(matches!(client.read().await, Read::Closed(1001)));
    assert_eq!(Client::dial(&endpoint, &ticket).await.err(), Some(0));
}
