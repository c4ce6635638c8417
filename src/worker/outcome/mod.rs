//! Following created approvals to their decision, beside the runners: reading pending
//! instances on a schedule (`poll`), listening to DingTalk's Stream events (`stream`), and
//! sending the decisions to producers (`deliver`). What each answer means and when to ask
//! again is in `policy`; the writes are the queue's.

mod deliver;
pub(crate) mod policy;
mod poll;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use tokio_util::sync::CancellationToken;

use crate::config::OutcomeConfig;
use crate::dingtalk::DingTalk;
use crate::queue::outcome::{Decision, DecisionFollowUp};
use crate::queue::{Queue, now_ms};
use crate::secret::Secret;

use super::Worker;
use super::metrics::Metrics;
use policy::PollSchedule;

/// How outcomes are followed, from `[outcome]`.
#[derive(Debug, Clone)]
pub(crate) struct OutcomeSettings {
    /// Whether created instances are followed at all.
    pub(crate) follow: bool,
    /// Whether to listen to DingTalk's Stream.
    pub(crate) stream: bool,
    pub(crate) schedule: PollSchedule,
    /// Share of the read API's rate limit the reads may use.
    pub(crate) poll_share: f64,
    pub(crate) follow_up: DecisionFollowUp,
    /// Signs notifications; without it none are sent (they wait in the outbox).
    pub(crate) webhook_secret: Option<Secret>,
    pub(crate) webhook_give_up_after: Duration,
    /// The first wait before a notification is sent again.
    pub(crate) webhook_retry_first: Duration,
    /// One send's limit.
    pub(crate) webhook_timeout: Duration,
}

impl OutcomeSettings {
    pub(crate) fn from_config(config: &OutcomeConfig) -> OutcomeSettings {
        OutcomeSettings {
            follow: config.follow,
            stream: config.stream,
            schedule: PollSchedule {
                first: Duration::from_secs(config.poll_first_secs),
                max_interval: config.poll_max_interval(),
                give_up_after: Duration::from_secs(
                    config.give_up_after_days.saturating_mul(86_400),
                ),
            },
            poll_share: config.poll_share,
            follow_up: DecisionFollowUp {
                default_url: config.webhook_url.clone(),
                fetch_records: config.fetch_records,
            },
            webhook_secret: None,
            webhook_give_up_after: Duration::from_secs(
                config.webhook_give_up_after_hours.saturating_mul(3600),
            ),
            webhook_retry_first: Duration::from_secs(config.webhook_retry_first_secs),
            webhook_timeout: Duration::from_secs(config.webhook_timeout_secs),
        }
    }

    /// How notifications are sent again.
    pub(crate) fn webhook_retry(&self) -> policy::RetrySchedule {
        policy::RetrySchedule {
            first: self.webhook_retry_first,
            give_up_after: self.webhook_give_up_after,
        }
    }

    /// When a created instance is first read.
    pub(crate) fn first_check(&self) -> Option<Duration> {
        self.follow.then_some(self.schedule.first)
    }
}

/// What the outcome tasks share. Cheap to clone.
#[derive(Clone)]
pub(super) struct Following {
    worker: Worker,
    queue: Queue,
    dingtalk: DingTalk,
    schedule: PollSchedule,
    settings: OutcomeSettings,
    /// Wakes the reader early: a decision came without its records, to be read now.
    records_wanted: Arc<Notify>,
}

impl Following {
    pub(super) fn new(worker: &Worker) -> Following {
        let inner = &worker.inner;
        let settings = inner.settings.outcome.clone();
        Following {
            worker: worker.clone(),
            queue: inner.queue.clone(),
            dingtalk: inner.dingtalk.clone(),
            schedule: settings.schedule,
            settings,
            records_wanted: Arc::new(Notify::new()),
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.worker.inner.metrics
    }

    /// Reads claimed per second: the configured share of the read API's rate limit (at
    /// least one; 50 when the limit is off).
    fn reads_per_tick(&self) -> i64 {
        let rate = self.dingtalk.rate_limit_per_sec();
        if rate == 0 {
            return 50;
        }
        ((f64::from(rate) * self.settings.poll_share).floor() as i64).max(1)
    }

    /// Records `decisions` in one transaction, logs and counts the ones that were news, and
    /// returns the ones that changed nothing (decided already, or no pending instance of
    /// ours has that id). `Err` leaves them unrecorded: a poll reads again after its lease, a
    /// Stream event is acked `LATER` so DingTalk sends it again.
    async fn record(
        &self,
        decisions: Vec<Decision>,
    ) -> Result<Vec<Decision>, crate::queue::QueueError> {
        if decisions.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let recorded = self
            .queue
            .record_decisions(&decisions, &self.settings.follow_up, now)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "could not record approval decisions"))?;
        let mut unmatched = Vec::new();
        for (decision, recorded) in decisions.into_iter().zip(recorded) {
            let Some(recorded) = recorded else {
                unmatched.push(decision);
                continue;
            };
            if decision.records.is_none() && self.settings.follow_up.fetch_records {
                self.records_wanted.notify_one();
            }
            tracing::info!(
                job_id = recorded.job_id,
                instance_id = %decision.instance_id,
                outcome = %decision.verdict,
                "approval decided"
            );
            self.metrics().decided(
                decision.verdict.as_str(),
                recorded.submitted_at,
                decision.decided_at_ms,
                now,
            );
        }
        Ok(unmatched)
    }
}

/// Runs the outcome tasks until `shutdown`: reads always (they are the safety net), the
/// Stream when enabled, and the sender when a signing secret is configured.
pub(super) async fn follow(following: Following, shutdown: CancellationToken) {
    if !following.settings.follow {
        return;
    }
    let mut tasks = tokio::task::JoinSet::<()>::new();
    tasks.spawn(poll::poll(following.clone(), shutdown.clone()));
    if following.settings.stream {
        tasks.spawn(stream::listen(following.clone(), shutdown.clone()));
    }
    tasks.spawn(deliver::deliver(following.clone(), shutdown.clone()));
    while tasks.join_next().await.is_some() {}
}
