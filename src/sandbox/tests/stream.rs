//! The Stream gateway as a client sees it: connections/open, tickets, pings, events and
//! their acks.

use std::time::Duration;

use serde_json::{Value, json};

use super::super::{
    AckStatus, DEFAULT_APP_SECRET, DEFAULT_CORP_ID, Decision, Endpoint, SandboxOptions,
    StreamOptions,
};
use super::stream_client::{Client, open, open_with};
use super::{Harness, USER};

const EVENTS: &str = r#"[{"type": "EVENT", "topic": "*"}]"#;

fn events() -> Value {
    serde_json::from_str(EVENTS).unwrap()
}

/// A sandbox whose gateway uses `stream` options.
async fn harness(stream: StreamOptions) -> Harness {
    Harness::with(SandboxOptions {
        stream,
        ..SandboxOptions::default()
    })
    .await
}

#[tokio::test]
async fn opening_with_a_wrong_secret_is_401_auth_failed_and_is_recorded() {
    let h = Harness::start().await;
    let answer = open_with(&h, "wrong", events()).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["code"], "authFailed");
    assert!(answer.body["requestid"].is_string() && answer.body["message"].is_string());
    let record = h.sandbox.requests().pop().unwrap();
    assert_eq!(
        (record.endpoint, record.status),
        (Endpoint::OpenConnection, 401)
    );
    assert_eq!(record.body.unwrap()["subscriptions"], events());
    assert_eq!(h.sandbox.stream_stats().tickets_issued, 0);
}

#[tokio::test]
async fn open_gives_an_endpoint_on_another_port_and_answers_xml_unless_json_is_accepted() {
    let h = Harness::start().await;
    let (endpoint, ticket) = open(&h).await;
    assert_eq!(endpoint, h.sandbox.stream_endpoint());
    assert!(endpoint.starts_with("ws://127.0.0.1:") && endpoint.ends_with("/connect"));
    let api_port = h.base.rsplit(':').next().unwrap();
    assert!(
        !endpoint.contains(&format!(":{api_port}/")),
        "{endpoint} vs {}",
        h.base
    );
    assert_eq!(ticket.len(), 36);

    let body = json!({"clientId": super::super::DEFAULT_APP_KEY, "clientSecret": DEFAULT_APP_SECRET,
                      "subscriptions": events(), "ua": "x", "localIp": ""});
    let xml = h
        .request(
            reqwest::Method::POST,
            "/v1.0/gateway/connections/open",
            None,
            Some(&body),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(xml.status(), 200);
    assert!(
        xml.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml")
    );
    let text = xml.text().await.unwrap();
    assert!(
        text.contains("<ticket>") && text.contains("<endpoint>ws://"),
        "{text}"
    );

    // The API port does not serve the WebSocket: a client must use the endpoint given.
    let (_, ticket) = open(&h).await;
    let on_api = Client::dial(
        &format!("{}/connect", h.base.replace("http", "ws")),
        &ticket,
    )
    .await;
    assert_eq!(on_api.err(), Some(404));
}

#[tokio::test]
async fn a_ticket_opens_one_connection_and_expires() {
    let h = Harness::start().await;
    let (endpoint, ticket) = open(&h).await;
    let _client = Client::dial(&endpoint, &ticket).await.unwrap();
    assert_eq!(
        Client::dial(&endpoint, &ticket).await.err(),
        Some(401),
        "reused"
    );
    assert_eq!(
        Client::dial(&endpoint, "0000").await.err(),
        Some(401),
        "unknown"
    );

    let (_, stale) = open(&h).await;
    h.sandbox.advance_clock(Duration::from_secs(91));
    assert_eq!(
        Client::dial(&endpoint, &stale).await.err(),
        Some(401),
        "expired"
    );

    let stats = h.sandbox.stream_stats();
    assert_eq!(
        (
            stats.tickets_issued,
            stats.tickets_used,
            stats.tickets_refused
        ),
        (2, 1, 3)
    );
    assert_eq!(stats.open_connections, 1);
}

#[tokio::test]
async fn pings_come_every_interval_and_whether_their_data_was_echoed_is_recorded() {
    let h = harness(StreamOptions {
        ping_interval: Duration::from_millis(50),
        ..StreamOptions::default()
    })
    .await;
    let mut client = Client::connect(&h).await;
    let ping = client.next("SYSTEM").await;
    assert_eq!(ping["headers"]["topic"], "ping");
    assert_eq!(ping["specVersion"], "1.0");
    let data: Value = serde_json::from_str(ping["data"].as_str().unwrap()).unwrap();
    assert!(data["opaque"].is_string());
    client.ack_with(&ping, 200, &data).await;

    let second = client.next("SYSTEM").await;
    client
        .ack_with(&second, 200, &json!({"opaque": "something else"}))
        .await;

    let ids = [
        ping["headers"]["messageId"].clone(),
        second["headers"]["messageId"].clone(),
    ];
    let answered = h
        .sandbox
        .wait_for(Duration::from_secs(5), |s| {
            s.stream_pings().iter().filter(|p| p.answered).count() == 2
        })
        .await;
    assert!(answered, "{:?}", h.sandbox.stream_pings());
    let pings = h.sandbox.stream_pings();
    let echoed: Vec<bool> = ids
        .iter()
        .map(|id| pings.iter().find(|p| p.message_id == *id).unwrap().echoed)
        .collect();
    assert_eq!(echoed, [true, false]);
}

#[tokio::test]
async fn an_acked_event_is_delivered_once_with_every_header_a_string() {
    let h = harness(StreamOptions {
        ack_timeout: Duration::from_millis(250),
        ..StreamOptions::default()
    })
    .await;
    let mut client = Client::connect(&h).await;
    let token = h.token().await;
    let id = h.instance(&token).await;

    let (frame, data) = client.event().await;
    let headers = frame["headers"].as_object().unwrap();
    assert!(headers.values().all(Value::is_string), "{frame}");
    assert_eq!(headers["topic"], "*");
    assert_eq!(headers["eventType"], "bpms_instance_change");
    assert_eq!(headers["contentType"], "application/json");
    assert_eq!(headers["eventCorpId"], DEFAULT_CORP_ID);
    assert!(
        headers["eventBornTime"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .is_ok()
    );
    for key in [
        "messageId",
        "eventId",
        "eventUnifiedAppId",
        "appId",
        "connectionId",
        "time",
    ] {
        assert!(!headers[key].as_str().unwrap().is_empty(), "{key}");
    }
    assert_eq!(data["type"], "start");
    assert_eq!(data["processInstanceId"], id.as_str());
    assert_eq!(data["processCode"], "PROC-SANDBOX-EXPENSE");
    assert_eq!(data["staffId"], USER);
    assert!(data["createTime"].is_i64() && data.get("result").is_none());
    client.ack(&frame, "SUCCESS").await;

    h.sandbox.decide(&id, Decision::Agree).unwrap();
    let (finish, data) = client.event().await;
    assert_eq!(
        (data["type"].as_str(), data["result"].as_str()),
        (Some("finish"), Some("agree"))
    );
    assert!(data["finishTime"].is_i64());
    assert_ne!(finish["headers"]["eventId"], frame["headers"]["eventId"]);
    client.ack(&finish, "SUCCESS").await;

    let acked = h
        .sandbox
        .wait_for(Duration::from_secs(5), |s| {
            s.stream_events().iter().all(|e| e.acked)
        })
        .await;
    assert!(acked);
    // Past several ack timeouts, nothing came again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for event in h.sandbox.stream_events() {
        assert_eq!(event.deliveries.len(), 1, "{event:?}");
        assert_eq!(event.deliveries[0].status, AckStatus::Success);
    }
}

#[tokio::test]
async fn an_event_acked_later_comes_again_with_its_event_id_and_a_new_message_id() {
    let h = harness(StreamOptions {
        later_delay: Duration::from_millis(50),
        ..StreamOptions::default()
    })
    .await;
    let mut client = Client::connect(&h).await;
    let token = h.token().await;
    h.instance(&token).await;

    let (first, _) = client.event().await;
    // The Go SDK's LATER: code 500 with the status.
    client
        .ack_with(&first, 500, &json!({"status": "LATER"}))
        .await;
    let (again, data) = client.event().await;
    assert_eq!(data["type"], "start");
    assert_eq!(again["headers"]["eventId"], first["headers"]["eventId"]);
    assert_ne!(again["headers"]["messageId"], first["headers"]["messageId"]);
    client.ack(&again, "SUCCESS").await;

    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s.stream_events()[0].acked)
            .await
    );
    let event = &h.sandbox.stream_events()[0];
    let statuses: Vec<AckStatus> = event.deliveries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [AckStatus::Later, AckStatus::Success]);
    assert_eq!(event.deliveries[0].ack_code, Some(500));
}

