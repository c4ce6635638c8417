//! The actions: retry or cancel one job, and retry or cancel every job a filter matches.
//! Pages and the API call these same functions once `access` has let the request through;
//! each is logged, as the operators' record of who changed what is the log.

use serde::Serialize;

use super::Dashboard;
use super::failure::Failure;
use crate::approval::CREATE_STEP;
use crate::queue::{BulkAction, BulkDone, JobFilter, JobId, JobStatus, now_ms};

/// What happened to one job.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActionDone {
    pub(crate) id: JobId,
    pub(crate) action: BulkAction,
    /// The job's status afterwards.
    pub(crate) status: JobStatus,
    /// A cancel that waits for the job's next checkpoint (running, or at the create step).
    pub(crate) stopping: bool,
}

/// The action named in a URL.
pub(crate) fn parse_action(name: &str) -> Result<BulkAction, Failure> {
    BulkAction::parse(name)
        .ok_or_else(|| Failure::NotFound(format!("no action {name:?} (retry or cancel)")))
}

/// Retries or cancels job `id`.
pub(crate) async fn act(
    dashboard: &Dashboard,
    id: JobId,
    action: BulkAction,
) -> Result<ActionDone, Failure> {
    let queue = dashboard.queue();
    let status = match action {
        BulkAction::Retry => {
            queue.retry(id, now_ms()).await?;
            JobStatus::Queued
        }
        BulkAction::Cancel => queue.cancel(id, CREATE_STEP, now_ms()).await?,
    };
    let stopping = action == BulkAction::Cancel && status != JobStatus::Cancelled;
    tracing::info!(job = id, action = action.as_str(), status = %status, stopping, "dashboard: job action");
    Ok(ActionDone {
        id,
        action,
        status,
        stopping,
    })
}

/// Retries or cancels up to the bulk cap of the jobs `filter` matches.
pub(crate) async fn bulk(
    dashboard: &Dashboard,
    action: BulkAction,
    filter: &JobFilter,
    described: &str,
) -> Result<BulkDone, Failure> {
    let queue = dashboard.queue();
    let cap = dashboard.settings().bulk_cap;
    let done = match action {
        BulkAction::Retry => queue.bulk_retry(filter, cap, now_ms()).await?,
        BulkAction::Cancel => {
            queue
                .bulk_cancel(filter, CREATE_STEP, cap, now_ms())
                .await?
        }
    };
    tracing::info!(
        action = action.as_str(),
        filter = described,
        acted = done.acted,
        flagged = done.flagged,
        more = done.more,
        "dashboard: bulk action"
    );
    Ok(done)
}
