//! Tests of the shared call machinery against the fake server: token cache and single flight,
//! refresh on a rejected token, throttling and the shared pause, in-call retries, redaction.

use std::time::{Duration, Instant};

use serde_json::json;

use super::fake::{APP_SECRET, Fake, Reply, TOKEN_PATH};
use super::*;

const SPACE_PATH: &str = "/v1.0/workflow/processInstances/spaces/infos/query";
const CREATE_PATH: &str = "/v1.0/workflow/processInstances";

fn space_ok() -> Reply {
    Reply::json(200, json!({"result": {"spaceId": 42}, "success": true}))
}

fn create_request() -> CreateInstance {
    CreateInstance {
        process_code: "PROC-1".into(),
        originator_user_id: "u1".into(),
        dept_id: Some(-1),
        form: vec![],
        approvers: vec![],
        cc_list: vec![],
    }
}

fn error_body(code: &str) -> serde_json::Value {
    json!({"code": code, "message": "m", "requestid": "R"})
}

#[tokio::test]
async fn token_request_shape_and_cache_across_calls() {
    let fake = Fake::start(|_| space_ok()).await;
    let client = fake.client();
    for _ in 0..10 {
        assert_eq!(client.clone().approval_space("u").await.unwrap(), 42);
    }
    assert_eq!(client.token_fetches(), 1);
    assert_eq!(fake.count(TOKEN_PATH), 1);
    let token_call = &fake.all_requests()[0];
    assert_eq!(token_call.method, "POST");
    assert_eq!(token_call.query, "");
    assert_eq!(
        token_call.body_text(),
        format!(r#"{{"appKey":"ding-app-key","appSecret":"{APP_SECRET}"}}"#)
    );
    assert_eq!(
        token_call.header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(token_call.header("x-acs-dingtalk-access-token"), None);
    for seen in fake.requests() {
        assert_eq!(
            seen.header("x-acs-dingtalk-access-token").as_deref(),
            Some("tok-1")
        );
    }
}

#[tokio::test]
async fn concurrent_calls_share_one_token_fetch() {
    let fake = Fake::with_token(
        |n| {
            Reply::json(
                200,
                json!({"accessToken": format!("tok-{n}"), "expireIn": 7200}),
            )
            .delayed(Duration::from_millis(200))
        },
        |_| space_ok(),
    )
    .await;
    let client = fake.client();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.approval_space("u").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 42);
    }
    assert_eq!(client.token_fetches(), 1);
    assert_eq!(fake.count(SPACE_PATH), 20);
}

#[tokio::test]
async fn rejected_token_is_refreshed_and_the_call_retried_once() {
    let fake = Fake::start(|seen| {
        if seen.nth == 0 {
            Reply::json(400, error_body("InvalidAuthentication"))
        } else {
            space_ok()
        }
    })
    .await;
    let client = fake.client();
    assert_eq!(client.approval_space("u").await.unwrap(), 42);
    assert_eq!(client.token_fetches(), 2);
    let tokens: Vec<_> = fake
        .requests()
        .iter()
        .map(|s| s.header("x-acs-dingtalk-access-token").unwrap())
        .collect();
    assert_eq!(tokens, ["tok-1", "tok-2"]);
}

#[tokio::test]
async fn a_token_rejected_twice_is_returned_after_one_retry() {
    let fake = Fake::start(|_| Reply::text(401, "")).await;
    let client = fake.client();
    let err = client.approval_space("u").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::TokenInvalid);
    assert_eq!(fake.count(SPACE_PATH), 2);
    assert_eq!(client.token_fetches(), 2);
}

#[tokio::test]
async fn create_instance_is_retried_after_a_rejected_token() {
    let fake = Fake::start(|seen| {
        if seen.nth == 0 {
            Reply::json(400, error_body("InvalidAuthentication"))
        } else {
            Reply::json(200, json!({"instanceId": "I-1"}))
        }
    })
    .await;
    let id = fake
        .client()
        .create_instance(&create_request())
        .await
        .unwrap();
    assert_eq!(id, "I-1");
    assert_eq!(fake.count(CREATE_PATH), 2);
}

