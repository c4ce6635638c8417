//! Injected faults, the QPS limit and expiry, as the client observes them.

use std::time::{Duration, Instant};

use serde_json::json;

use super::super::{DEFAULT_APP_KEY, DEFAULT_APP_SECRET, Endpoint, Fault, SandboxOptions};
use super::{Harness, USER, attachment, create_body};

const BYTES: &[u8] = b"fault test bytes";

fn token_body() -> serde_json::Value {
    json!({"appKey": DEFAULT_APP_KEY, "appSecret": DEFAULT_APP_SECRET})
}

#[tokio::test]
async fn a_server_error_fault_answers_dingtalks_system_error_once() {
    let h = Harness::start().await;
    let token = h.token().await;
    h.sandbox
        .inject(Endpoint::GetInstance, Fault::ServerError(503), 1);
    let path = "/v1.0/workflow/processInstances?processInstanceId=x";
    let faulted = h.get(path, &token).await;
    assert_eq!(faulted.status, 503);
    assert_eq!(faulted.body["code"], "systemError");
    assert_eq!(
        h.get(path, &token).await.body["code"],
        "processInstanceNotExist"
    );

    let records = h.sandbox.requests();
    let faulted_record = &records[records.len() - 2];
    assert_eq!(faulted_record.fault.as_deref(), Some("server_error(503)"));
    assert_eq!(faulted_record.status, 503);
}

#[tokio::test]
async fn an_oss_server_error_is_an_xml_internal_error() {
    let h = Harness::start().await;
    let token = h.token().await;
    let union_id = h.union_id(&token, USER).await;
    h.grant(&token, USER).await;
    let ticket = h.ticket(&token, &union_id, None).await.body;
    h.sandbox
        .inject(Endpoint::OssPut, Fault::ServerError(500), 1);
    let put = h.put(&ticket, BYTES).send().await.unwrap();
    assert_eq!(put.status(), 500);
    assert!(
        put.text()
            .await
            .unwrap()
            .contains("<Code>InternalError</Code>")
    );
    assert_eq!(h.put(&ticket, BYTES).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn throttle_faults_use_both_key_spellings_and_the_oapi_errcode() {
    let h = Harness::start().await;
    let token = h.token().await;
    h.sandbox
        .inject(Endpoint::Token, Fault::Throttle { pascal_case: false }, 1);
    h.sandbox
        .inject(Endpoint::Token, Fault::Throttle { pascal_case: true }, 1);
    let lower = h.post("/v1.0/oauth2/accessToken", None, token_body()).await;
    assert_eq!(lower.status, 403);
    assert_eq!(
        lower.body["code"],
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    );
    assert!(lower.body["requestid"].is_string());
    let pascal = h.post("/v1.0/oauth2/accessToken", None, token_body()).await;
    assert_eq!(pascal.status, 403);
    assert_eq!(
        pascal.body["Code"],
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    );
    assert!(pascal.body["RequestId"].is_string() && pascal.body["Message"].is_string());

    h.sandbox
        .inject(Endpoint::UserGet, Fault::Throttle { pascal_case: false }, 1);
    let oapi = h
        .post(
            &format!("/topapi/v2/user/get?access_token={token}"),
            None,
            json!({"userid": USER}),
        )
        .await;
    assert_eq!(
        (oapi.status, oapi.body["errcode"].as_i64()),
        (200, Some(90018))
    );
}

#[tokio::test]
async fn the_throttle_page_is_html_that_does_not_parse_as_json() {
    let h = Harness::start().await;
    h.sandbox.inject(Endpoint::Token, Fault::ThrottlePage, 1);
    let response = h
        .http
        .post(format!("{}/v1.0/oauth2/accessToken", h.base))
        .json(&token_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
}

#[tokio::test]
async fn a_revoked_token_fault_looks_like_an_invalid_token() {
    let h = Harness::start().await;
    let token = h.token().await;
    h.sandbox.inject(Endpoint::Space, Fault::TokenRevoked, 1);
    let answer = h.grant(&token, USER).await;
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (400, Some("InvalidAuthentication"))
    );
    h.sandbox.inject(Endpoint::UserGet, Fault::TokenRevoked, 1);
    let oapi = h
        .post(
            &format!("/topapi/v2/user/get?access_token={token}"),
            None,
            json!({"userid": USER}),
        )
        .await;
    assert_eq!(oapi.body["errcode"], 40014);
    assert_eq!(h.grant(&token, USER).await.status, 200);
}

#[tokio::test]
async fn a_dropped_connection_is_a_transport_error_and_does_no_work() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::DropConnection, 1);
    let sent = h
        .request(
            reqwest::Method::POST,
            "/v1.0/workflow/processInstances",
            Some(&token),
            Some(&create_body(&attachment(&dentry))),
        )
        .send()
        .await;
    let error = sent.expect_err("a dropped connection must not yield an HTTP answer");
    assert!(error.is_request() || error.is_connect(), "{error:?}");
    assert!(h.sandbox.instances().is_empty());
    let record = h.sandbox.requests().pop().unwrap();
    assert_eq!(
        (record.fault.as_deref(), record.status),
        (Some("drop_connection"), 0)
    );

    // The next call is served normally.
    assert_eq!(
        h.create(&token, create_body(&attachment(&dentry)))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_lost_response_still_creates_the_instance() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    h.sandbox
        .inject(Endpoint::CreateInstance, Fault::LoseResponse, 1);
    let sent = h
        .request(
            reqwest::Method::POST,
            "/v1.0/workflow/processInstances",
            Some(&token),
            Some(&create_body(&attachment(&dentry))),
        )
        .send()
        .await;
    assert!(sent.is_err(), "the response must be lost: {sent:?}");
    assert_eq!(h.sandbox.instances().len(), 1);
    let record = h.sandbox.requests().pop().unwrap();
    assert_eq!(
        (record.fault.as_deref(), record.status),
        (Some("lose_response"), 200)
    );
}

#[tokio::test]
async fn dropped_and_lost_oss_puts_are_transport_errors_and_only_the_lost_one_stores() {
    let h = Harness::start().await;
    let token = h.token().await;
    let union_id = h.union_id(&token, USER).await;
    h.grant(&token, USER).await;
    let ticket = h.ticket(&token, &union_id, None).await.body;
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();

    h.sandbox.inject(Endpoint::OssPut, Fault::DropConnection, 1);
    assert!(h.put(&ticket, big.clone()).send().await.is_err());
    let commit = json!({"uploadKey": ticket["uploadKey"], "name": "big.bin", "parentId": "0"});
    assert_eq!(
        h.commit(&token, &union_id, commit.clone()).await.body["message"],
        "file not uploaded"
    );

    h.sandbox.inject(Endpoint::OssPut, Fault::LoseResponse, 1);
    assert!(h.put(&ticket, big.clone()).send().await.is_err());
    let committed = h.commit(&token, &union_id, commit).await;
    assert_eq!(committed.body["dentry"]["size"], big.len());
    let file_id = committed.body["dentry"]["id"].as_str().unwrap();
    assert_eq!(h.sandbox.file_content(file_id).unwrap(), big);
}

#[tokio::test]
async fn a_client_that_times_out_during_latency_still_gets_the_work_done() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    h.sandbox.inject(
        Endpoint::CreateInstance,
        Fault::Latency(Duration::from_millis(400)),
        1,
    );
    let sent = h
        .request(
            reqwest::Method::POST,
            "/v1.0/workflow/processInstances",
            Some(&token),
            Some(&create_body(&attachment(&dentry))),
        )
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    assert!(h.sandbox.instances().is_empty());
    for _ in 0..100 {
        if !h.sandbox.instances().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.sandbox.instances().len(), 1);
    assert_eq!(h.sandbox.requests().pop().unwrap().status, 200);
}

