//! `StepError`: why a step did not advance, and what the worker should do about it.

use std::time::Duration;

use super::step::Step;
use crate::dingtalk::{DingTalkError, ErrorClass};
use crate::oss::OssError;

/// A failed step. The variant is the retry decision; callers never inspect messages.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// Try the same step again later (queue backoff).
    #[error("{0}")]
    Retryable(Reason),
    /// Try the same step again, not before `after` (DingTalk asked us to slow down).
    #[error("{reason} (retry after {after:?})")]
    RetryAfter {
        reason: Reason,
        /// The pause DingTalk asked for.
        after: Duration,
    },
    /// Retrying cannot help: the job fails.
    #[error("{0}")]
    Permanent(Reason),
    /// The step may have taken effect although it reported failure; retry later, and the
    /// step will check before repeating itself.
    #[error("{0} (outcome unknown)")]
    Ambiguous(Reason),
    /// An earlier step's output went stale (expired ticket, consumed uploadKey): go back to
    /// `back_to` now, within this attempt.
    #[error("{reason}; going back to {}", back_to.name())]
    Stale {
        reason: Reason,
        /// The step to redo.
        back_to: Box<Step>,
    },
}

impl StepError {
    pub(super) fn permanent(message: impl Into<String>) -> Self {
        StepError::Permanent(Reason::new(message))
    }

    /// The same decision, its message led by `what` it was about ("part 3 of 40: …").
    pub(super) fn about(mut self, what: &str) -> Self {
        let reason = match &mut self {
            StepError::Retryable(reason)
            | StepError::Permanent(reason)
            | StepError::Ambiguous(reason)
            | StepError::RetryAfter { reason, .. }
            | StepError::Stale { reason, .. } => reason,
        };
        reason.message = format!("{what}: {}", reason.message);
        self
    }

    /// Maps a DingTalk error. `may_be_done` is whether the call changes state, so that a
    /// lost answer means the change may have happened (create instance).
    pub(super) fn from_dingtalk(error: DingTalkError, may_be_done: bool) -> Self {
        let reason = Reason {
            message: error.to_string(),
            http_status: error.http_status(),
        };
        if error.is_credentials_rejected() {
            // A configuration problem, not the job's: wait for an operator to fix the secret
            // instead of failing every job in the queue.
            return StepError::RetryAfter {
                reason,
                after: CREDENTIALS_PAUSE,
            };
        }
        match error.class() {
            // The client already refreshed the token and retried once; a second refusal
            // is worth one more try later, not a failure.
            ErrorClass::TokenInvalid => StepError::Retryable(reason),
            ErrorClass::Throttled { retry_after } => StepError::RetryAfter {
                reason,
                after: retry_after,
            },
            ErrorClass::QuotaExhausted => StepError::RetryAfter {
                reason,
                after: QUOTA_PAUSE,
            },
            ErrorClass::Transient if may_be_done && error.may_have_been_processed() => {
                StepError::Ambiguous(reason)
            }
            ErrorClass::Transient => StepError::Retryable(reason),
            ErrorClass::Permanent => StepError::Permanent(reason),
        }
    }

    pub(super) fn from_oss(error: OssError) -> Self {
        let reason = Reason {
            message: format!("OSS upload: {error}"),
            http_status: error.http_status(),
        };
        if error.is_retryable() {
            StepError::Retryable(reason)
        } else {
            StepError::Permanent(reason)
        }
    }
}

/// How long a job waits when DingTalk refuses the app's credentials (fixable only by an
/// operator; `run` refuses to start with them, so this covers a secret rotated meanwhile).
const CREDENTIALS_PAUSE: Duration = Duration::from_secs(600);

/// How long a job waits when the organisation's monthly call quota is exhausted.
const QUOTA_PAUSE: Duration = Duration::from_secs(3600);

/// A readable failure, as recorded in `last_error` and the job's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reason {
    /// What went wrong, with DingTalk's code, message and request id when there are some.
    pub(crate) message: String,
    /// The HTTP status of the failed call.
    pub(crate) http_status: Option<u16>,
}

impl Reason {
    /// A reason without an HTTP status.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Reason {
            message: message.into(),
            http_status: None,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
