//! A [`JobFilter`] as SQLite `WHERE` terms: one term per condition set and none for the
//! others, so that each combination of conditions is a statement of its own, planned with
//! the indexes its terms can use. A term written `(?1 IS NULL OR status = ?1)` would be one
//! statement for all, but SQLite can use no index for it and would walk every row.

use sqlx::{QueryBuilder, Sqlite};

use super::JobFilter;
use crate::queue::{BulkAction, JobStatus, Verdict};

/// The jobs a statement may touch beyond the filter's own conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Any status: listing.
    All,
    /// Failed and cancelled jobs: what a retry takes.
    Retryable,
    /// Queued and running jobs not yet asked to stop: what a cancel takes.
    Cancellable,
}

impl Scope {
    /// The jobs `action` takes.
    pub(super) fn of(action: BulkAction) -> Scope {
        match action {
            BulkAction::Retry => Scope::Retryable,
            BulkAction::Cancel => Scope::Cancellable,
        }
    }
}

/// `jobs_stopped`'s own condition, written as in its `CREATE INDEX`: SQLite uses a partial
/// index only for a query whose `WHERE` carries the index's.
const STOPPED: &str = " AND (status = 'failed' OR status = 'cancelled')";
const CANCELLABLE: &str = " AND status IN ('queued', 'running') AND cancel_requested = 0";
/// `jobs_lease`'s condition: running jobs are few (the workers' pools), so a list of them
/// reads that index and sorts the handful it finds, where a walk by id newest first would
/// read the whole table looking for a page it never fills.
const RUNNING: &str = " AND status = 'running'";

/// Appends ` WHERE …` for `filter` within `scope`; with `keyset`, the page's `before_id` too.
pub(super) fn push_where<'a>(
    sql: &mut QueryBuilder<'a, Sqlite>,
    filter: &'a JobFilter,
    scope: Scope,
    keyset: bool,
) {
    sql.push(" WHERE 1 = 1");
    match scope {
        Scope::All => {}
        Scope::Retryable => {
            sql.push(STOPPED);
        }
        Scope::Cancellable => {
            sql.push(CANCELLABLE);
        }
    }
    if let Some(status) = filter.status {
        if matches!(status, JobStatus::Failed | JobStatus::Cancelled) && scope != Scope::Retryable {
            sql.push(STOPPED);
        }
        if status == JobStatus::Running {
            sql.push(RUNNING);
        }
        if status == JobStatus::Succeeded {
            // Unary `+` keeps SQLite off jobs_finished: through it the list would read every
            // succeeded job and sort them by id (0.5 s with 1 M jobs, docs/benchmarks.md,
            // dashboard). Succeeded jobs are most of the table, so walking ids newest first
            // finds a page of them within a few rows.
            sql.push(" AND +status = ").push_bind(status.as_str());
        } else {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
    }
    if let Some(queue) = &filter.queue {
        sql.push(" AND queue = ").push_bind(queue.as_str());
    }
    if let Some(step) = &filter.step {
        sql.push(" AND step = ").push_bind(step.as_str());
    }
    if let Some(since) = filter.since_ms {
        sql.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(key) = &filter.idempotency_key {
        sql.push(" AND idempotency_key = ").push_bind(key.as_str());
    }
    if let Some(instance) = &filter.instance_id {
        sql.push(" AND id = (SELECT job_id FROM outcomes WHERE instance_id = ")
            .push_bind(instance.as_str())
            .push(")");
    }
    if let Some(outcome) = filter.outcome {
        // Probed per job along the walk by id (outcomes' primary key is the job id), rather
        // than collecting every job with that outcome first.
        sql.push(" AND EXISTS (SELECT 1 FROM outcomes o WHERE o.job_id = jobs.id AND o.outcome = ")
            .push_bind(Verdict::as_str(outcome))
            .push(")");
    }
    if keyset && let Some(before) = filter.before_id {
        sql.push(" AND id < ").push_bind(before);
    }
}
