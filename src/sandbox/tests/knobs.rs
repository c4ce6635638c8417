//! The knobs an integrator turns from outside: fault specs (`--fault`), the admin fault
//! route, and latency on every DingTalk answer.

use std::time::{Duration, Instant};

use serde_json::json;

use super::super::{Endpoint, Fault, FaultSpec, FaultSpecError, Latency, SandboxOptions};
use super::Harness;

#[test]
fn fault_specs_parse_with_a_default_count_of_one() {
    let cases = [
        (
            "create_instance:server_error(503):2",
            Endpoint::CreateInstance,
            Fault::ServerError(503),
            2,
        ),
        (
            "commit:lose_response",
            Endpoint::Commit,
            Fault::LoseResponse,
            1,
        ),
        (
            "token:server_error",
            Endpoint::Token,
            Fault::ServerError(500),
            1,
        ),
        (
            "space:throttle_pascal_case:3",
            Endpoint::Space,
            Fault::Throttle { pascal_case: true },
            3,
        ),
        (
            "oss_put:latency(800ms)",
            Endpoint::OssPut,
            Fault::Latency(Duration::from_millis(800)),
            1,
        ),
        (
            "upload_info:latency(250)",
            Endpoint::UploadInfo,
            Fault::Latency(Duration::from_millis(250)),
            1,
        ),
        (
            "user_get:throttle",
            Endpoint::UserGet,
            Fault::Throttle { pascal_case: false },
            1,
        ),
        (
            "get_instance:throttle_page",
            Endpoint::GetInstance,
            Fault::ThrottlePage,
            1,
        ),
        (
            "legacy_token:token_revoked",
            Endpoint::LegacyToken,
            Fault::TokenRevoked,
            1,
        ),
        (
            "form_schema:drop_connection:10",
            Endpoint::FormSchema,
            Fault::DropConnection,
            10,
        ),
    ];
    for (text, endpoint, fault, count) in cases {
        assert_eq!(
            text.parse::<FaultSpec>(),
            Ok(FaultSpec {
                endpoint,
                fault,
                count
            }),
            "{text}"
        );
    }
}

#[test]
fn every_fault_kind_reads_back_what_it_displays() {
    let faults = [
        Fault::ServerError(502),
        Fault::Throttle { pascal_case: false },
        Fault::Throttle { pascal_case: true },
        Fault::ThrottlePage,
        Fault::TokenRevoked,
        Fault::DropConnection,
        Fault::LoseResponse,
        Fault::Latency(Duration::from_millis(1200)),
    ];
    for fault in faults {
        assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault.clone()));
        let spec = FaultSpec {
            endpoint: Endpoint::Commit,
            fault,
            count: 4,
        };
        assert_eq!(spec.to_string().parse::<FaultSpec>(), Ok(spec));
    }
}

#[test]
fn a_bad_fault_spec_names_the_part_that_is_wrong() {
    let cases = [
        (
            "create_instance",
            "`create_instance`: expected ENDPOINT:KIND[:COUNT]",
        ),
        (
            "create:throttle",
            "unknown sandbox endpoint `create` (expected one of token,",
        ),
        (
            "commit:boom",
            "unknown fault kind `boom` (expected one of server_error,",
        ),
        (
            "commit:server_error(404)",
            "fault kind `server_error(404)`: the status must be 500 to 599",
        ),
        (
            "commit:server_error(abc)",
            "fault kind `server_error(abc)`: the status must be 500",
        ),
        (
            "commit:latency(fast)",
            "fault kind `latency(fast)`: expected milliseconds",
        ),
        (
            "commit:throttle:0",
            "count `0`: expected how many calls suffer the fault, 1 or more",
        ),
        (
            "commit:throttle:many",
            "count `many`: expected how many calls",
        ),
        (
            "commit:throttle:2:3",
            "`commit:throttle:2:3`: expected ENDPOINT:KIND[:COUNT]",
        ),
    ];
    for (text, message) in cases {
        let err: FaultSpecError = text.parse::<FaultSpec>().unwrap_err();
        assert!(
            err.to_string().starts_with(message),
            "{text}: {err} (expected {message})"
        );
    }
}

