//! The optional HTTP listener of `run`: `/metrics` (Prometheus/OpenMetrics text) and
//! `/healthz` (database reachable, claim loop alive).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Worker;

/// The content type of the OpenMetrics text format, which Prometheus negotiates.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until `stop` is cancelled.
pub(crate) async fn serve(
    worker: Worker,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(worker);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

/// How long `/metrics` waits for the database's counts before answering 503.
const METRICS_DB_TIMEOUT: Duration = Duration::from_secs(5);

async fn metrics(State(worker): State<Worker>) -> Response {
    match tokio::time::timeout(METRICS_DB_TIMEOUT, worker.render_metrics()).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "database unavailable: no answer within {} s\n",
                METRICS_DB_TIMEOUT.as_secs()
            ),
        )
            .into_response(),
    }
}

async fn healthz(State(worker): State<Worker>) -> Response {
    let health = worker.health().await;
    let status = if health.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if health.healthy() { "ok" } else { "unhealthy" },
        "database": health.database.as_ref().map_or_else(|e| e.clone(), |()| "ok".to_string()),
        "claim_loop": if health.claim_loop_alive { "alive" } else { "stalled" },
        "claim_loop_idle_secs": health.claim_loop_idle_secs,
        "ready": health.ready,
    });
    (status, axum::Json(body)).into_response()
}
