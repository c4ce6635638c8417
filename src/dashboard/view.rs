//! What the pages and the API show, loaded from the queue: the API serializes these as they
//! are, the pages render them. Nothing secret is in them: payloads hold no credentials, the
//! checkpoint (which holds signed upload URLs and headers) is left out, and notification
//! URLs lose their user info and query string.

use serde::Serialize;
use serde_json::Value;

use super::DashboardSettings;
use super::failure::Failure;
use crate::queue::{
    DeliveryRow, EventRow, FinishedBucket, HistoryEntry, JobFilter, JobId, JobRow, LiveUpload,
    OutcomeRow, PausedQueue, Queue, QueueCounts, quota_month,
};

/// Hours the overview's chart covers.
pub(crate) const CHART_HOURS: usize = 24;
const HOUR_MS: i64 = 3_600_000;

/// A count with its name (a status, an outcome).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Count {
    pub(crate) name: String,
    pub(crate) jobs: i64,
}

/// The oldest job waiting in the queue.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Oldest {
    pub(crate) id: JobId,
    pub(crate) created_at: i64,
}

/// DingTalk calls counted this month against the budget.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Calls {
    /// `YYYY-MM`, China Standard Time (DingTalk's quota month).
    pub(crate) month: String,
    pub(crate) counted: i64,
    pub(crate) budget: Option<u64>,
}

/// One queue's unfinished jobs and failures, and whether it is paused.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueView {
    #[serde(flatten)]
    pub(crate) counts: QueueCounts,
    /// No worker claims its jobs until it is resumed.
    pub(crate) paused: bool,
}

/// The overview page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Overview {
    pub(crate) now_ms: i64,
    pub(crate) by_status: Vec<Count>,
    /// Queues with unfinished or failed jobs, then paused queues without any.
    pub(crate) by_queue: Vec<QueueView>,
    /// Paused queues with when and why, by name.
    pub(crate) paused: Vec<PausedQueue>,
    pub(crate) by_outcome: Vec<Count>,
    /// The last [`CHART_HOURS`] hours, oldest first; the last bucket is the current hour.
    pub(crate) finished_per_hour: Vec<FinishedBucket>,
    pub(crate) oldest_queued: Option<Oldest>,
    pub(crate) dingtalk_calls: Calls,
    pub(crate) read_only: bool,
}

impl Overview {
    pub(crate) async fn load(
        queue: &Queue,
        settings: &DashboardSettings,
        now_ms: i64,
    ) -> Result<Overview, Failure> {
        let stats = queue.stats(now_ms).await?;
        let by_status = queue
            .status_counts()
            .await?
            .into_iter()
            .map(|(name, jobs)| Count { name, jobs })
            .collect();
        let by_outcome = queue
            .outcome_stats()
            .await?
            .by_outcome
            .into_iter()
            .map(|(name, jobs)| Count { name, jobs })
            .collect();
        // Whole hours, so a bar is an hour of the clock and does not shift every minute.
        let this_hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        let hours = i64::try_from(CHART_HOURS).unwrap_or(24);
        let finished_per_hour = queue
            .finished_per_bucket(this_hour - (hours - 1) * HOUR_MS, HOUR_MS, CHART_HOURS)
            .await?;
        let month = quota_month(now_ms);
        let counted = queue
            .monthly_calls(&month)
            .await?
            .iter()
            .filter(|c| c.counted && (settings.app_key.is_empty() || c.app_key == settings.app_key))
            .map(|c| c.calls)
            .sum();
        let paused = queue.paused().await?;
        let mut by_queue: Vec<QueueView> = queue
            .queue_counts(now_ms)
            .await?
            .into_iter()
            .map(|counts| QueueView {
                paused: paused.iter().any(|p| p.queue == counts.queue),
                counts,
            })
            .collect();
        for pause in &paused {
            if !by_queue.iter().any(|q| q.counts.queue == pause.queue) {
                by_queue.push(QueueView {
                    counts: QueueCounts {
                        queue: pause.queue.clone(),
                        ..QueueCounts::default()
                    },
                    paused: true,
                });
            }
        }
        Ok(Overview {
            now_ms,
            by_status,
            by_queue,
            paused,
            by_outcome,
            finished_per_hour,
            oldest_queued: stats
                .oldest_queued_id
                .zip(stats.oldest_queued_at)
                .map(|(id, created_at)| Oldest { id, created_at }),
            dingtalk_calls: Calls {
                month,
                counted,
                budget: settings.monthly_call_budget,
            },
            read_only: settings.read_only,
        })
    }
}

