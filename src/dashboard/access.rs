//! Who may read and act, decided for every request before its handler runs.
//!
//! - A listener on loopback (without `allow_remote`) answers only requests naming a loopback
//!   host, so a web page cannot reach it through a DNS name rebound to 127.0.0.1.
//! - With a token configured, every page and API answer needs it: `Authorization: Bearer`,
//!   or a session made by signing in with it. Without one (loopback only), all may.
//! - Every POST must come from this origin (`Sec-Fetch-Site`, else `Origin` against `Host`;
//!   `X-Forwarded-*` headers are not trusted) and, when it rides on a session cookie, carry
//!   the session's CSRF token. A POST with a bearer token carries no cookie to abuse. A POST
//!   with neither, on a loopback listener without a token, can only come from a program on
//!   this host (a browser always sends `Origin` on a POST), and is allowed under `/api/`.
//! - `read_only` refuses every POST but signing in and out.
//!
//! Tokens are compared in constant time (of their SHA-256 digests, which hides the length).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Dashboard;
use super::failure::Failure;
use super::filter::percent_encode;
use super::session::{self, Session};

/// Largest form body read for its CSRF token (the dashboard's forms are far smaller).
const FORM_LIMIT: usize = 64 * 1024;
/// The header an API client may send the CSRF token in instead of a form field.
const CSRF_HEADER: &str = "x-csrf-token";

/// What a handler knows of who is asking.
#[derive(Debug, Clone, Default)]
pub(crate) struct Viewer {
    /// The CSRF token for this browser's forms; none for a client without a session.
    pub(crate) csrf: Option<String>,
    /// A token is configured, so the pages offer to sign out.
    pub(crate) can_sign_out: bool,
}

/// The middleware: refuses what is not allowed, gives a browser without a session one, and
/// hands the handler a [`Viewer`].
pub(crate) async fn guard(
    State(dashboard): State<Dashboard>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let api = path.starts_with("/api/");
    let refuse = |failure: Failure| {
        if api { failure.json() } else { failure.page() }
    };
    let settings = dashboard.settings();
    if settings.loopback_hosts_only && !loopback_host(request.headers()) {
        return refuse(Failure::Forbidden(
            "this dashboard listens on loopback and answers only to a loopback host name \
             (127.0.0.1, [::1] or localhost)"
                .to_owned(),
        ));
    }
    if path.starts_with("/static/") {
        return next.run(request).await;
    }
    let token_set = settings.token.is_some();
    let session = session::id_from_cookies(
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok()),
    )
    .and_then(|id| dashboard.sessions().get(&id).map(|found| (id, found)));
    let bearer = match bearer_token(request.headers()) {
        None => false,
        Some(given) => match &settings.token {
            Some(token) if same_secret(given, token.expose()) => true,
            _ => return refuse(Failure::Unauthorized("wrong bearer token".to_owned())),
        },
    };
    let signed_in =
        !token_set || bearer || session.as_ref().is_some_and(|(_, found)| found.signed_in);
    let sign_in_page = path == "/login";
    let mut viewer = Viewer {
        csrf: session.as_ref().map(|(_, found)| found.csrf.clone()),
        can_sign_out: token_set,
    };

    if request.method() != Method::GET && request.method() != Method::HEAD {
        if let Err(why) = same_origin(request.headers()) {
            return refuse(Failure::Forbidden(why));
        }
        if settings.read_only && !sign_in_page && path != "/logout" {
            return refuse(Failure::Forbidden(
                "this dashboard is read-only ([dashboard] read_only = true)".to_owned(),
            ));
        }
        if !signed_in && !sign_in_page {
            return refuse(Failure::Unauthorized(
                "sign in with the dashboard token, or send Authorization: Bearer TOKEN".to_owned(),
            ));
        }
        let mut request = request;
        if !bearer {
            match &session {
                Some((_, found)) => match with_csrf_checked(request, found).await {
                    Ok(checked) => request = checked,
                    Err(failure) => return refuse(failure),
                },
                None if api && !token_set => {}
                None => {
                    return refuse(Failure::Forbidden(
                        "no session: reload the page and submit again".to_owned(),
                    ));
                }
            }
        }
        request.extensions_mut().insert(viewer);
        return next.run(request).await;
    }

    if !signed_in && !sign_in_page {
        if api {
            return refuse(Failure::Unauthorized(
                "send Authorization: Bearer TOKEN (the dashboard token)".to_owned(),
            ));
        }
        let wanted = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        return Redirect::to(&format!("/login?next={}", percent_encode(&wanted))).into_response();
    }
    // A browser without a session gets one: its forms need a CSRF token tied to it.
    let mut new_cookie = None;
    if session.is_none() && !bearer && !api {
        let (id, made) = dashboard.sessions().create(false);
        viewer.csrf = Some(made.csrf);
        new_cookie = Some(session::cookie(&id, settings.secure_cookie));
    }
    let mut request = request;
    request.extensions_mut().insert(viewer);
    let mut response = next.run(request).await;
    if let Some(cookie) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Whether two secrets are equal, in time that does not depend on where they differ or on
