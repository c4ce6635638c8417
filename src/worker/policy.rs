//! What happens to a job after each step: a pure function of where it is, what the step
//! answered and its attempt's standing. The runner carries the decisions out.

use std::time::Duration;

use crate::approval::{Reason, Step, StepError};

/// Stale-input redos (expired ticket, consumed uploadKey) allowed within one attempt before
/// the job waits for a later attempt instead.
pub(super) const MAX_STALE_REDOS_PER_ATTEMPT: u32 = 3;
/// Attempts beyond `max_attempts` a job may still make while a create it sent is
/// unresolved: only reconciliation can tell whether the approval exists, so failing the job
/// before it has looked would report a failure that may be a success.
pub(super) const EXTRA_RECONCILE_ATTEMPTS: i64 = 3;

/// The standing of the attempt a step ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Standing {
    /// The claim's attempt number.
    pub(super) attempt: i64,
    /// Attempts charged so far, this one included.
    pub(super) charged: i64,
    /// The job's attempt limit.
    pub(super) max_attempts: i64,
    /// A cancel was requested before the claim.
    pub(super) cancel_requested: bool,
    /// Steps redone in this attempt because their input went stale.
    pub(super) stale_redos: u32,
}

impl Standing {
    /// Whether a step at `step` may create an instance: not once the job is cancelled or out
    /// of attempts (a submit then only looks for an instance an earlier create made).
    pub(super) fn may_create(&self) -> bool {
        !self.cancel_requested && self.charged <= self.max_attempts
    }
}

/// Delays a retry is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Delays {
    /// The queue backoff for this attempt (already jittered).
    pub(super) backoff: Duration,
    /// How long a create sent without an answer may still land.
    pub(super) submit_settle: Duration,
}

/// What the runner does next.
#[derive(Debug, PartialEq)]
pub(super) enum Action {
    /// Go on with `next`, storing it first (a checkpoint, with the events so far) when
    /// `store`; otherwise its event waits for the next write.
    Advance {
        /// The step reached.
        next: Step,
        /// Whether it must be stored before the job goes on.
        store: bool,
    },
    /// Redo `to` at once, within this attempt: the step's input went stale.
    GoBack {
        /// The step to redo.
        to: Step,
        reason: Reason,
    },
    /// Stop the job as cancelled.
    Cancel,
    /// Give up: the job fails with this reason.
    Fail(Reason),
    /// Queue the job again, not before `delay`.
    RetryLater {
        reason: Reason,
        /// How long to wait.
        delay: Duration,
    },
}

/// Whether `step` is a submit whose intent an earlier attempt stored: its create may have
/// been sent, so it reconciles before anything else.
pub(super) fn is_reconcile(step: &Step, attempt: i64) -> bool {
    matches!(step, Step::Submit { intent, .. } if intent.attempt != attempt)
}

/// Whether a cancel may stop a job at `step`: not while an earlier attempt's create may
/// have landed, since then only reconciliation can tell, and finishing is the truthful end.
pub(super) fn may_cancel(step: &Step, attempt: i64) -> bool {
    !is_reconcile(step, attempt)
}

/// The decision after `step` ran and answered `outcome`.
pub(super) fn after_step(
    step: &Step,
    outcome: Result<Step, StepError>,
    standing: Standing,
    delays: Delays,
) -> Action {
    let reconciling = is_reconcile(step, standing.attempt);
    match outcome {
        // A created instance goes straight to success (one write); an adopted one is stored
        // first, so the history shows the reconciliation.
        Ok(next @ Step::Done { .. }) => Action::Advance {
            next,
            store: reconciling,
        },
        Ok(next) => Action::Advance {
            store: step.must_store(&next),
            next,
        },
        Err(StepError::Stale { reason, back_to })
            if standing.stale_redos < MAX_STALE_REDOS_PER_ATTEMPT =>
        {
            Action::GoBack {
                to: *back_to,
                reason,
            }
        }
        Err(StepError::Permanent(_)) if standing.cancel_requested && reconciling => Action::Cancel,
        Err(error) => after_failure(error, reconciling, standing, delays),
    }
}

