//! The router: every route, and the layers around them (security headers outermost, so
//! refusals carry them too; then the access guard).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use super::failure::Failure;
use super::{Dashboard, access, api, headers, pages};

/// The stylesheet, embedded: the dashboard works offline and serves no file from disk.
const STYLE: &str = include_str!("assets/style.css");
/// Largest request body accepted (forms and API calls are small).
const BODY_LIMIT: usize = 64 * 1024;

/// The dashboard's routes.
pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/jobs", get(pages::jobs))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/{action}", post(pages::job_action))
        .route(
            "/bulk/{action}",
            get(pages::bulk_confirm).post(pages::bulk_perform),
        )
        .route("/queues/{action}", post(pages::queue_action))
        .route("/login", get(pages::login_form).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route("/static/style.css", get(style))
        .route("/api/overview", get(api::overview))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/{action}", post(api::job_action))
        .route(
            "/api/bulk/{action}",
            get(api::bulk_count).post(api::bulk_action),
        )
        .route("/api/queues/{name}/{action}", post(api::queue_action))
        .fallback(not_found)
        .layer(from_fn_with_state(dashboard.clone(), access::guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(map_response(headers::secure))
        .with_state(dashboard)
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    let failure = Failure::NotFound(format!("no page at {}", uri.path()));
    if uri.path().starts_with("/api/") {
        failure.json()
    } else {
        failure.page()
    }
}
