//! `run`: the daemon. Builds the clients and the pool from config, and turns SIGTERM/SIGINT
//! into a graceful drain (a second signal stops at once).

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{CliError, open_queue};
use crate::approval::Approval;
use crate::config::Config;
use crate::dingtalk::{ClientSettings, DingTalk};
use crate::oss::Oss;
use crate::secret::Secret;
use crate::worker::{Worker, WorkerSettings};

/// Runs `run`.
pub async fn run(config: &Config) -> Result<(), CliError> {
    let secret = config.validate_for_run()?;
    let queue = open_queue(config).await?;
    let worker = build_worker(config, secret, queue.clone())?;
    let shutdown = CancellationToken::new();
    let force = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone(), force.clone()));
    worker
        .run(shutdown, force)
        .await
        .context("worker stopped")?;
    queue.close().await;
    Ok(())
}

/// The pool as `run` and `demo` build it.
pub fn build_worker(
    config: &Config,
    secret: Secret,
    queue: crate::queue::Queue,
) -> Result<Worker, CliError> {
    let dingtalk = DingTalk::new(ClientSettings {
        api_base: config.dingtalk.api_base.clone(),
        oapi_base: config.dingtalk.oapi_base.clone(),
        app_key: config.dingtalk.app_key.clone(),
        app_secret: secret,
        agent_id: config.dingtalk.agent_id,
        rate_limit_per_sec: config.dingtalk.rate_limit_per_sec,
        connect_timeout: config.connect_timeout(),
        request_timeout: config.request_timeout(),
    })
    .context("building the DingTalk client")?;
    let oss = Oss::new(config.connect_timeout(), config.request_timeout())
        .context("building the OSS client")?;
    Ok(Worker::new(
        queue,
        Approval::new(dingtalk, oss),
        WorkerSettings::from_config(config),
    ))
}

/// First SIGTERM/SIGINT: drain. Second: stop now.
async fn watch_signals(shutdown: CancellationToken, force: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    next_signal(&mut term).await;
    tracing::info!("signal received: finishing in-flight steps, then stopping");
    shutdown.cancel();
    next_signal(&mut term).await;
    tracing::info!("second signal: stopping now and releasing leases");
    force.cancel();
}

async fn next_signal(term: &mut tokio::signal::unix::Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