/// Retry later or give up after a failed step.
fn after_failure(
    error: StepError,
    reconciling: bool,
    standing: Standing,
    delays: Delays,
) -> Action {
    let delay = match &error {
        StepError::RetryAfter { after, .. } => (*after).max(delays.backoff),
        StepError::Ambiguous(_) => delays.submit_settle.max(delays.backoff),
        _ => delays.backoff,
    };
    let ambiguous = matches!(error, StepError::Ambiguous(_));
    let message = error.to_string();
    let reason = match error {
        StepError::Permanent(reason) => return Action::Fail(reason),
        StepError::Retryable(reason)
        | StepError::Ambiguous(reason)
        | StepError::RetryAfter { reason, .. }
        | StepError::Stale { reason, .. } => reason,
    };
    // A create that may have been sent and is not yet reconciled keeps the job going a
    // little longer: the next attempt looks before it gives up (and creates nothing more).
    let unresolved = ambiguous || reconciling;
    let limit = standing.max_attempts
        + if unresolved {
            EXTRA_RECONCILE_ATTEMPTS
        } else {
            0
        };
    if standing.charged >= limit {
        let unknown = if unresolved {
            "; an approval instance may exist: `retry` reconciles before creating"
        } else {
            ""
        };
        return Action::Fail(Reason {
            message: format!(
                "gave up after {} attempts: {}{unknown}",
                standing.charged, reason.message
            ),
            ..reason
        });
    }
    Action::RetryLater {
        reason: Reason { message, ..reason },
        delay,
    }
}

/// The decision after a runner panicked: a bug, not the job's fault, but the attempt is
/// charged like a retryable failure, so a job that always hits it ends `failed` after its
/// attempts instead of going round for ever.
pub(super) fn after_panic(message: &str, standing: Standing, delays: Delays) -> Action {
    let reason = Reason::new(format!(
        "internal error (the job's runner panicked): {message}"
    ));
    after_failure(StepError::Retryable(reason), false, standing, delays)
}

