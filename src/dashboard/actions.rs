//! The actions: retry or cancel one job, retry or cancel every job a filter matches, and
//! pause or resume a queue.
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

/// Queue names longer than this are refused: a typo pasted twice, not a queue.
const QUEUE_NAME_MAX_CHARS: usize = 200;
/// Pause reasons are cut to this many characters.
const REASON_MAX_CHARS: usize = 500;

/// What a pause or a resume did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueChange {
    pub(crate) queue: String,
    /// Whether the queue is paused now.
    pub(crate) paused: bool,
    /// `false` when it was already so (a second pause keeps the first one's time and reason).
    pub(crate) changed: bool,
}

/// Pauses (`pause = true`) or resumes queue `name`: every worker process obeys at its next
/// claim; jobs already running go on to their end.
pub(crate) async fn pause_or_resume(
    dashboard: &Dashboard,
    name: &str,
    pause: bool,
    reason: Option<&str>,
) -> Result<QueueChange, Failure> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Failure::BadRequest(
            "name the queue to pause or resume".to_owned(),
        ));
    }
    if name.chars().count() > QUEUE_NAME_MAX_CHARS {
        return Err(Failure::BadRequest(format!(
            "a queue name has at most {QUEUE_NAME_MAX_CHARS} characters"
        )));
    }
    let reason = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(REASON_MAX_CHARS).collect::<String>());
    let queue = dashboard.queue();
    let changed = if pause {
        queue.pause(name, reason.as_deref(), now_ms()).await?
    } else {
        queue.resume(name).await?
    };
    tracing::info!(
        queue = name,
        action = if pause { "pause" } else { "resume" },
        reason = reason.as_deref().unwrap_or(""),
        changed,
        "dashboard: queue action"
    );
    Ok(QueueChange {
        queue: name.to_owned(),
        paused: pause,
        changed,
    })
}
