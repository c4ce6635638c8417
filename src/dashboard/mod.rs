//! The operators' web dashboard: an HTTP face like `cli/`, reading and acting through
//! `queue/` only. Pages are rendered on the server (maud) with plain HTML forms and one
//! embedded stylesheet, no script; everything they show is also JSON under `/api/`.
//!
//! Layout: `routes` (the router), `access` (who may read and act: the token, sessions, CSRF
//! and cross-origin checks), `headers` (Content-Security-Policy and friends), `filter` (the
//! jobs filter as query parameters), `view` (what the pages and the API show, loaded from the
//! queue), `pages/` (HTML), `api` (JSON), `actions` (retry, cancel, bulk, pause and resume a
//! queue), `failure` (errors as answers).

mod access;
mod actions;
mod api;
mod failure;
mod filter;
mod headers;
mod pages;
mod routes;
mod session;
mod view;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::queue::Queue;
use crate::secret::Secret;

pub use routes::router;

/// Jobs one bulk action takes at most: one request then holds the database's write lock for
/// a bounded time (well under a second); the operator repeats it for more.
pub(crate) const BULK_CAP: i64 = 10_000;

/// What the dashboard needs from the configuration.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// Guards every page, API answer and action when set.
    token: Option<Secret>,
    /// Refuse every action.
    read_only: bool,
    /// Mark the session cookie `Secure` (browsers reach it over https).
    secure_cookie: bool,
    /// Answer only requests naming a loopback host: the listener is on loopback and not
    /// meant for others, so a request naming another host is a DNS-rebinding attempt.
    loopback_hosts_only: bool,
    /// The attempt limit of jobs that set none (`[worker] max_attempts`).
    max_attempts: i64,
    /// `[dingtalk] monthly_call_budget`.
    monthly_call_budget: Option<u64>,
    /// `[dingtalk] app_key`, whose calls the budget counts (all apps when empty).
    app_key: String,
    /// Jobs one bulk action takes at most.
    bulk_cap: i64,
}

impl DashboardSettings {
    /// Settings for a dashboard listening on `listen`, from a validated config; reads the
    /// token. A listener other hosts reach without `allow_remote`, or `allow_remote` without
    /// a token, is a configuration error.
    pub fn from_config(
        config: &Config,
        listen: SocketAddr,
    ) -> Result<DashboardSettings, ConfigError> {
        let dashboard = &config.dashboard;
        dashboard
            .check_listen(listen)
            .map_err(|problem| ConfigError::Invalid {
                path: "(loaded config)".into(),
                problems: vec![format!("[dashboard] listen: {problem}")],
            })?;
        Ok(DashboardSettings {
            token: dashboard.token()?,
            read_only: dashboard.read_only,
            secure_cookie: dashboard.secure_cookie,
            loopback_hosts_only: listen.ip().is_loopback() && !dashboard.allow_remote,
            max_attempts: i64::from(config.worker.max_attempts),
            monthly_call_budget: config.dingtalk.monthly_call_budget,
            app_key: config.dingtalk.app_key.clone(),
            bulk_cap: BULK_CAP,
        })
    }

    /// The same with another bulk cap (tests use a small one).
    pub fn with_bulk_cap(mut self, cap: i64) -> DashboardSettings {
        self.bulk_cap = cap.max(1);
        self
    }
}

/// The dashboard's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Queue,
    settings: DashboardSettings,
    sessions: session::Sessions,
}

impl Dashboard {
    /// A dashboard over `queue`.
    pub fn new(queue: Queue, settings: DashboardSettings) -> Dashboard {
        Dashboard {
            inner: Arc::new(Inner {
                queue,
                settings,
                sessions: session::Sessions::default(),
            }),
        }
    }

    fn queue(&self) -> &Queue {
        &self.inner.queue
    }

    fn settings(&self) -> &DashboardSettings {
        &self.inner.settings
    }

    fn sessions(&self) -> &session::Sessions {
        &self.inner.sessions
    }
}

/// Serves the dashboard on `listener` until `stop` is cancelled.
pub async fn serve(
    dashboard: Dashboard,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(dashboard))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
