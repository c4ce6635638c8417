//! Background upkeep while the pool runs: lease heartbeats, rescue of other workers' expired
//! leases, writing the DingTalk call tallies, and reporting running uploads' progress.

use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{FLUSH_INTERVAL, Worker};
use crate::queue::{Fence, now_ms};

/// Shortest heartbeat period, however short the lease.
const MIN_HEARTBEAT_PERIOD: Duration = Duration::from_millis(100);

/// How often running uploads' bytes are counted and reported.
const UPLOAD_REPORT_PERIOD: Duration = Duration::from_secs(1);

/// Runs until aborted by the pool.
pub(super) async fn maintain(worker: Worker, shutdown: CancellationToken) {
    let inner = &worker.inner;
    let period = (inner.settings.lease / 3).max(MIN_HEARTBEAT_PERIOD);
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut uploads = tokio::time::interval(UPLOAD_REPORT_PERIOD);
    uploads.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The pool flushed at start-up; the first tick of an interval is immediate.
    flush.tick().await;
    loop {
        tokio::select! {
            _ = heartbeat.tick() => heartbeat_and_rescue(&worker, &shutdown).await,
            _ = uploads.tick() => report_uploads(&worker).await,
            _ = flush.tick() => {
                if let Err(e) = worker.flush_calls().await {
                    tracing::warn!(error = %e, "could not record DingTalk call counts");
                }
            }
        }
    }
}

async fn heartbeat_and_rescue(worker: &Worker, shutdown: &CancellationToken) {
    let inner = &worker.inner;
    let now = now_ms();
    let live: Vec<Fence> = worker.running().values().copied().collect();
    if let Err(e) = inner
        .queue
        .heartbeat(&inner.owner, &live, inner.settings.lease_ms(), now)
        .await
    {
        tracing::warn!(error = %e, "lease heartbeat failed");
    }
    if shutdown.is_cancelled() {
        return;
    }
    match inner.queue.rescue(now).await {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(jobs = ?ids, "rescued jobs whose lease expired");
            inner.wake.notify_one();
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "rescue failed"),
    }
}

/// Counts the bytes sent since the last tick into the metric, and writes the progress of the
/// uploads that have run a while, all in one statement.
async fn report_uploads(worker: &Worker) {
    let inner = &worker.inner;
    let now = now_ms();
    let (fresh, reports) = inner.uploads.tick(now);
    inner.metrics.uploaded(fresh);
    match inner.queue.report_uploads(&reports, now).await {
        Ok(landed) if landed < reports.len() as u64 => tracing::debug!(
            reported = reports.len(),
            landed,
            "some uploads' claims ended before their progress was written"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not write upload progress"),
    }
}
