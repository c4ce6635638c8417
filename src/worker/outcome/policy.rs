//! What the worker concludes from what DingTalk says about an instance, and when it asks or
//! notifies next: pure functions, so every rule is a unit test.

use std::time::Duration;

use crate::dingtalk::InstanceOutcome;
use crate::queue::Verdict;

/// When a pending instance is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PollSchedule {
    /// After creation, and the first gap between reads; gaps double from here.
    pub(crate) first: Duration,
    /// The longest gap.
    pub(crate) max_interval: Duration,
    /// After this long undecided the outcome is `unknown` and reads stop.
    pub(crate) give_up_after: Duration,
}

/// What to do after a read that found the instance still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextCheck {
    /// Read again at this time (unix ms).
    At(i64),
    /// Stop: the outcome is `unknown`.
    GiveUp,
}

impl PollSchedule {
    /// After the `checks`-th read of an instance created at `submitted_at` found it pending
    /// at `now_ms`. Gaps double from `first` up to `max_interval`; the last read falls on
    /// the give-up horizon itself, so an instance decided just before it is still seen.
    pub(crate) fn after_pending(&self, submitted_at: i64, checks: i64, now_ms: i64) -> NextCheck {
        let horizon = submitted_at.saturating_add(ms(self.give_up_after));
        if now_ms >= horizon {
            return NextCheck::GiveUp;
        }
        let doublings = u32::try_from(checks.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
        let gap = ms(self.first)
            .saturating_mul(1_i64 << doublings)
            .min(ms(self.max_interval))
            .max(1);
        NextCheck::At(now_ms.saturating_add(gap).min(horizon))
    }

    /// After a read that failed (DingTalk unreachable, throttled, a server error): again
    /// after the gap a pending answer would have given, so an outage costs no extra calls.
    pub(crate) fn after_error(&self, submitted_at: i64, checks: i64, now_ms: i64) -> i64 {
        match self.after_pending(submitted_at, checks, now_ms) {
            NextCheck::At(at) => at,
            // Past the horizon, one more try a gap later decides it either way.
            NextCheck::GiveUp => now_ms.saturating_add(ms(self.first)),
        }
    }
}

/// The decision an instance read (§5.9) shows; `None` while it is undecided, and for a
/// combination DingTalk does not document (read again: it may settle).
pub(crate) fn verdict_of_instance(outcome: InstanceOutcome) -> Option<Verdict> {
    match outcome {
        InstanceOutcome::Approved => Some(Verdict::Agree),
        InstanceOutcome::Refused => Some(Verdict::Refuse),
        InstanceOutcome::Terminated => Some(Verdict::Terminated),
        InstanceOutcome::Running | InstanceOutcome::Unknown => None,
    }
}

/// The decision a `bpms_instance_change` event announces: its `type` and, on `finish`, its
/// `result`. `None` for events that decide nothing (`start`, unknown types).
pub(crate) fn verdict_of_event(kind: &str, result: Option<&str>) -> Option<Verdict> {
    match kind {
        "finish" => match result.map(str::to_ascii_lowercase).as_deref() {
            Some("agree") => Some(Verdict::Agree),
            Some("refuse") => Some(Verdict::Refuse),
            _ => None,
        },
        "terminate" => Some(Verdict::Terminated),
        "delete" => Some(Verdict::Deleted),
        _ => None,
    }
}

/// How a notification that was not accepted is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetrySchedule {
    /// The first wait; waits double up to an hour.
    pub(crate) first: Duration,
    /// After this long since the decision, sending stops.
    pub(crate) give_up_after: Duration,
}

