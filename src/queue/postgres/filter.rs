//! A [`JobFilter`] as PostgreSQL `WHERE` terms: one term per condition set and none for the
//! others, so that each combination is a statement of its own whose plan (generic ones
//! included) uses the indexes its terms allow, instead of one `($1 IS NULL OR …)` form whose
//! generic plan can use none.

use sqlx::{Postgres, QueryBuilder};

use crate::queue::{BulkAction, JobFilter, JobStatus, Verdict};

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

/// `jobs_stopped`'s condition as a literal, so that even a generic plan (where `status = $n`
/// proves nothing) may walk that partial index.
const STOPPED: &str = " AND status IN ('failed', 'cancelled')";
const CANCELLABLE: &str = " AND status IN ('queued', 'running') AND NOT cancel_requested";
/// `jobs_lease`'s condition as a literal: running jobs are few, so a list of them reads that
/// index rather than walking every job by id for a page it never fills.
const RUNNING: &str = " AND status = 'running'";

/// Appends ` WHERE …` for `filter` within `scope`; with `keyset`, the page's `before_id` too.
pub(super) fn push_where<'a>(
    sql: &mut QueryBuilder<'a, Postgres>,
    filter: &'a JobFilter,
    scope: Scope,
    keyset: bool,
) {
    sql.push(" WHERE true");
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
        sql.push(" AND status = ").push_bind(status.as_str());
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
        sql.push(" AND EXISTS (SELECT 1 FROM outcomes o WHERE o.job_id = jobs.id AND o.outcome = ")
            .push_bind(Verdict::as_str(outcome))
            .push(")");
    }
    if keyset && let Some(before) = filter.before_id {
        sql.push(" AND id < ").push_bind(before);
    }
}