/// A job as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobView {
    pub(crate) id: JobId,
    pub(crate) queue: String,
    /// Its queue is paused: no worker claims it until the queue is resumed.
    pub(crate) queue_paused: bool,
    pub(crate) priority: i64,
    pub(crate) status: String,
    pub(crate) step: String,
    /// Attempts charged against the limit (claims cut short by a shutdown or a crash are not).
    pub(crate) attempt: i64,
    /// The job's attempt limit, or `[worker] max_attempts` when it sets none.
    pub(crate) max_attempts: i64,
    /// Every claim, charged or not.
    pub(crate) claims: i64,
    /// When a queued job waiting for a later retry runs next (unix ms).
    pub(crate) next_attempt_at: Option<i64>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) outcome: Option<String>,
    pub(crate) cancel_requested: bool,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) finished_at: Option<i64>,
}

impl JobView {
    /// The view of `job`; `paused` lists the paused queues.
    pub(crate) fn new(
        job: &JobRow,
        default_max_attempts: i64,
        paused: &[PausedQueue],
        now_ms: i64,
    ) -> JobView {
        let instance_id = job
            .result
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|result| result.get("instance_id")?.as_str().map(str::to_owned));
        JobView {
            id: job.id,
            queue: job.queue.clone(),
            queue_paused: paused.iter().any(|p| p.queue == job.queue),
            priority: job.priority,
            status: job.status.clone(),
            step: job.step.clone(),
            attempt: job.attempt - job.uncharged_attempts,
            max_attempts: job.max_attempts.unwrap_or(default_max_attempts),
            claims: job.attempt,
            next_attempt_at: (job.status == "queued" && job.run_at > now_ms).then_some(job.run_at),
            idempotency_key: job.idempotency_key.clone(),
            last_error: job.last_error.clone(),
            instance_id,
            outcome: job.outcome.clone(),
            cancel_requested: job.cancel_requested,
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
        }
    }
}

/// One page of the jobs list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobsPage {
    pub(crate) now_ms: i64,
    pub(crate) jobs: Vec<JobView>,
    /// Older jobs match too: the next page starts below `next_before`.
    pub(crate) more: bool,
    pub(crate) next_before: Option<JobId>,
}

impl JobsPage {
    /// Up to `filter.limit` jobs; one more is read to tell whether the list goes on.
    pub(crate) async fn load(
        queue: &Queue,
        settings: &DashboardSettings,
        filter: &JobFilter,
        now_ms: i64,
    ) -> Result<JobsPage, Failure> {
        let shown = filter.limit;
        let mut probe = filter.clone();
        probe.limit = shown.saturating_add(1);
        let mut rows = queue.list(&probe).await?;
        let more = rows.len() > usize::try_from(shown).unwrap_or(usize::MAX);
        rows.truncate(usize::try_from(shown).unwrap_or(usize::MAX));
        let paused = queue.paused().await?;
        let jobs: Vec<JobView> = rows
            .iter()
            .map(|job| JobView::new(job, settings.max_attempts, &paused, now_ms))
            .collect();
        let next_before = if more {
            jobs.last().map(|j| j.id)
        } else {
            None
        };
        Ok(JobsPage {
            now_ms,
            jobs,
            more,
            next_before,
        })
    }
}

/// One event of a job's history.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventView {
    pub(crate) at: i64,
    pub(crate) kind: String,
    pub(crate) step: Option<String>,
    /// How many events this one stands for: the parts of a run of them (their duration is
    /// the sum, their time the last one's); else 1.
    pub(crate) count: u32,
    pub(crate) attempt: Option<i64>,
    /// How long the step ran.
    pub(crate) duration_ms: Option<i64>,
    /// Time since the event before it.
    pub(crate) after_ms: Option<i64>,
    pub(crate) error: Option<String>,
    pub(crate) http_status: Option<i64>,
}

/// A job's approval decision and the approvers' records.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutcomeView {
    pub(crate) instance_id: String,
    pub(crate) outcome: String,
    pub(crate) submitted_at: i64,
    pub(crate) decided_at: Option<i64>,
    pub(crate) learned_at: Option<i64>,
    pub(crate) learned_from: Option<String>,
    pub(crate) checks: i64,
    pub(crate) next_check_at: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) callback_url: Option<String>,
    /// DingTalk's tasks and operation records, as last read.
    pub(crate) records: Value,
}

/// A notification of the decision.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeliveryView {
    pub(crate) delivery_id: String,
    pub(crate) url: String,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: Option<i64>,
    pub(crate) last_status: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) delivered_at: Option<i64>,
}