/// When a notification is sent again after its `attempts`-th send failed: `first` doubling
/// to an hour, jittered by the caller's `jitter` in `[0, 1)` of up to a fifth of the gap so
/// receivers coming back from an outage are not hit all at once. `None` once `created_at`
/// is more than `give_up_after` ago.
pub(crate) fn redeliver_at(
    created_at: i64,
    attempts: i64,
    schedule: &RetrySchedule,
    now_ms: i64,
    jitter: f64,
) -> Option<i64> {
    if now_ms >= created_at.saturating_add(ms(schedule.give_up_after)) {
        return None;
    }
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let gap = ms(schedule.first)
        .saturating_mul(1_i64 << doublings)
        .min(3_600_000);
    let jitter = (gap as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64;
    Some(now_ms.saturating_add(gap).saturating_add(jitter))
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;

    fn schedule() -> PollSchedule {
        PollSchedule {
            first: Duration::from_secs(60),
            max_interval: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(30 * 86_400),
        }
    }

    #[test]
    fn reads_of_a_pending_instance_double_from_the_first_gap_up_to_the_longest() {
        let s = schedule();
        let gaps: Vec<i64> = (1..=9)
            .map(|checks| match s.after_pending(0, checks, 10 * HOUR) {
                NextCheck::At(at) => (at - 10 * HOUR) / MINUTE,
                NextCheck::GiveUp => -1,
            })
            .collect();
        assert_eq!(gaps, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn the_last_read_falls_on_the_give_up_horizon_and_after_it_the_outcome_is_unknown() {
        let s = schedule();
        let horizon = 30 * 24 * HOUR;
        assert_eq!(
            s.after_pending(0, 500, horizon - MINUTE),
            NextCheck::At(horizon)
        );
        assert_eq!(s.after_pending(0, 501, horizon), NextCheck::GiveUp);
    }

    #[test]
    fn a_failed_read_waits_as_long_as_a_pending_answer_would() {
        let s = schedule();
        assert_eq!(s.after_error(0, 3, HOUR), HOUR + 4 * MINUTE);
        assert_eq!(s.after_error(0, 3, 31 * 24 * HOUR), 31 * 24 * HOUR + MINUTE);
    }

    #[test]
    fn a_huge_read_count_does_not_overflow_the_gap() {
        let s = schedule();
        assert_eq!(s.after_pending(0, i64::MAX, HOUR), NextCheck::At(2 * HOUR));
    }

    #[test]
    fn an_instance_read_is_decided_only_when_completed_or_withdrawn() {
        use InstanceOutcome::*;
        assert_eq!(verdict_of_instance(Approved), Some(Verdict::Agree));
        assert_eq!(verdict_of_instance(Refused), Some(Verdict::Refuse));
        assert_eq!(verdict_of_instance(Terminated), Some(Verdict::Terminated));
        assert_eq!(verdict_of_instance(Running), None);
        assert_eq!(verdict_of_instance(Unknown), None);
    }

    #[test]
    fn instance_events_decide_on_finish_terminate_and_delete_only() {
        assert_eq!(
            verdict_of_event("finish", Some("agree")),
            Some(Verdict::Agree)
        );
        assert_eq!(
            verdict_of_event("finish", Some("REFUSE")),
            Some(Verdict::Refuse)
        );
        assert_eq!(
            verdict_of_event("terminate", None),
            Some(Verdict::Terminated)
        );
        assert_eq!(verdict_of_event("delete", None), Some(Verdict::Deleted));
        assert_eq!(verdict_of_event("start", None), None);
        assert_eq!(verdict_of_event("finish", None), None);
        assert_eq!(verdict_of_event("mystery", Some("agree")), None);
    }

    #[test]
    fn notifications_back_off_from_ten_seconds_to_an_hour_then_give_up() {
        let schedule = RetrySchedule {
            first: Duration::from_secs(10),
            give_up_after: Duration::from_secs(72 * 3600),
        };
        let at = |attempts| redeliver_at(0, attempts, &schedule, HOUR, 0.0).map(|t| t - HOUR);
        assert_eq!(at(1), Some(10_000));
        assert_eq!(at(2), Some(20_000));
        assert_eq!(at(10), Some(HOUR));
        assert_eq!(redeliver_at(0, 3, &schedule, 72 * HOUR, 0.0), None);
        let jittered = redeliver_at(0, 1, &schedule, HOUR, 0.99).map(|t| t - HOUR);
        assert!(jittered.is_some_and(|gap| (10_000..12_000).contains(&gap)));
    }
}
