//! `/login` and `/logout`: signing in with the dashboard token sets a session cookie. A new
//! session is made at sign-in (its id never the one the visitor had), so a session id
//! planted before cannot be carried into a signed-in one.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::csrf_field;
use crate::dashboard::Dashboard;
use crate::dashboard::access::{Viewer, same_secret};
use crate::dashboard::session;

/// How long a wrong token waits for its answer, to slow guessing.
const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);

/// Where to go after signing in.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Next {
    next: String,
}

/// The sign-in form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SignIn {
    token: String,
    next: String,
}

pub(crate) async fn login_form(
    State(dashboard): State<Dashboard>,
    Extension(viewer): Extension<Viewer>,
    Query(next): Query<Next>,
) -> Response {
    if dashboard.settings().token.is_none() {
        return Redirect::to("/").into_response();
    }
    sign_in_page(&viewer, &local_path(&next.next), None).into_response()
}

pub(crate) async fn login_submit(
    State(dashboard): State<Dashboard>,
    Extension(viewer): Extension<Viewer>,
    headers: axum::http::HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let settings = dashboard.settings();
    let next = local_path(&form.next);
    let Some(token) = &settings.token else {
        return Redirect::to("/").into_response();
    };
    if !same_secret(form.token.trim(), token.expose()) {
        tokio::time::sleep(WRONG_TOKEN_DELAY).await;
        let page = sign_in_page(&viewer, &next, Some("That is not the dashboard token."));
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    if let Some(old) = session::id_from_cookies(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    ) {
        dashboard.sessions().remove(&old);
    }
    let (id, _) = dashboard.sessions().create(true);
    let mut response = Redirect::to(&next).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::cookie(&id, settings.secure_cookie)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) async fn logout(
    State(dashboard): State<Dashboard>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(id) = session::id_from_cookies(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    ) {
        dashboard.sessions().remove(&id);
    }
    let settings = dashboard.settings();
    let to = if settings.token.is_some() {
        "/login"
    } else {
        "/"
    };
    let mut response = Redirect::to(to).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::expired_cookie(settings.secure_cookie)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn sign_in_page(viewer: &Viewer, next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · approval-worker" }
                link rel="stylesheet" href="/static/style.css";
                link rel="icon" href="data:,";
            }
            body {
                main.narrow {
                    h1 { "approval-worker" }
                    form.signin method="post" action="/login" {
                        (csrf_field(viewer))
                        input type="hidden" name="next" value=(next);
                        label { "Dashboard token "
                            input type="password" name="token" autocomplete="current-password"
                                autofocus required;
                        }
                        button type="submit" { "Sign in" }
                    }
                    @if let Some(error) = error { p.error { (error) } }
                    p.quiet {
                        "The token is configured on the worker's host, in "
                        code { "[dashboard] token_file" } " or " code { "token_env" } "."
                    }
                }
            }
        }
    }
}

/// `next` when it is a path on this site, else `/`: never a redirect to another host.
fn local_path(next: &str) -> String {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(char::is_control);
    if local {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn sign_in_redirects_only_to_paths_of_this_site() {
        assert_eq!(local_path("/jobs?status=failed"), "/jobs?status=failed");
        for foreign in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "",
        ] {
            assert_eq!(local_path(foreign), "/", "{foreign}");
        }
    }
}
