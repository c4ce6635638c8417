//! `dashboard`: the operators' web dashboard against the database alone (no worker, no
//! DingTalk), for a host that runs no worker; and the same dashboard started by `run` when
//! `[dashboard] listen` is set.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{CliError, open_existing_queue};
use crate::config::{Config, DEFAULT_DASHBOARD_LISTEN};
use crate::dashboard::{Dashboard, DashboardSettings, serve};
use crate::queue::Queue;

/// Examples shown by `dashboard --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  approval-worker dashboard                          # http://127.0.0.1:9188/
  approval-worker dashboard --listen 127.0.0.1:8080
  APPROVAL_WORKER_DASHBOARD_TOKEN=$(cat /run/secrets/dash) approval-worker dashboard

`run` serves the same dashboard when [dashboard] listen is set. A listener other hosts can
reach needs [dashboard] allow_remote = true and a token (token_file or token_env); see
docs/operations.md.";

/// `dashboard` arguments.
#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen [default: [dashboard] listen, else 127.0.0.1:9188].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

pub(crate) async fn dashboard(config: &Config, args: DashboardArgs) -> Result<(), CliError> {
    let default: SocketAddr = DEFAULT_DASHBOARD_LISTEN
        .parse()
        .context("the default dashboard address")?;
    let listen = args.listen.or(config.dashboard.listen).unwrap_or(default);
    let settings = DashboardSettings::from_config(config, listen)?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let queue = open_existing_queue(config).await?;
    let stop = CancellationToken::new();
    let server = start(queue.clone(), settings, listen, stop.clone()).await?;
    let signal = stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: stopping the dashboard");
        signal.cancel();
    });
    let served = server.await;
    queue.close().await;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::Runtime(
            anyhow::Error::new(e).context("the dashboard's listener failed"),
        )),
        Err(e) => Err(CliError::Runtime(
            anyhow::Error::new(e).context("the dashboard task failed"),
        )),
    }
}

/// Binds `listen` and serves the dashboard over `queue` in the background until `stop`.
pub(crate) async fn start(
    queue: Queue,
    settings: DashboardSettings,
    listen: SocketAddr,
    stop: CancellationToken,
) -> Result<JoinHandle<std::io::Result<()>>, CliError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("[dashboard] listen: cannot listen on {listen}"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(address = %bound, "serving the dashboard at http://{bound}/");
    Ok(tokio::spawn(serve(
        Dashboard::new(queue, settings),
        listener,
        stop,
    )))
}

/// SIGTERM, SIGINT or SIGHUP.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut term), Ok(mut hup)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = hup.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