#[tokio::test]
async fn an_event_not_acked_in_time_is_redelivered() {
    let h = harness(StreamOptions {
        ack_timeout: Duration::from_millis(300),
        ..StreamOptions::default()
    })
    .await;
    let mut client = Client::connect(&h).await;
    let token = h.token().await;
    h.instance(&token).await;

    let (first, _) = client.event().await;
    let (again, _) = client.event().await;
    assert_eq!(again["headers"]["eventId"], first["headers"]["eventId"]);
    assert_ne!(again["headers"]["messageId"], first["headers"]["messageId"]);
    // An ack that comes after the timeout is no longer awaited.
    client.ack(&first, "SUCCESS").await;
    client.ack(&again, "SUCCESS").await;
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s.stream_events()[0].acked)
            .await
    );
    let statuses: Vec<AckStatus> = h.sandbox.stream_events()[0]
        .deliveries
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, [AckStatus::TimedOut, AckStatus::Success]);
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s.stream_stats().stray_acks == 1)
            .await
    );
}

#[tokio::test]
async fn each_event_goes_to_one_of_several_connections_and_none_to_a_callback_only_one() {
    let h = Harness::start().await;
    let mut first = Client::connect(&h).await;
    let mut second = Client::connect(&h).await;
    let callbacks = open_with(
        &h,
        DEFAULT_APP_SECRET,
        json!([{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}]),
    )
    .await;
    let endpoint = callbacks.body["endpoint"].as_str().unwrap();
    let _bystander = Client::dial(endpoint, callbacks.body["ticket"].as_str().unwrap())
        .await
        .unwrap();
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s
                .stream_stats()
                .open_connections
                == 3)
            .await
    );

    let token = h.token().await;
    for _ in 0..4 {
        h.instance(&token).await;
    }
    for client in [&mut first, &mut second] {
        for _ in 0..2 {
            let (frame, _) = client.event().await;
            client.ack(&frame, "SUCCESS").await;
        }
    }
    assert!(
        h.sandbox
            .wait_for(Duration::from_secs(5), |s| s
                .stream_events()
                .iter()
                .all(|e| e.acked))
            .await
    );
    let events = h.sandbox.stream_events();
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e.deliveries.len() == 1), "{events:?}");
}