/// The job page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobDetail {
    pub(crate) now_ms: i64,
    pub(crate) job: JobView,
    pub(crate) payload: Value,
    pub(crate) result: Value,
    /// Whether a checkpoint is stored (it is not shown: it holds signed upload URLs).
    pub(crate) has_checkpoint: bool,
    pub(crate) events: Vec<EventView>,
    pub(crate) outcome: Option<OutcomeView>,
    pub(crate) deliveries: Vec<DeliveryView>,
    /// The upload it is running now, as its worker last reported it.
    pub(crate) upload: Option<UploadView>,
    /// A large attachment's upload in parts, as its checkpoint stands: "12 of 40 parts in
    /// OSS (…)".
    pub(crate) parts: Option<String>,
}

/// A running upload: its worker's last report, with its mean speed and the time left.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UploadView {
    #[serde(flatten)]
    pub(crate) live: LiveUpload,
    pub(crate) bytes_per_sec: Option<f64>,
    pub(crate) eta_secs: Option<f64>,
    /// The same in words.
    pub(crate) summary: String,
}

impl JobDetail {
    pub(crate) async fn load(
        queue: &Queue,
        settings: &DashboardSettings,
        id: JobId,
        now_ms: i64,
    ) -> Result<JobDetail, Failure> {
        let job = queue.get(id).await?;
        let events = queue.events(id).await?;
        let outcome = queue.outcome(id).await?;
        let deliveries = queue.deliveries(id).await?;
        let paused = queue.paused().await?;
        let parted = crate::approval::PartedUpload::in_checkpoint(job.checkpoint.as_deref());
        let stored = parted.as_ref().map_or(0, |upload| upload.bytes_done());
        let upload = queue
            .live_upload(id)
            .await?
            .map(|live| live.at_least(stored));
        Ok(JobDetail {
            now_ms,
            job: JobView::new(&job, settings.max_attempts, &paused, now_ms),
            payload: json_or_text(Some(&job.payload)),
            result: json_or_text(job.result.as_deref()),
            has_checkpoint: job.checkpoint.is_some(),
            parts: parted.map(|upload| upload.summary()),
            events: event_views(&events),
            outcome: outcome.as_ref().map(outcome_view),
            deliveries: deliveries.iter().map(delivery_view).collect(),
            upload: upload.map(|live| UploadView {
                bytes_per_sec: live.bytes_per_sec(),
                eta_secs: live.eta_secs(),
                summary: live.summary(now_ms),
                live,
            }),
        })
    }
}

fn event_views(events: &[EventRow]) -> Vec<EventView> {
    let mut previous: Option<i64> = None;
    crate::queue::history(events)
        .into_iter()
        .map(|HistoryEntry { event, count }| {
            let after_ms = previous.map(|at| event.at - at);
            previous = Some(event.at);
            EventView {
                at: event.at,
                kind: event.kind,
                step: event.step,
                count,
                attempt: event.attempt,
                duration_ms: event.duration_ms,
                after_ms,
                error: event.error,
                http_status: event.http_status,
            }
        })
        .collect()
}

fn outcome_view(outcome: &OutcomeRow) -> OutcomeView {
    OutcomeView {
        instance_id: outcome.instance_id.clone(),
        outcome: outcome.outcome.clone(),
        submitted_at: outcome.submitted_at,
        decided_at: outcome.decided_at,
        learned_at: outcome.learned_at,
        learned_from: outcome.learned_from.clone(),
        checks: outcome.checks,
        next_check_at: outcome.next_check_at,
        last_error: outcome.last_error.clone(),
        callback_url: outcome.callback_url.as_deref().map(without_credentials),
        records: json_or_text(outcome.records.as_deref()),
    }
}

fn delivery_view(delivery: &DeliveryRow) -> DeliveryView {
    DeliveryView {
        delivery_id: delivery.delivery_id.clone(),
        url: without_credentials(&delivery.url),
        status: delivery.status.clone(),
        attempts: delivery.attempts,
        next_attempt_at: delivery.next_attempt_at,
        last_status: delivery.last_status,
        last_error: delivery.last_error.clone(),
        created_at: delivery.created_at,
        delivered_at: delivery.delivered_at,
    }
}

/// JSON text parsed, or kept as a string when it is not JSON; `null` when absent.
fn json_or_text(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
    }
}

/// `url` without what may be a credential: user info and the query string (a receiver's
/// key often travels there). The scheme, host and path say where notifications go.
pub(crate) fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let had_query = parsed.query().is_some_and(|q| !q.is_empty());
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            if had_query {
                format!("{parsed}?…")
            } else {
                parsed.to_string()
            }
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn notification_urls_lose_their_user_info_and_query() {
        assert_eq!(
            without_credentials("https://bot:pw@hooks.example/in?key=s3cret#x"),
            "https://hooks.example/in?…"
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:8080/approvals"),
            "http://127.0.0.1:8080/approvals"
        );
    }
}