#[tokio::test]
async fn throttled_call_is_retried_then_succeeds() {
    let fake = Fake::start(|seen| {
        if seen.nth == 0 {
            Reply::json(
                403,
                json!({"Code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "Message": "qps", "RequestId": "R"}),
            )
        } else {
            Reply::json(200, json!({"instanceId": "I-2"}))
        }
    })
    .await;
    let started = Instant::now();
    // Throttling proves the request was not processed, so even create is retried in-call.
    let id = fake
        .client()
        .create_instance(&create_request())
        .await
        .unwrap();
    assert_eq!(id, "I-2");
    assert_eq!(fake.count(CREATE_PATH), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn create_instance_is_not_retried_after_a_5xx() {
    let fake = Fake::start(|_| Reply::json(500, error_body("systemError"))).await;
    let err = fake
        .client()
        .create_instance(&create_request())
        .await
        .unwrap_err();
    assert_eq!(fake.count(CREATE_PATH), 1);
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(err.may_have_been_processed());
}

#[tokio::test]
async fn create_instance_is_not_retried_after_an_unreadable_2xx() {
    let fake = Fake::start(|_| Reply::text(200, "<html>proxy</html>")).await;
    let err = fake
        .client()
        .create_instance(&create_request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DingTalkError::Decode { status: 200, .. }),
        "{err:?}"
    );
    assert!(err.may_have_been_processed());
    assert_eq!(fake.count(CREATE_PATH), 1);
}

#[tokio::test]
async fn idempotent_calls_are_retried_after_a_5xx() {
    let fake = Fake::start(|seen| {
        if seen.nth < 2 {
            Reply::text(502, "<html>Bad Gateway</html>")
        } else {
            space_ok()
        }
    })
    .await;
    assert_eq!(fake.client().approval_space("u").await.unwrap(), 42);
    assert_eq!(fake.count(SPACE_PATH), 3);
}

#[tokio::test]
async fn idempotent_retries_are_bounded() {
    let fake = Fake::start(|_| Reply::json(503, error_body("operationTimeout"))).await;
    let started = Instant::now();
    let err = fake.client().approval_space("u").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(fake.count(SPACE_PATH), 4, "one try and three retries");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let fake = Fake::start(|_| Reply::json(400, error_body("invalidAgentId"))).await;
    let err = fake.client().approval_space("u").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(fake.count(SPACE_PATH), 1);
}

#[tokio::test]
async fn a_long_throttle_pauses_every_clone_without_sending() {
    let fake =
        Fake::start(|_| Reply::json(403, json!({"status": 1111, "wait": 30, "punish": "deny"})))
            .await;
    let client = fake.client();
    let err = client.approval_space("u").await.unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::Throttled {
            retry_after: Duration::from_secs(30)
        }
    );
    assert_eq!(fake.count(SPACE_PATH), 1);

    let err = client.clone().get_instance("I").await.unwrap_err();
    let DingTalkError::Paused { retry_after, .. } = err else {
        panic!("{err:?}")
    };
    assert!(retry_after > Duration::from_secs(28));
    assert!(!err.may_have_been_processed());
    assert_eq!(fake.requests().len(), 1, "nothing sent while paused");
}

#[tokio::test]
async fn connect_failure_is_transport_not_sent_and_hides_the_token() {
    let fake = Fake::start(|_| space_ok()).await;
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client = DingTalk::new(ClientSettings {
        oapi_base: format!("http://{closed}"),
        ..fake.settings()
    })
    .unwrap();
    let err = client.union_id("u").await.unwrap_err();
    assert!(
        matches!(err, DingTalkError::Transport { sent: false, .. }),
        "{err:?}"
    );
    assert!(!err.may_have_been_processed());
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("tok-1") && !text.contains("access_token"),
        "{text}"
    );
}

#[tokio::test]
async fn timeout_is_transport_sent_and_create_is_not_repeated() {
    let fake = Fake::start(|_| {
        Reply::json(200, json!({"instanceId": "late"})).delayed(Duration::from_secs(3))
    })
    .await;
    let client = DingTalk::new(ClientSettings {
        request_timeout: Duration::from_millis(300),
        ..fake.settings()
    })
    .unwrap();
    let err = client.create_instance(&create_request()).await.unwrap_err();
    assert!(
        matches!(err, DingTalkError::Transport { sent: true, .. }),
        "{err:?}"
    );
    assert!(err.may_have_been_processed());
    assert_eq!(fake.count(CREATE_PATH), 1);
}

#[tokio::test]
async fn errors_never_show_the_token_or_the_secret() {
    let fake = Fake::start(|seen| {
        let token = seen
            .header("x-acs-dingtalk-access-token")
            .unwrap_or_default();
        Reply::json(
            400,
            json!({"code": "paramError", "message": format!("token {token} secret {APP_SECRET}")}),
        )
    })
    .await;
    let client = fake.client();
    let err = client.approval_space("u").await.unwrap_err();
    let text = format!("{err} {err:?} {client:?} {:?}", fake.settings());
    assert!(text.contains("[redacted]"), "{text}");
    assert!(
        !text.contains("tok-1") && !text.contains(APP_SECRET),
        "{text}"
    );

    let fake = Fake::with_token(
        |_| {
            Reply::json(
                400,
                json!({"code": "invalidClientIdOrSecret", "message": format!("bad secret {APP_SECRET}")}),
            )
        },
        |_| space_ok(),
    )
    .await;
    let err = fake.client().approval_space("u").await.unwrap_err();
    assert_eq!(err.endpoint(), "oauth2/accessToken");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(!format!("{err} {err:?}").contains(APP_SECRET));
    assert_eq!(fake.count(TOKEN_PATH), 1, "a bad secret is not retried");
}

/// Runs `run` on this thread and returns what it logged (at debug and above).
///
/// One subscriber serves the whole test binary and writes each thread's events to that
/// thread's buffer: a subscriber set per test makes tracing's per-callsite interest cache
/// depend on which test hits a callsite first, so a log line could go missing.
async fn logged<T>(run: impl std::future::Future<Output = T>) -> (T, String) {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local! {
        static CAPTURED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }
    struct ThreadLog;
    impl std::io::Write for ThreadLog {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            CAPTURED.with(|captured| {
                if let Some(buffer) = captured.borrow_mut().as_mut() {
                    buffer.extend_from_slice(bytes);
                }
            });
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| ThreadLog)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    CAPTURED.with(|captured| *captured.borrow_mut() = Some(Vec::new()));
    // The test runtime polls everything on this thread, the fake server included.
    let value = run.await;
    let bytes = CAPTURED.with(|captured| captured.borrow_mut().take().unwrap_or_default());
    (value, String::from_utf8(bytes).unwrap())
}

#[tokio::test]
async fn a_token_echoed_url_encoded_in_an_oapi_error_is_redacted_from_the_error_and_the_log() {
    // A token with characters a query string encodes: the echo is not its plain text.
    const TOKEN: &str = "tok+/=0123456789";
    let fake = Fake::with_token(
        |_| Reply::json(200, json!({"accessToken": TOKEN, "expireIn": 7200})),
        |seen| {
            let echo = format!("invalid request {}?{}", seen.path, seen.query);
            Reply::json(
                200,
                json!({"errcode": 60011, "errmsg": echo, "request_id": "r"}),
            )
        },
    )
    .await;
    let client = fake.client();

    let (result, log) = logged(client.union_id("manager4220")).await;

    let err = result.unwrap_err();
    assert!(
        fake.last().query.contains("access_token=tok%2B%2F%3D"),
        "{:?}",
        fake.last()
    );
    let text = format!("{err} {err:?}\n{log}");
    assert!(log.contains("DingTalk call failed"), "{log}");
    assert!(text.contains("[redacted]"), "{text}");
    for leak in [TOKEN, "tok%2B%2F%3D0123456789", "0123456789"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[tokio::test]
async fn an_access_token_echoed_by_a_failed_token_call_is_redacted() {
    // No token is known yet when the token call itself fails.
    let fake = Fake::with_token(
        |_| {
            Reply::json(
                400,
                json!({"code": "invalidParameter",
                       "message": r#"answer {"accessToken":"LEAKED-TOKEN-1","expireIn":7200} for access_token=LEAKED-TOKEN-2&x=1"#}),
            )
        },
        |_| space_ok(),
    )
    .await;

    let (result, log) = logged(fake.client().approval_space("u")).await;

    let err = result.unwrap_err();
    assert_eq!(err.endpoint(), "oauth2/accessToken");
    let text = format!("{err} {err:?}\n{log}");
    assert!(log.contains("DingTalk call failed"), "{log}");
    assert!(!text.contains("LEAKED-TOKEN"), "{text}");
    assert!(text.contains("x=1"), "only the token is cut: {text}");
}

#[tokio::test]
async fn settings_are_validated() {
    let fake = Fake::start(|_| space_ok()).await;
    for bad in [
        "not a url",
        "ftp://example.invalid",
        "http://127.0.0.1:1/?x=1",
    ] {
        let err = DingTalk::new(ClientSettings {
            api_base: bad.into(),
            ..fake.settings()
        })
        .unwrap_err();
        assert!(matches!(err, DingTalkError::Config(_)), "{bad}");
    }
}