#[tokio::test]
async fn the_admin_fault_route_queues_faults_that_strike_the_next_calls() {
    let h = Harness::start().await;
    let admin = |method: reqwest::Method, body: Option<serde_json::Value>| {
        let mut request = h.http.request(method, format!("{}/sandbox/faults", h.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { super::answer(request.send().await.unwrap()).await }
    };
    let queued = admin(
        reqwest::Method::POST,
        Some(json!({"endpoint": "token", "fault": "server_error(503)", "count": 2})),
    )
    .await;
    assert_eq!(queued.status, 200, "{}", queued.body);
    assert_eq!(
        queued.body,
        json!({"endpoint": "token", "fault": "server_error(503)", "count": 2, "queued": 2})
    );
    let again = admin(
        reqwest::Method::POST,
        Some(json!({"endpoint": "token", "fault": "throttle"})),
    )
    .await;
    assert_eq!(again.body["count"], 1);
    assert_eq!(again.body["queued"], 3);
    let listed = admin(reqwest::Method::GET, None).await;
    assert_eq!(
        listed.body["faults"],
        json!([
            {"endpoint": "token", "fault": "server_error(503)", "count": 2},
            {"endpoint": "token", "fault": "throttle", "count": 1},
        ])
    );

    let body = json!({"appKey": super::super::DEFAULT_APP_KEY,
                      "appSecret": super::super::DEFAULT_APP_SECRET});
    let mut answers = Vec::new();
    for _ in 0..4 {
        let answer = h.post("/v1.0/oauth2/accessToken", None, body.clone()).await;
        answers.push((
            answer.status,
            answer.body["code"].as_str().map(str::to_owned),
        ));
    }
    assert_eq!(
        answers,
        [
            (503, Some("systemError".to_owned())),
            (503, Some("systemError".to_owned())),
            (
                403,
                Some("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi".to_owned())
            ),
            (200, None),
        ]
    );
    let recorded: Vec<Option<String>> = h.sandbox.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        recorded,
        [
            Some("server_error(503)".to_owned()),
            Some("server_error(503)".to_owned()),
            Some("throttle".to_owned()),
            None
        ],
        "admin calls are not recorded; each faulted call is"
    );
    assert_eq!(
        admin(reqwest::Method::GET, None).await.body["faults"],
        json!([])
    );

    admin(
        reqwest::Method::POST,
        Some(json!({"endpoint": "commit", "fault": "lose_response", "count": 5})),
    )
    .await;
    assert_eq!(
        admin(reqwest::Method::DELETE, None).await.body["cleared"],
        5
    );
    assert_eq!(
        admin(reqwest::Method::GET, None).await.body["faults"],
        json!([])
    );
}

#[tokio::test]
async fn the_admin_fault_route_refuses_a_bad_fault_naming_the_part() {
    let h = Harness::start().await;
    let cases = [
        (
            json!({"endpoint": "create", "fault": "throttle"}),
            "unknown sandbox endpoint `create`",
        ),
        (
            json!({"endpoint": "commit", "fault": "boom"}),
            "unknown fault kind `boom`",
        ),
        (
            json!({"endpoint": "commit", "fault": "throttle", "count": 0}),
            "count `0`",
        ),
        (
            json!({"endpoint": "commit", "kind": "throttle"}),
            "unknown field `kind`",
        ),
    ];
    for (body, message) in cases {
        let answer = super::answer(
            h.http
                .post(format!("{}/sandbox/faults", h.base))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.body["code"], "invalidParameter");
        assert!(
            answer.body["message"].as_str().unwrap().contains(message),
            "{body}: {}",
            answer.body
        );
    }
    assert!(h.sandbox.shared.lock().pending_faults().is_empty());
}

#[tokio::test]
async fn faults_in_the_options_strike_from_the_first_call() {
    let h = Harness::with(SandboxOptions {
        faults: vec!["token:throttle_pascal_case:2".parse().unwrap()],
        ..SandboxOptions::default()
    })
    .await;
    let body = json!({"appKey": super::super::DEFAULT_APP_KEY,
                      "appSecret": super::super::DEFAULT_APP_SECRET});
    for _ in 0..2 {
        let answer = h.post("/v1.0/oauth2/accessToken", None, body.clone()).await;
        assert_eq!(answer.status, 403);
        assert_eq!(
            answer.body["Code"],
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"
        );
    }
    h.token().await;
}

/// This host's address on its outward interface, if it has one: connecting a UDP socket
/// sends nothing, it only picks the route.
fn outward_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("203.0.113.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn admin_routes_answer_loopback_clients_only_while_the_api_answers_everyone() {
    let Some(ip) = outward_ip() else {
        eprintln!("skipped: this host has no address besides loopback");
        return;
    };
    let h = Harness::with(SandboxOptions {
        bind: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        ..SandboxOptions::default()
    })
    .await;
    let port = h.sandbox.addr.port();
    let outside = format!("http://{ip}:{port}");
    for (method, path) in [
        (reqwest::Method::GET, "/sandbox/faults"),
        (reqwest::Method::POST, "/sandbox/faults"),
        (reqwest::Method::GET, "/sandbox/instances"),
    ] {
        let answer = super::answer(
            h.http
                .request(method.clone(), format!("{outside}{path}"))
                .json(&json!({"endpoint": "token", "fault": "throttle"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.body);
        assert_eq!(answer.body["code"], "Forbidden.AdminLoopbackOnly");
    }
    assert!(h.sandbox.shared.lock().pending_faults().is_empty());
    let token = h
        .http
        .post(format!("{outside}/v1.0/oauth2/accessToken"))
        .json(&json!({"appKey": super::super::DEFAULT_APP_KEY,
                      "appSecret": super::super::DEFAULT_APP_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        token.status(),
        200,
        "DingTalk's own API is not loopback-only"
    );
    let local = h
        .http
        .get(format!("{}/sandbox/faults", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
}

#[tokio::test]
async fn latency_delays_every_dingtalk_answer_but_not_the_oss_put() {
    // Margins of a second either way: a loaded test machine must not fail this.
    let h = Harness::with(SandboxOptions {
        latency: Some(Latency {
            base: Duration::from_millis(1200),
            jitter: Duration::from_millis(200),
        }),
        ..SandboxOptions::default()
    })
    .await;
    let started = Instant::now();
    let token = h.token().await;
    let token_time = started.elapsed();
    let started = Instant::now();
    let schema = h
        .get(
            "/v1.0/workflow/forms/schemas/processCodes?processCode=PROC-TEST",
            &token,
        )
        .await;
    let schema_time = started.elapsed();
    assert_eq!(schema.status, 200);
    // An OSS PUT for no ticket is refused by OSS itself, with no DingTalk latency.
    let started = Instant::now();
    let put = h
        .http
        .put(format!("{}/oss/no-such-object", h.base))
        .body("x")
        .send()
        .await
        .unwrap();
    let put_time = started.elapsed();
    assert_eq!(put.status(), 403);
    let floor = Duration::from_millis(1000);
    assert!(token_time >= floor, "token answered after {token_time:?}");
    assert!(
        schema_time >= floor,
        "schema answered after {schema_time:?}"
    );
    assert!(
        put_time < floor,
        "the OSS PUT took {put_time:?}, as long as a delayed DingTalk call"
    );
    let endpoints: Vec<Endpoint> = h.sandbox.requests().iter().map(|r| r.endpoint).collect();
    assert_eq!(
        endpoints,
        [Endpoint::Token, Endpoint::FormSchema, Endpoint::OssPut]
    );
}