/// their lengths.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

/// The token of an `Authorization: Bearer …` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the `Host` header names a loopback address or `localhost`.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a POST a browser sent from another origin: `Sec-Fetch-Site` (set by the browser,
/// beyond a page's reach) when present, else `Origin` against `Host`. A request with neither
/// is not a browser's.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            other => Err(format!(
                "cross-origin request refused (Sec-Fetch-Site: {})",
                String::from_utf8_lossy(other)
            )),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let authority = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, authority)| authority.as_bytes());
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(format!(
            "cross-origin request refused (Origin: {})",
            String::from_utf8_lossy(origin.as_bytes())
        )),
    }
}

/// Checks the CSRF token of a POST riding on `session`: from the `X-CSRF-Token` header, else
/// the `csrf` field of its form body (read here, and put back for the handler).
async fn with_csrf_checked(request: Request, session: &Session) -> Result<Request, Failure> {
    let stale = || {
        Failure::Forbidden(
            "the form's CSRF token is missing or stale: reload the page and submit again"
                .to_owned(),
        )
    };
    if let Some(given) = request.headers().get(CSRF_HEADER) {
        let given = given.to_str().unwrap_or_default();
        return if same_secret(given, &session.csrf) {
            Ok(request)
        } else {
            Err(stale())
        };
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| Failure::BadRequest("the form is too large".to_owned()))?;
    match form_field(&bytes, "csrf") {
        Some(given) if same_secret(given, &session.csrf) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(stale()),
    }
}

/// The raw value of field `name` in a urlencoded form (tokens are hex: nothing to decode).
fn form_field<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_loopback_host_names_pass_the_rebinding_check() {
        for host in [
            "127.0.0.1:9188",
            "localhost:9188",
            "[::1]:9188",
            "LOCALHOST",
        ] {
            assert!(loopback_host(&headers(&[("host", host)])), "{host}");
        }
        for host in [
            "evil.example:9188",
            "10.0.0.1:9188",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(&headers(&[("host", host)])), "{host}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn the_fetch_site_header_wins_over_origin_and_a_foreign_origin_is_refused() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        let local = [
            ("host", "127.0.0.1:9188"),
            ("origin", "http://127.0.0.1:9188"),
        ];
        assert!(same_origin(&headers(&local)).is_ok());
        let foreign = [
            ("host", "127.0.0.1:9188"),
            ("origin", "https://evil.example"),
        ];
        assert!(same_origin(&headers(&foreign)).is_err());
        assert!(same_origin(&headers(&[("host", "h"), ("origin", "null")])).is_err());
        assert!(same_origin(&HeaderMap::new()).is_ok(), "not a browser");
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret("0123456789abcdef", "0123456789abcdef"));
        assert!(!same_secret("0123456789abcdeF", "0123456789abcdef"));
        assert!(!same_secret("0123456789abcdef0", "0123456789abcdef"));
        assert!(!same_secret("", "0123456789abcdef"));
    }
}
