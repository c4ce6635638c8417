//! Jobs and their history as the command line and the dashboard read them, whichever store.
//! Text columns decode through [`Lossy`], so a row with bytes that are not UTF-8 still lists.

use serde::Serialize;
use sqlx::FromRow;

use super::text::Lossy;
use super::{JobId, JobStatus, Verdict};

/// A job as stored, for `jobs` and `show`.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct JobRow {
    /// Primary key.
    pub id: JobId,
    /// The producer's deduplication key.
    #[sqlx(try_from = "Lossy")]
    pub(crate) idempotency_key: Option<String>,
    #[sqlx(try_from = "Lossy")]
    pub(crate) queue: String,
    /// Higher runs first.
    pub(crate) priority: i64,
    /// Lifecycle status.
    #[sqlx(try_from = "Lossy")]
    pub status: String,
    /// Current step name.
    #[sqlx(try_from = "Lossy")]
    pub step: String,
    /// Immutable input (JSON text).
    #[sqlx(try_from = "Lossy")]
    pub payload: String,
    /// Serialized step to resume from (JSON text).
    #[sqlx(try_from = "Lossy")]
    pub checkpoint: Option<String>,
    /// Claims so far.
    pub attempt: i64,
    /// Claims not charged against the limit.
    pub uncharged_attempts: i64,
    /// The job's own attempt limit.
    pub(crate) max_attempts: Option<i64>,
    /// Earliest next start (unix ms).
    pub run_at: i64,
    /// Worker holding the lease.
    #[sqlx(try_from = "Lossy")]
    pub lease_owner: Option<String>,
    /// When the lease ends (unix ms).
    pub lease_expires_at: Option<i64>,
    /// The latest failure.
    #[sqlx(try_from = "Lossy")]
    pub last_error: Option<String>,
    /// Outcome on success (JSON text).
    #[sqlx(try_from = "Lossy")]
    pub result: Option<String>,
    /// A cancel is pending.
    pub cancel_requested: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub(crate) updated_at: i64,
    /// Unix ms.
    pub finished_at: Option<i64>,
    /// The approval's decision, once the job succeeded and its instance is followed.
    #[sqlx(try_from = "Lossy")]
    pub outcome: Option<String>,
}

/// One row of a job's history.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct EventRow {
    /// Event id (orders the history).
    pub id: i64,
    pub(super) job_id: JobId,
    /// Unix ms.
    pub at: i64,
    /// What happened.
    #[sqlx(try_from = "Lossy")]
    pub kind: String,
    /// The step concerned.
    #[sqlx(try_from = "Lossy")]
    pub step: Option<String>,
    /// The attempt it happened in.
    pub attempt: Option<i64>,
    /// How long the step ran.
    pub(crate) duration_ms: Option<i64>,
    /// Failure reason.
    #[sqlx(try_from = "Lossy")]
    pub error: Option<String>,
    /// HTTP status of the failed call.
    pub http_status: Option<i64>,
}

/// Which jobs `list` returns, and which a bulk action takes. Every condition set must hold;
/// one left `None` matches every job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only jobs whose current step is this one.
    pub step: Option<String>,
    /// Only jobs created at or after (unix ms).
    pub since_ms: Option<i64>,
    /// Only jobs whose approval has this outcome.
    pub outcome: Option<Verdict>,
    /// Only the job holding this idempotency key.
    pub idempotency_key: Option<String>,
    /// Only the job that created this approval instance (found through its outcome row,
    /// which every succeeded job has while `[outcome] follow` is on).
    pub instance_id: Option<String>,
    /// Only jobs with a lower id: the keyset of the next page (a bulk action ignores it).
    pub before_id: Option<JobId>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// Queue counts for `stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Stats {
    /// Jobs per status.
    pub(crate) by_status: Vec<(String, i64)>,
    /// Unfinished jobs per (status, step).
    pub(crate) by_step: Vec<(String, String, i64)>,
    /// Creation time of the oldest queued job (unix ms).
    pub(crate) oldest_queued_at: Option<i64>,
    pub(crate) oldest_queued_id: Option<JobId>,
    /// Jobs that succeeded in the hour before `now`.
    pub(crate) succeeded_last_hour: i64,
    /// Jobs that failed in the hour before `now`.
    pub(crate) failed_last_hour: i64,
}

/// How much work one queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Depth {
    /// Queued jobs, due or not.
    pub(crate) queued: i64,
    /// Queued jobs whose `run_at` has come: waiting for a worker.
    pub(crate) due: i64,
    /// The earliest `run_at` among due jobs (unix ms): how long the oldest has waited.
    pub(crate) oldest_due_at: Option<i64>,
    /// Running jobs (any process).
    pub(crate) running: i64,
}