/// After `stored` was checkpointed and the write answered whether a cancel is pending:
/// whether the job stops here as cancelled.
pub(super) fn cancel_at_checkpoint(stored: &Step, cancel_pending: bool, attempt: i64) -> bool {
    cancel_pending && !matches!(stored, Step::Done { .. }) && may_cancel(stored, attempt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::{PendingUpload, Progress, SubmitIntent};
    use crate::dingtalk::UploadTicket;

    const SECOND: Duration = Duration::from_secs(1);

    fn standing() -> Standing {
        Standing {
            attempt: 2,
            charged: 2,
            max_attempts: 5,
            cancel_requested: false,
            stale_redos: 0,
        }
    }

    fn delays() -> Delays {
        Delays {
            backoff: 4 * SECOND,
            submit_settle: 60 * SECOND,
        }
    }

    fn progress() -> Progress {
        Progress {
            union_id: "u".into(),
            space_id: 1,
            granted_at_ms: 0,
            files: Vec::new(),
        }
    }

    fn submit(intent_attempt: i64) -> Step {
        Step::Submit {
            progress: progress(),
            intent: SubmitIntent {
                at_ms: 0,
                attempt: intent_attempt,
                armed_at_ms: None,
            },
        }
    }

    fn done() -> Step {
        Step::Done {
            instance_id: "i".into(),
            files: Vec::new(),
            adopted: false,
        }
    }

    fn upload(size: u64) -> PendingUpload {
        PendingUpload {
            ticket: UploadTicket {
                upload_key: "k".into(),
                resource_urls: vec!["http://127.0.0.1/x".into()],
                headers: Default::default(),
                expiration_secs: 60,
            },
            size,
            modified: None,
            md5: None,
            expires_at_ms: 0,
            snapshot: None,
        }
    }

    fn reason(message: &str) -> Reason {
        Reason::new(message)
    }

    #[test]
    fn a_created_instance_succeeds_without_a_checkpoint_and_an_adopted_one_is_stored_first() {
        let created = after_step(&submit(2), Ok(done()), standing(), delays());
        assert_eq!(
            created,
            Action::Advance {
                next: done(),
                store: false
            }
        );
        let adopted = after_step(&submit(1), Ok(done()), standing(), delays());
        assert_eq!(
            adopted,
            Action::Advance {
                next: done(),
                store: true
            }
        );
    }

    #[test]
    fn a_step_is_stored_only_where_the_step_machine_says_a_restart_must_not_redo_it() {
        let space_done = after_step(
            &Step::Space,
            Ok(Step::UploadInfo {
                progress: progress(),
            }),
            standing(),
            delays(),
        );
        assert!(matches!(space_done, Action::Advance { store: false, .. }));
        let committed = after_step(
            &Step::Commit {
                progress: progress(),
                upload: upload(10),
            },
            Ok(submit(2)),
            standing(),
            delays(),
        );
        assert!(matches!(committed, Action::Advance { store: true, .. }));
    }

    #[test]
    fn a_stale_input_goes_back_within_the_attempt_until_the_redo_limit_then_retries_later() {
        let stale = || StepError::Stale {
            reason: reason("ticket expired"),
            back_to: Box::new(Step::UploadInfo {
                progress: progress(),
            }),
        };
        let step = Step::Put {
            progress: progress(),
            upload: upload(10),
        };
        assert!(matches!(
            after_step(&step, Err(stale()), standing(), delays()),
            Action::GoBack { .. }
        ));
        let worn = Standing {
            stale_redos: MAX_STALE_REDOS_PER_ATTEMPT,
            ..standing()
        };
        assert!(matches!(
            after_step(&step, Err(stale()), worn, delays()),
            Action::RetryLater { delay, .. } if delay == 4 * SECOND
        ));
    }

    #[test]
    fn a_permanent_error_fails_the_job_with_its_reason() {
        let action = after_step(
            &Step::Space,
            Err(StepError::Permanent(reason("userNotExist"))),
            standing(),
            delays(),
        );
        assert_eq!(action, Action::Fail(reason("userNotExist")));
    }

    #[test]
    fn a_cancelled_job_whose_reconciliation_found_nothing_is_cancelled_not_failed() {
        let cancelled = Standing {
            cancel_requested: true,
            ..standing()
        };
        let nothing = || Err(StepError::Permanent(reason("no instance found")));
        assert_eq!(
            after_step(&submit(1), nothing(), cancelled, delays()),
            Action::Cancel
        );
        assert!(matches!(
            after_step(&submit(2), nothing(), cancelled, delays()),
            Action::Fail(_)
        ));
    }

    #[test]
    fn throttling_waits_at_least_as_long_as_asked_and_an_unanswered_create_the_settle_time() {
        let throttled = StepError::RetryAfter {
            reason: reason("QpsLimit"),
            after: 30 * SECOND,
        };
        assert!(matches!(
            after_step(&Step::Space, Err(throttled), standing(), delays()),
            Action::RetryLater { delay, .. } if delay == 30 * SECOND
        ));
        let lost = StepError::Ambiguous(reason("timed out"));
        assert!(matches!(
            after_step(&submit(2), Err(lost), standing(), delays()),
            Action::RetryLater { delay, ref reason } if delay == 60 * SECOND
                && reason.message == "timed out (outcome unknown)"
        ));
    }

    #[test]
    fn a_job_out_of_attempts_fails_but_an_unresolved_create_gets_a_few_more_to_reconcile() {
        let last = Standing {
            charged: 5,
            ..standing()
        };
        let retryable = || Err(StepError::Retryable(reason("HTTP 503")));
        let Action::Fail(failed) = after_step(&Step::Space, retryable(), last, delays()) else {
            panic!("expected a failure");
        };
        assert_eq!(failed.message, "gave up after 5 attempts: HTTP 503");
        assert!(matches!(
            after_step(&submit(1), retryable(), last, delays()),
            Action::RetryLater { .. }
        ));
        let beyond = Standing {
            charged: 5 + EXTRA_RECONCILE_ATTEMPTS,
            ..standing()
        };
        let Action::Fail(failed) = after_step(&submit(1), retryable(), beyond, delays()) else {
            panic!("expected a failure");
        };
        assert!(
            failed
                .message
                .ends_with("`retry` reconciles before creating"),
            "{}",
            failed.message
        );
    }

    #[test]
    fn a_panicking_runner_charges_its_attempt_and_fails_the_job_once_out_of_attempts() {
        assert!(matches!(
            after_panic("index out of bounds", standing(), delays()),
            Action::RetryLater { delay, ref reason } if delay == 4 * SECOND
                && reason.message.contains("index out of bounds")
        ));
        let last = Standing {
            charged: 5,
            ..standing()
        };
        assert!(matches!(
            after_panic("index out of bounds", last, delays()),
            Action::Fail(_)
        ));
    }

    #[test]
    fn a_backoff_longer_than_the_settle_time_is_kept() {
        let long = Delays {
            backoff: 600 * SECOND,
            ..delays()
        };
        let lost = StepError::Ambiguous(reason("timed out"));
        assert!(matches!(
            after_step(&submit(2), Err(lost), standing(), long),
            Action::RetryLater { delay, .. } if delay == 600 * SECOND
        ));
    }

    #[test]
    fn a_cancel_stops_the_job_at_a_checkpoint_unless_an_earlier_create_may_have_landed() {
        let uploading = Step::UploadInfo {
            progress: progress(),
        };
        assert!(cancel_at_checkpoint(&uploading, true, 2));
        assert!(!cancel_at_checkpoint(&uploading, false, 2));
        assert!(cancel_at_checkpoint(&submit(2), true, 2));
        assert!(!cancel_at_checkpoint(&submit(1), true, 2));
        assert!(!cancel_at_checkpoint(&done(), true, 2));
    }

    #[test]
    fn a_cancelled_or_exhausted_job_may_no_longer_create() {
        assert!(standing().may_create());
        let cancelled = Standing {
            cancel_requested: true,
            ..standing()
        };
        assert!(!cancelled.may_create());
        let beyond = Standing {
            charged: 6,
            ..standing()
        };
        assert!(!beyond.may_create());
    }
}