#[tokio::test]
async fn latency_delays_a_normal_answer() {
    let h = Harness::start().await;
    h.sandbox.inject(
        Endpoint::Token,
        Fault::Latency(Duration::from_millis(300)),
        1,
    );
    let started = Instant::now();
    let answer = h.post("/v1.0/oauth2/accessToken", None, token_body()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(answer.status, 200);
    assert_eq!(
        h.sandbox.requests()[0].fault.as_deref(),
        Some("latency(300ms)")
    );
}

#[tokio::test]
async fn calls_over_the_qps_limit_get_the_throttle_error_per_api() {
    let h = Harness::with(SandboxOptions {
        qps_limit: Some(2),
        ..SandboxOptions::default()
    })
    .await;
    // Retry the burst if a one-second window boundary splits it.
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..5 {
        statuses.clear();
        for _ in 0..3 {
            let answer = h.post("/v1.0/oauth2/accessToken", None, token_body()).await;
            statuses.push(answer.status);
            if answer.status == 403 {
                throttled = Some(answer.body);
            }
        }
        if statuses == [200, 200, 403] {
            break;
        }
        h.sandbox.advance_clock(Duration::from_secs(1));
    }
    assert_eq!(statuses, [200, 200, 403]);
    let body = throttled.unwrap();
    assert_eq!(
        body["code"],
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
    );
    assert_eq!(body["message"], "您的应用调用当前API超过QPS限制");

    // Another API has its own budget: this one is refused for its token, not throttled.
    let user = h
        .post(
            "/topapi/v2/user/get?access_token=x",
            None,
            json!({"userid": USER}),
        )
        .await;
    assert_eq!(user.body["errcode"], 40014);
}

#[tokio::test]
async fn expired_tokens_are_invalid_authentication_and_a_new_one_is_issued() {
    let h = Harness::start().await;
    let token = h.token().await;
    assert_eq!(h.grant(&token, USER).await.status, 200);
    h.sandbox.expire_tokens();
    let answer = h.grant(&token, USER).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["code"], "InvalidAuthentication");
    let fresh = h.token().await;
    assert_ne!(fresh, token);
    assert_eq!(h.grant(&fresh, USER).await.status, 200);
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let h = Harness::with(SandboxOptions {
        token_ttl: Duration::from_millis(200),
        ..SandboxOptions::default()
    })
    .await;
    let token = h.token().await;
    assert_eq!(h.grant(&token, USER).await.status, 200);
    h.sandbox.advance_clock(Duration::from_millis(300));
    assert_eq!(
        h.grant(&token, USER).await.body["code"],
        "InvalidAuthentication"
    );
}
