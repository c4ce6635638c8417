//! A job to add and what adding it did, whichever store takes it.

use super::JobId;

/// A job to add. The payload is stored as given (it must be valid JSON; the table checks).
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    /// The job's input, JSON text.
    pub payload: String,
    /// A repeat with the same key returns the existing job instead of adding one.
    pub idempotency_key: Option<String>,
    /// Queue name; `None` is the default queue.
    pub queue: Option<String>,
    /// Higher runs first.
    pub priority: i64,
    /// Earliest start (unix ms); `None` is now.
    pub run_at: Option<i64>,
    /// Attempts before the job fails; `None` is the worker's configured value.
    pub max_attempts: Option<i64>,
}

/// The outcome of adding one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Enqueued {
    /// The job's id (the existing one when the idempotency key was seen before).
    pub id: JobId,
    /// False when an existing job with the same idempotency key was returned.
    pub created: bool,
}
