//! `run`: the daemon. Builds the clients and the pool from config, speaks sd_notify, serves
//! metrics and the dashboard if asked, and turns SIGTERM/SIGINT into a graceful drain (a second signal stops
//! at once).

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{CliError, open_queue};
use crate::approval::Approval;
use crate::config::{Config, ConfigError};
use crate::dingtalk::{ClientSettings, DingTalk};
use crate::oss::Oss;
use crate::secret::Secret;
use crate::worker::{Worker, WorkerSettings};

/// Examples shown by `run --help`.
pub(crate) const EXAMPLES: &str = "Examples:
  approval-worker --config /etc/approval-worker/worker.toml run
  APPROVAL_WORKER_LOG=debug approval-worker run --log-format json

Under systemd (Type=notify) it reports READY, STATUS, WATCHDOG and STOPPING; see
contrib/approval-worker.service. SIGTERM, SIGINT (Ctrl-C) or SIGHUP drains (in-flight
steps finish within shutdown_grace_secs); a second signal stops at once, releasing what
leases it can within a second.";

pub(crate) async fn run(config: &Config) -> Result<(), CliError> {
    // Listen first: a SIGTERM during start-up (migrations, the credentials check) then
    // stops the daemon cleanly before it claims anything, instead of killing it mid-write.
    let shutdown = CancellationToken::new();
    let force = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone(), force.clone()));
    let forced_exit = async {
        force.cancelled().await;
        tokio::time::sleep(FORCED_EXIT_AFTER).await;
    };
    tokio::select! {
        outcome = serve(config, shutdown, force.clone()) => outcome,
        () = forced_exit => {
            tracing::warn!("stopped at once on a second signal; jobs not released are rescued when their leases expire");
            Ok(())
        }
    }
}

async fn serve(
    config: &Config,
    shutdown: CancellationToken,
    force: CancellationToken,
) -> Result<(), CliError> {
    let secret = config.validate_for_run()?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    // Read before anything starts: a dashboard that may not listen as configured (no token
    // for a remote listener) is a configuration error, exit 78.
    let dashboard = match config.dashboard.listen {
        Some(listen) => Some((
            listen,
            crate::dashboard::DashboardSettings::from_config(config, listen)?,
        )),
        None => None,
    };
    let queue = open_queue(config).await?;
    let worker = build_worker(config, secret, queue.clone())?;
    check_credentials(&worker).await?;
    worker.speak_sd_notify();
    let stop_http = CancellationToken::new();
    let http = match config.metrics.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("[metrics] listen: cannot listen on {addr}"))?;
            let bound = listener.local_addr().unwrap_or(addr);
            tracing::info!(address = %bound, "serving http://{bound}/metrics and /healthz");
            Some(tokio::spawn(crate::worker::serve(
                worker.clone(),
                listener,
                stop_http.clone(),
            )))
        }
        None => None,
    };
    let board = match dashboard {
        Some((listen, settings)) => {
            Some(super::dashboard::start(queue.clone(), settings, listen, stop_http.clone()).await?)
        }
        None => None,
    };
    let outcome = worker.run(shutdown, force).await;
    stop_http.cancel();
    for (name, server) in [("metrics", http), ("dashboard", board)] {
        let Some(server) = server else { continue };
        match server.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "{name} listener failed"),
            Err(e) => tracing::warn!(error = %e, "{name} listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    // Closing waits for the connection, which may be waiting for another process's lock.
    if tokio::time::timeout(CLOSE_BUDGET, queue.close())
        .await
        .is_err()
    {
        tracing::warn!("the database did not answer: closing without waiting for it");
    }
    outcome.context("worker stopped")?;
    Ok(())
}

/// How long closing the database may take once the worker stopped.
const CLOSE_BUDGET: Duration = Duration::from_secs(1);
/// How long after a second signal the process ends, whatever it is still waiting for (the
/// worker's own releases get [`crate::worker::FORCED_STOP_BUDGET`] of it). Jobs it could not release are
/// rescued when their leases expire, as after a crash.
const FORCED_EXIT_AFTER: Duration = Duration::from_secs(3);

/// Refuses to start (exit 78) when DingTalk rejects the app key or secret: every job would
/// fail. Any other trouble (DingTalk unreachable) is only logged: jobs wait and retry.
async fn check_credentials(worker: &Worker) -> Result<(), CliError> {
    match worker.dingtalk().check_token().await {
        Ok(()) => Ok(()),
        Err(e) if e.is_credentials_rejected() => Err(CliError::Config(ConfigError::Secret(
            format!("DingTalk refused [dingtalk] app_key and the app secret: {e}"),
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot fetch a DingTalk access token yet; jobs will retry");
            Ok(())
        }
    }
}

/// The pool as `run` and `demo` build it.
pub(crate) fn build_worker(
    config: &Config,
    secret: Secret,
    queue: crate::queue::Queue,
) -> Result<Worker, CliError> {
    let dingtalk = dingtalk_client(config, secret)?;
    let oss = Oss::new(config.connect_timeout(), config.request_timeout())
        .context("building the OSS client")?;
    let mut settings = WorkerSettings::from_config(config);
    settings.outcome.webhook_secret = config.outcome.webhook_secret()?;
    Ok(Worker::new(
        queue,
        Approval::new(dingtalk.clone(), oss).with_submit_settle(config.request_timeout() * 2),
        dingtalk,
        settings,
    ))
}

/// The DingTalk client as the configuration describes it.
pub(crate) fn dingtalk_client(config: &Config, secret: Secret) -> Result<DingTalk, CliError> {
    let client = DingTalk::new(ClientSettings {
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
    Ok(client)
}

/// First SIGTERM, SIGINT or SIGHUP: drain. Second: stop now.
///
/// SIGHUP is a graceful stop, not a reload: the daemon has no configuration it could apply
/// without a restart, and a terminal that closes sends SIGHUP, which then drains instead of
/// killing the process mid-step. systemd restarts the service after it if `Restart=` says so.
async fn watch_signals(shutdown: CancellationToken, force: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(hup)) => (term, hup),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM and SIGHUP");
            return;
        }
    };
    let first = next_signal(&mut term, &mut hup).await;
    tracing::info!(
        signal = first,
        "signal received: finishing in-flight steps, then stopping"
    );
    shutdown.cancel();
    let second = next_signal(&mut term, &mut hup).await;
    tracing::info!(
        signal = second,
        "second signal: stopping now and releasing leases"
    );
    force.cancel();
}

async fn next_signal(
    term: &mut tokio::signal::unix::Signal,
    hup: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
