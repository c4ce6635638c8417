//! Who may read and act: the token, sessions and sign-in, CSRF, cross-origin and foreign
//! hosts, read-only mode, and the headers every answer carries.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use super::{Fixture, HOST, Setup, TOKEN, bearer_post, form_post};
use crate::dashboard::headers::CONTENT_SECURITY_POLICY;

const ORIGIN: &str = "http://127.0.0.1:9188";

#[tokio::test]
async fn an_action_without_the_token_is_refused_and_changes_nothing() {
    let f = Fixture::new(Setup {
        token: true,
        ..Setup::default()
    })
    .await;
    let retry = format!("/api/jobs/{}/retry", f.failed);
    let plain = Request::post(&retry)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    let answer = f.send(plain).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));
    let wrong = f
        .send(bearer_post(&retry, "dashboard-token-0123456789abcdeX"))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let page_form = f
        .send(form_post(
            &format!("/jobs/{}/retry", f.failed),
            "",
            None,
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(page_form.status, StatusCode::UNAUTHORIZED);
    let bulk = f
        .send(bearer_post("/api/bulk/retry?status=failed", "nope"))
        .await;
    assert_eq!(bulk.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.status_of(f.failed).await, "failed", "nothing was retried");

    let right = f.send(bearer_post(&retry, TOKEN)).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.body);
    assert_eq!(f.status_of(f.failed).await, "queued");
}

