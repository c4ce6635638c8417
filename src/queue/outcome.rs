//! What became of each submitted approval (the `outcomes` table) and the outbox of
//! notifications telling producers (`outcome_deliveries`), whichever store.
//!
//! A job that succeeds gets its outcome row in the same write ([`Follow`]). A decision is
//! recorded at most once per instance: the write changes a row only while it is `pending`,
//! so a Stream event that DingTalk redelivers, or one that races a poll, changes nothing the
//! second time. Reads of an instance (polls) and sends of a notification are claimed by
//! pushing their due time past a lease and bumping a counter that fences the write of what
//! they found, so several processes share the work without doing any of it twice at once.

use serde::Serialize;
use sqlx::FromRow;

use super::text::Lossy;
use super::{JobId, Queue, QueueError};

/// An approval's decision as stored in `outcomes.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not decided yet.
    Pending,
    /// Approved.
    Agree,
    /// Refused.
    Refuse,
    /// Withdrawn by the originator (DingTalk's `TERMINATED`).
    Terminated,
    /// Deleted in DingTalk.
    Deleted,
    /// Still undecided when the worker stopped asking.
    Unknown,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 6] = [
        Verdict::Pending,
        Verdict::Agree,
        Verdict::Refuse,
        Verdict::Terminated,
        Verdict::Deleted,
        Verdict::Unknown,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pending => "pending",
            Verdict::Agree => "agree",
            Verdict::Refuse => "refuse",
            Verdict::Terminated => "terminated",
            Verdict::Deleted => "deleted",
            Verdict::Unknown => "unknown",
        }
    }

    /// The verdict stored as `s`.
    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::parse(s).ok_or_else(|| {
            format!(
                "unknown outcome {s:?} (expected pending, agree, refuse, terminated, deleted or unknown)"
            )
        })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a decision was learned, as stored in `outcomes.learned_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnedFrom {
    /// A DingTalk Stream event.
    Stream,
    /// Reading the instance.
    Poll,
    /// Nothing was learned before the worker stopped asking (`unknown`).
    Age,
}

impl LearnedFrom {
    fn as_str(self) -> &'static str {
        match self {
            LearnedFrom::Stream => "stream",
            LearnedFrom::Poll => "poll",
            LearnedFrom::Age => "age",
        }
    }
}

/// The approval a succeeding job created, to be followed to its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    /// DingTalk's process instance id.
    pub instance_id: String,
    /// The job's own notification URL, if its payload names one.
    pub callback_url: Option<String>,
    /// When the first read of the instance is due (unix ms).
    pub first_check_at: i64,
}

/// A decision learned from DingTalk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// DingTalk's process instance id.
    pub instance_id: String,
    /// Never `Pending`.
    pub verdict: Verdict,
    /// DingTalk's finish time (unix ms), if it gave one.
    pub decided_at_ms: Option<i64>,
    /// How it was learned.
    pub learned_from: LearnedFrom,
    /// The instance's tasks and operation records (JSON), when read with the decision.
    pub records: Option<String>,
}

/// A decision that changed its row: the first word on its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct Recorded {
    /// The job decided.
    pub job_id: JobId,
    /// When the instance was created (unix ms).
    pub submitted_at: i64,
}

/// What happens after a decision is recorded.
#[derive(Debug, Clone, Default)]
pub struct DecisionFollowUp {
    /// Where to notify when the job names no `callback_url` (`[outcome] webhook_url`).
    pub default_url: Option<String>,
    /// Whether the instance is read once more for its approvers' records when the decision
    /// came without them (a Stream event carries none).
    pub fetch_records: bool,
}

/// One instance claimed for a read.
#[derive(Debug, Clone, FromRow)]
pub struct DueCheck {
    /// The job.
    pub job_id: JobId,
    /// DingTalk's process instance id.
    #[sqlx(try_from = "Lossy")]
    pub instance_id: String,
    /// `pending`, or the decision whose records are still to be read.
    #[sqlx(try_from = "Lossy")]
    pub outcome: String,
    /// When the instance was created (unix ms).
    pub submitted_at: i64,
    /// Reads so far, this one included; fences the write of what it found.
    pub checks: i64,
}

/// What a read found that is not a decision, written under the read's fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDone {
    /// The job.
    pub job_id: JobId,
    /// The claim's read count (its fence).
    pub checks: i64,
    /// The next read (unix ms), or none.
    pub next_check_at: Option<i64>,
    /// The tasks and records read (JSON); `None` keeps what is stored.
    pub records: Option<String>,
    /// Why the read failed, if it did.
    pub error: Option<String>,
}

/// A job's outcome as stored, for `show`, `jobs` and `--wait --until decided`.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct OutcomeRow {
    /// The job.
    pub job_id: JobId,
    /// DingTalk's process instance id.
    #[sqlx(try_from = "Lossy")]
    pub instance_id: String,
    /// `pending`, `agree`, `refuse`, `terminated`, `deleted` or `unknown`.
    #[sqlx(try_from = "Lossy")]
    pub outcome: String,
    /// When the instance was created (unix ms).
    pub submitted_at: i64,
    /// When it was decided (unix ms).
    pub decided_at: Option<i64>,
    /// When the worker learned it (unix ms).
    pub learned_at: Option<i64>,
    /// `stream`, `poll` or `age`.
    #[sqlx(try_from = "Lossy")]
    pub learned_from: Option<String>,
    /// The approvers' tasks and operation records (JSON), as last read.
    #[sqlx(try_from = "Lossy")]
    pub records: Option<String>,
    /// Reads of the instance so far.
    pub checks: i64,
    /// The next planned read (unix ms).
    pub next_check_at: Option<i64>,
    /// Why the last read failed.
    #[sqlx(try_from = "Lossy")]
    pub last_error: Option<String>,
    /// The job's own notification URL.
    #[sqlx(try_from = "Lossy")]
    pub callback_url: Option<String>,
}

/// A notification claimed for one send.
#[derive(Debug, Clone, FromRow)]
pub struct DueDelivery {
    /// Row id.
    pub id: i64,
    /// The id sent to the receiver.
    #[sqlx(try_from = "Lossy")]
    pub delivery_id: String,
    /// The job decided.
    pub job_id: JobId,
    /// Where it goes.
    #[sqlx(try_from = "Lossy")]
    pub url: String,
    /// The JSON body.
    #[sqlx(try_from = "Lossy")]
    pub body: String,
    /// Sends so far, this one included; fences the write of its answer.
    pub attempts: i64,
    /// When the decision was recorded (unix ms).
    pub created_at: i64,
}

/// How one send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The receiver answered 2xx.
    Delivered {
        /// Its HTTP status.
        status: u16,
    },
    /// Send again at `at` (unix ms).
    Retry {
        /// The receiver's HTTP status, if it answered.
        status: Option<u16>,
        /// Why the send failed.
        error: String,
        /// When to send again (unix ms).
        at: i64,
    },
    /// Stop sending.
    GiveUp {
        /// The receiver's HTTP status, if it answered.
        status: Option<u16>,
        /// Why the last send failed.
        error: String,
    },
}

/// A notification as stored, for `show`.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct DeliveryRow {
    /// The id sent to the receiver.
    #[sqlx(try_from = "Lossy")]
    pub delivery_id: String,
    /// Where it goes.
    #[sqlx(try_from = "Lossy")]
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    #[sqlx(try_from = "Lossy")]
    pub status: String,
    /// Sends so far.
    pub attempts: i64,
    /// The next send (unix ms), while pending.
    pub next_attempt_at: Option<i64>,
    /// The receiver's last HTTP status.
    pub last_status: Option<i64>,
    /// Why the last send failed.
    #[sqlx(try_from = "Lossy")]
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub delivered_at: Option<i64>,
}

/// Outcome counts for `stats` and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutcomeStats {
    /// Followed instances per outcome.
    pub by_outcome: Vec<(String, i64)>,
    /// Reads of instances so far, all rows.
    pub checks: i64,
    /// Decided approvals whose approvers' records are still to be read.
    pub awaiting_records: i64,
    /// Notifications per status.
    pub deliveries: Vec<(String, i64)>,
}

/// A fresh delivery id: 128 random bits, so receivers can dedupe across hosts.
pub fn new_delivery_id() -> String {
    format!("dlv_{:032x}", rand::random::<u128>())
}

impl Queue {
    /// Records `decisions` in one transaction. For each: the job it decided, or `None` when
    /// no pending instance has that id (not ours, or decided already). A decision that
    /// changed its row queues a notification when the job or `follow_up` names a URL.
    pub async fn record_decisions(
        &self,
        decisions: &[Decision],
        follow_up: &DecisionFollowUp,
        now_ms: i64,
    ) -> Result<Vec<Option<Recorded>>, QueueError> {
        if decisions.is_empty() {
            return Ok(Vec::new());
        }
        on_store!(self, store => store.record_decisions(decisions, follow_up, now_ms).await)
    }

    /// Claims up to `limit` instances whose read is due, pushing their next read `lease_ms`
    /// ahead so no other process reads them meanwhile.
    pub async fn claim_checks(
        &self,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<DueCheck>, QueueError> {
        on_store!(self, store => store.claim_checks(limit, lease_ms, now_ms).await)
    }

    /// Writes what a read found (not a decision). `false` when another read or a decision
    /// overtook it.
    pub async fn finish_check(&self, done: &CheckDone, now_ms: i64) -> Result<bool, QueueError> {
        on_store!(self, store => store.finish_check(done, now_ms).await)
    }

    /// Claims up to `limit` notifications due for a send, pushing their next send `lease_ms`
    /// ahead (past the send's own timeout).
    pub async fn claim_deliveries(
        &self,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<DueDelivery>, QueueError> {
        on_store!(self, store => store.claim_deliveries(limit, lease_ms, now_ms).await)
    }

    /// Writes how a send ended. `false` when another send of it overtook this one.
    pub async fn finish_delivery(
        &self,
        delivery: &DueDelivery,
        sent: &Sent,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        on_store!(self, store => store.finish_delivery(delivery.id, delivery.attempts, sent, now_ms).await)
    }

    /// The outcome of job `id`, if it is followed.
    pub async fn outcome(&self, id: JobId) -> Result<Option<OutcomeRow>, QueueError> {
        on_store!(self, store => store.outcome(id).await)
    }

    /// The notifications of job `id`, oldest first.
    pub async fn deliveries(&self, id: JobId) -> Result<Vec<DeliveryRow>, QueueError> {
        on_store!(self, store => store.deliveries(id).await)
    }

    /// Counts for `stats`.
    pub async fn outcome_stats(&self) -> Result<OutcomeStats, QueueError> {
        on_store!(self, store => store.outcome_stats().await)
    }
}

impl Decision {
    /// The stored spelling of how it was learned.
    pub(super) fn learned_from(&self) -> &'static str {
        self.learned_from.as_str()
    }

    /// The next read: once more for the approvers' records when the decision came without
    /// them and they are wanted, else none.
    pub(super) fn next_check_at(&self, follow_up: &DecisionFollowUp, now_ms: i64) -> Option<i64> {
        (self.records.is_none() && follow_up.fetch_records && self.verdict != Verdict::Unknown)
            .then_some(now_ms)
    }
}

impl Sent {
    /// `(status, next_attempt_at, last_status, last_error, delivered_at)` as stored.
    pub(super) fn columns(
        &self,
        now_ms: i64,
    ) -> (
        &'static str,
        Option<i64>,
        Option<i64>,
        Option<&str>,
        Option<i64>,
    ) {
        match self {
            Sent::Delivered { status } => (
                "delivered",
                None,
                Some(i64::from(*status)),
                None,
                Some(now_ms),
            ),
            Sent::Retry { status, error, at } => (
                "pending",
                Some(*at),
                status.map(i64::from),
                Some(error.as_str()),
                None,
            ),
            Sent::GiveUp { status, error } => (
                "failed",
                None,
                status.map(i64::from),
                Some(error.as_str()),
                None,
            ),
        }
    }
}
