//! A claimed job: what a runner gets when the queue leases it a job, whichever store.

use super::{Fence, JobId};

/// A job this worker now holds a lease on.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// This claim's attempt number (the fence for every later write).
    pub attempt: i64,
    /// Attempts that ended without being charged (shutdown, lost lease).
    pub(super) uncharged_attempts: i64,
    /// The job's own attempt limit, if its producer set one.
    pub(crate) max_attempts: Option<i64>,
    /// The immutable input, JSON text.
    pub(crate) payload: String,
    /// The serialized step to resume from, if an earlier attempt got somewhere.
    pub checkpoint: Option<String>,
    /// Someone asked to cancel the job while it was running.
    pub(crate) cancel_requested: bool,
    /// Why the claimed row cannot be run (a column that is not valid UTF-8, say): the job
    /// must fail with this reason instead of being driven.
    pub(crate) unreadable: Option<String>,
}

impl ClaimedJob {
    /// The fence for writes made under this claim.
    pub fn fence(&self) -> Fence {
        Fence {
            id: self.id,
            attempt: self.attempt,
        }
    }

    /// Attempts that count against `max_attempts`, this one included.
    pub fn charged_attempts(&self) -> i64 {
        self.attempt - self.uncharged_attempts
    }
}