#[tokio::test]
async fn with_a_token_even_reading_needs_it() {
    let f = Fixture::new(Setup {
        token: true,
        ..Setup::default()
    })
    .await;
    let page = f.get("/jobs", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login?next=%2Fjobs");
    let api = f.get("/api/overview", None).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert!(!api.body.contains("by_status"), "{}", api.body);
    let with_bearer = f
        .send(
            Request::get("/api/overview")
                .header(header::HOST, HOST)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(with_bearer.status, StatusCode::OK);
}

#[tokio::test]
async fn signing_in_sets_a_new_http_only_strict_session_and_signing_out_ends_it() {
    let f = Fixture::new(Setup {
        token: true,
        ..Setup::default()
    })
    .await;
    let form = f.get("/login", None).await;
    let visitor = form.session_cookie().unwrap();
    let csrf = form.csrf().unwrap();
    let wrong = f
        .send(form_post(
            "/login",
            &format!("csrf={csrf}&token=guess-guess-guess-guess"),
            Some(&visitor),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.session_cookie().is_none());
    assert_eq!(
        f.get("/", Some(&visitor)).await.status,
        StatusCode::SEE_OTHER
    );

    let done = f
        .send(form_post(
            "/login",
            &format!("csrf={csrf}&token={TOKEN}&next=%2Fjobs%3Fstatus%3Dfailed"),
            Some(&visitor),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), "/jobs?status=failed");
    let cookie = done.set_cookie().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = done.session_cookie().unwrap();
    assert_ne!(session, visitor, "signing in makes a new session");
    let page = f.get("/jobs?status=failed", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Sign out"));

    let out = f
        .send(form_post(
            "/logout",
            &format!("csrf={}", page.csrf().unwrap()),
            Some(&session),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(
        f.get("/", Some(&session)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_cross_origin_post_is_refused_even_with_a_valid_session_and_csrf_token() {
    let f = Fixture::new(Setup::default()).await;
    let (cookie, csrf) = f.browser_session().await;
    let path = format!("/jobs/{}/retry", f.failed);
    let body = format!("csrf={csrf}");
    let foreign = f
        .send(form_post(
            &path,
            &body,
            Some(&cookie),
            Some("https://evil.example"),
        ))
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{}", foreign.body);
    assert!(foreign.body.contains("cross-origin"), "{}", foreign.body);
    let mut cross_site = form_post(&path, &body, Some(&cookie), None);
    cross_site
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(f.send(cross_site).await.status, StatusCode::FORBIDDEN);
    let api = Request::post("/api/bulk/retry?status=failed")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(api).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.status_of(f.failed).await, "failed", "nothing was retried");

    let same = f
        .send(form_post(&path, &body, Some(&cookie), Some(ORIGIN)))
        .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER, "{}", same.body);
    assert_eq!(same.location(), format!("/jobs/{}?done=retry", f.failed));
    assert_eq!(f.status_of(f.failed).await, "queued");
}

#[tokio::test]
async fn a_post_without_or_with_a_wrong_csrf_token_is_refused() {
    let f = Fixture::new(Setup::default()).await;
    let (cookie, csrf) = f.browser_session().await;
    let (_, other_csrf) = f.browser_session().await;
    let path = format!("/jobs/{}/retry", f.failed);
    for body in [
        String::new(),
        "csrf=".to_owned(),
        format!("csrf={}", csrf.to_uppercase()),
        format!("csrf={other_csrf}"),
    ] {
        let answer = f
            .send(form_post(&path, &body, Some(&cookie), Some(ORIGIN)))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{body:?}: {}",
            answer.body
        );
    }
    let bulk = f
        .send(form_post(
            "/bulk/cancel",
            "status=queued",
            Some(&cookie),
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(bulk.status, StatusCode::FORBIDDEN);
    let no_session = f
        .send(form_post(
            &path,
            &format!("csrf={csrf}"),
            None,
            Some(ORIGIN),
        ))
        .await;
    assert_eq!(no_session.status, StatusCode::FORBIDDEN);
    assert_eq!(f.status_of(f.failed).await, "failed");
    assert_eq!(f.status_of(f.waiting).await, "queued");
}

#[tokio::test]
async fn read_only_refuses_every_action_and_offers_none() {
    let f = Fixture::new(Setup {
        token: true,
        read_only: true,
    })
    .await;
    let (cookie, csrf) = f.signed_in().await;
    let body = format!("csrf={csrf}");
    let pages = [
        format!("/jobs/{}/retry", f.failed),
        format!("/jobs/{}/cancel", f.waiting),
        "/bulk/retry".to_owned(),
        "/bulk/cancel".to_owned(),
    ];
    for path in &pages {
        let answer = f
            .send(form_post(path, &body, Some(&cookie), Some(ORIGIN)))
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert!(answer.body.contains("read-only"), "{path}: {}", answer.body);
    }
    let apis = [
        format!("/api/jobs/{}/retry", f.failed),
        format!("/api/jobs/{}/cancel", f.waiting),
        "/api/bulk/retry".to_owned(),
        "/api/bulk/cancel".to_owned(),
    ];
    for path in &apis {
        assert_eq!(
            f.send(bearer_post(path, TOKEN)).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    assert_eq!(f.status_of(f.failed).await, "failed");
    assert_eq!(f.status_of(f.waiting).await, "queued");
    assert!(!f.queue.get(f.waiting).await.unwrap().cancel_requested);

    let job = f.get(&format!("/jobs/{}", f.failed), Some(&cookie)).await;
    assert_eq!(job.status, StatusCode::OK);
    assert!(job.body.contains("read-only"));
    assert!(
        !job.body.contains("/retry\""),
        "no retry form: {}",
        job.body
    );
    let list = f.get("/jobs?status=failed", Some(&cookie)).await;
    assert!(!list.body.contains("/bulk/"), "no bulk links");
    let confirm = f.get("/bulk/retry?status=failed", Some(&cookie)).await;
    assert_eq!(confirm.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_request_naming_a_foreign_host_is_refused_on_a_loopback_listener() {
    let f = Fixture::new(Setup::default()).await;
    let rebound = Request::get("/api/overview")
        .header(header::HOST, "attacker.example:9188")
        .body(Body::empty())
        .unwrap();
    let answer = f.send(rebound).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(!answer.body.contains("by_status"));
    assert_eq!(f.get("/api/overview", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let f = Fixture::new(Setup {
        token: true,
        ..Setup::default()
    })
    .await;
    for path in ["/", "/login", "/static/style.css", "/api/jobs", "/nowhere"] {
        let answer = f.get(path, None).await;
        let get = |name: header::HeaderName| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            get(header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(get(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{path}");
        assert_eq!(get(header::REFERRER_POLICY), "no-referrer", "{path}");
    }
    assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
}
