//! The job queue: the only module that speaks SQL. [`Queue`] is the one interface the worker
//! and the command line use; behind it sits one store per database, each with its own SQL
//! and migrations: `sqlite` (one file, one host, the embedded default) and `postgres` (one
//! database, many hosts).
//!
//! Every write after a claim is fenced on `(id, attempt, status = 'running')` and checks that
//! exactly one row changed; a write that changes nothing means another claim owns the job now
//! and surfaces as [`QueueError::LeaseLost`]. Time is always bound from Rust (`now_ms`), never
//! read inside SQL, so tests control it.

/// Runs `$body` with `$store` bound to whichever store `$queue` holds. Every operation both
/// stores offer goes through here, so each store must offer it with the same signature.
macro_rules! on_store {
    ($queue:expr, $store:ident => $body:expr) => {
        match &$queue.store {
            $crate::queue::Store::Sqlite($store) => $body,
            $crate::queue::Store::Postgres($store) => $body,
        }
    };
}

mod admin;
mod bulk;
mod claim;
pub(crate) mod copy;
mod copy_outcomes;
mod enqueue;
mod error;
mod history;
mod inspect;
mod measured;
pub mod outcome;
mod overview;
mod pause;
mod postgres;
mod progress;
mod quota;
mod sqlite;
mod text;
mod transition;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

pub use crate::clock::now_ms;
pub(crate) use admin::{Depth, Stats};
pub use admin::{EventRow, JobFilter, JobRow};
pub use bulk::{BulkAction, BulkDone};
pub use claim::ClaimedJob;
pub use enqueue::{Enqueued, NewJob};
pub use error::QueueError;
use error::check_schema_known;
pub use history::{HistoryEntry, history};
pub(crate) use inspect::{DatabaseFile, exists, inspect};
pub(crate) use measured::EventTiming;
pub use outcome::{DeliveryRow, Follow, OutcomeRow, Verdict};
pub use overview::{FinishedBucket, QueueCounts};
pub use pause::PausedQueue;
pub use postgres::PgOptions;
pub(crate) use postgres::redacted as redacted_url;
pub use progress::{LiveUpload, UploadReport};
pub use quota::{CallDelta, MonthlyCalls, quota_month};
pub(crate) use sqlite::measure;
pub(crate) use sqlite::{BUSY_TIMEOUT_SECS, OpenOptions, SqliteStore};
pub use transition::{Failure, StepDone, Unstored};

use postgres::PgStore;

/// The queue name a job gets when its producer names none.
pub(crate) const DEFAULT_QUEUE: &str = "default";

/// A job's primary key.
pub type JobId = i64;

/// A job's lifecycle status, as stored in `jobs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for `run_at`, then for a worker.
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// The approval instance exists; `result` holds its id.
    Succeeded,
    /// Given up; `last_error` says why.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The statuses a job ends in.
    const FINISHED: [JobStatus; 3] = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?} (expected queued, running, succeeded, failed or cancelled)")
            })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one claim of one job; every write after the claim carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub(crate) id: JobId,
    /// The attempt the claim started.
    attempt: i64,
}

#[cfg(test)]
impl Fence {
    /// The fence of attempt `attempt` of job `id`, for tests outside the queue.
    pub(crate) fn for_tests(id: JobId, attempt: i64) -> Fence {
        Fence { id, attempt }
    }
}

/// Where the queue lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file, created if missing.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database.
    Postgres(PgOptions),
}

/// The job queue, on whichever store it lives.
#[derive(Clone, Debug)]
pub struct Queue {
    store: Store,
}

#[derive(Clone, Debug)]
enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Queue {
    /// Opens (creating if needed, owner-only) a SQLite queue and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Queue, QueueError> {
        Queue::open_with(path, &OpenOptions::default()).await
    }

    /// [`Queue::open`] with extra connection settings.
    pub(crate) async fn open_with(path: &Path, open: &OpenOptions) -> Result<Queue, QueueError> {
        let store = Store::Sqlite(SqliteStore::open(path, open).await?);
        Ok(Queue { store })
    }

    /// Opens the queue at `location` and applies pending migrations.
    pub async fn connect(location: &Location) -> Result<Queue, QueueError> {
        match location {
            Location::Sqlite(path) => Queue::open(path).await,
            Location::Postgres(options) => Ok(Queue {
                store: Store::Postgres(PgStore::open(options).await?),
            }),
        }
    }

    /// The SQLite store, for what only a SQLite file has (pragmas, its WAL, the benchmark's
    /// measurements); `None` on PostgreSQL.
    pub(crate) fn sqlite(&self) -> Option<&SqliteStore> {
        match &self.store {
            Store::Sqlite(store) => Some(store),
            Store::Postgres(_) => None,
        }
    }

    /// Which database this is, for messages: the SQLite file, or the PostgreSQL URL without
    /// its password.
    pub(crate) fn describe(&self) -> String {
        on_store!(self, store => store.describe())
    }

    /// Adds one job.
    pub async fn enqueue(&self, job: &NewJob, now_ms: i64) -> Result<Enqueued, QueueError> {
        let mut out = self.enqueue_many(std::slice::from_ref(job), now_ms).await?;
        // enqueue_many returns exactly one outcome per input job.
        Ok(out.remove(0))
    }

    /// Adds many jobs in one transaction: all are durable when this returns, or none. A job
    /// whose idempotency key is already taken (in the table or earlier in `jobs`) is not
    /// added; its outcome names the job holding the key.
    pub async fn enqueue_many(
        &self,
        jobs: &[NewJob],
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        on_store!(self, store => store.enqueue_many(jobs, now_ms).await)
    }

    /// Leases up to `limit` due jobs of `queue` to `owner` until `now_ms + lease_ms`, highest
    /// priority first, then oldest `run_at`, and records a `claimed` event for each.
    pub async fn claim(
        &self,
        queue: &str,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        on_store!(self, store => store.claim(queue, owner, limit, lease_ms, now_ms).await)
    }

    /// Waits until new work may have arrived (another process inserted or released a job),
    /// or `max_wait` passes. What was seen before is taken when this is called, not when the
    /// future is first polled, so nothing arriving in between is missed.
    pub fn wait_for_change(&self, max_wait: Duration) -> impl Future<Output = ()> + Send + use<> {
        use futures_util::future::Either;
        match &self.store {
            Store::Sqlite(store) => Either::Left(store.wait_for_change(max_wait)),
            Store::Postgres(store) => Either::Right(store.wait_for_change(max_wait)),
        }
    }

    /// Extends the leases of `fences`, the claims this process is still driving, to
    /// `now_ms + lease_ms`; returns how many. A job whose runner stopped (it gave up on a
    /// write, or panicked) is not among them, so its lease runs out and it is rescued.
    pub async fn heartbeat(
        &self,
        owner: &str,
        fences: &[Fence],
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        if fences.is_empty() {
            return Ok(0);
        }
        on_store!(self, store => store.heartbeat(owner, fences, lease_ms, now_ms).await)
    }

    /// Puts running jobs whose lease expired before `now_ms` back in the queue at their
    /// checkpoint, without charging the attempt (the worker died, not the job). Safe to run
    /// from several processes at once: each job is rescued by one of them.
    pub async fn rescue(&self, now_ms: i64) -> Result<Vec<JobId>, QueueError> {
        on_store!(self, store => store.rescue(now_ms).await)
    }

    /// Jobs matching `filter`, newest first, below its `before_id` when it has one.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRow>, QueueError> {
        on_store!(self, store => store.list(filter).await)
    }

    /// One job.
    pub async fn get(&self, id: JobId) -> Result<JobRow, QueueError> {
        on_store!(self, store => store.get(id).await)
    }

    /// A job's history, oldest first.
    pub async fn events(&self, id: JobId) -> Result<Vec<EventRow>, QueueError> {
        on_store!(self, store => store.events(id).await)
    }

    /// Re-queues a failed or cancelled job at its checkpoint with a fresh set of attempts.
    pub async fn retry(&self, id: JobId, now_ms: i64) -> Result<(), QueueError> {
        on_store!(self, store => store.retry(id, now_ms).await)
    }

    /// Cancels a queued job at once, or asks a running one to stop at its next checkpoint.
    /// A queued job stored at `create_step` (a create may have been sent) is flagged and stays
    /// queued: the worker reconciles, then adopts the instance or cancels. Returns the status
    /// afterwards.
    pub async fn cancel(
        &self,
        id: JobId,
        create_step: &str,
        now_ms: i64,
    ) -> Result<JobStatus, QueueError> {
        on_store!(self, store => store.cancel(id, create_step, now_ms).await)
    }

    /// Counts for `stats`.
    pub(crate) async fn stats(&self, now_ms: i64) -> Result<Stats, QueueError> {
        on_store!(self, store => store.stats(now_ms).await)
    }

    /// Deletes jobs with one of `statuses` (finished ones: succeeded, failed, cancelled)
    /// that finished before `before_ms`, with their events; with `dry_run` only counts them.
    /// The job with the highest id is kept whatever its age, so that its id is never handed
    /// out again.
    pub async fn prune(
        &self,
        before_ms: i64,
        statuses: &[JobStatus],
        dry_run: bool,
    ) -> Result<u64, QueueError> {
        let statuses: Vec<&str> = statuses
            .iter()
            .filter(|status| JobStatus::FINISHED.contains(status))
            .map(|status| status.as_str())
            .collect();
        on_store!(self, store => store.prune(before_ms, &statuses, dry_run).await)
    }

    /// Adds call tallies for `app_key` in `month` in one transaction and returns the app's
    /// counted calls of that month afterwards (all processes sharing this database included).
    pub async fn add_calls(
        &self,
        app_key: &str,
        month: &str,
        deltas: &[CallDelta],
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        on_store!(self, store => store.add_calls(app_key, month, deltas, now_ms).await)
    }

    /// The app's counted calls in `month`.
    pub(crate) async fn counted_calls(
        &self,
        app_key: &str,
        month: &str,
    ) -> Result<u64, QueueError> {
        on_store!(self, store => store.counted_calls(app_key, month).await)
    }

    /// Every app's and endpoint's calls in `month`.
    pub async fn monthly_calls(&self, month: &str) -> Result<Vec<MonthlyCalls>, QueueError> {
        on_store!(self, store => store.monthly_calls(month).await)
    }

    /// Whether DingTalk calls are paced through slots in this database, shared by every
    /// process using it ([`Queue::take_call_slots`]): on PostgreSQL, where those processes may
    /// be on several hosts. On SQLite each process paces itself.
    pub(crate) fn shares_call_slots(&self) -> bool {
        matches!(self.store, Store::Postgres(_))
    }

    /// Takes `count` consecutive DingTalk call slots, `interval_us` apart, for `endpoint` of
    /// `app_key`, no earlier than `now_us`; returns when the first is (unix µs). No slot is
    /// ever given twice, whichever process asks.
    pub(crate) async fn take_call_slots(
        &self,
        app_key: &str,
        endpoint: &str,
        count: u32,
        interval_us: i64,
        now_us: i64,
    ) -> Result<i64, QueueError> {
        match &self.store {
            Store::Postgres(store) => {
                store
                    .take_slots(app_key, endpoint, count, interval_us, now_us)
                    .await
            }
            Store::Sqlite(_) => Err(QueueError::Unsupported(
                "call slots are shared through PostgreSQL; a SQLite queue paces each process",
            )),
        }
    }

    /// The depth of `queue` at `now_ms`.
    pub(crate) async fn depth(&self, queue: &str, now_ms: i64) -> Result<Depth, QueueError> {
        on_store!(self, store => store.depth(queue, now_ms).await)
    }

    /// Jobs per status, all queues (every status present, zero included).
    pub(crate) async fn status_counts(&self) -> Result<Vec<(String, i64)>, QueueError> {
        let rows = on_store!(self, store => store.status_counts().await)?;
        Ok(JobStatus::ALL
            .iter()
            .map(|status| {
                let count = rows
                    .iter()
                    .find(|(name, _)| name == status.as_str())
                    .map_or(0, |(_, count)| *count);
                (status.as_str().to_string(), count)
            })
            .collect())
    }

    /// One round trip to the database.
    pub(crate) async fn ping(&self) -> Result<(), QueueError> {
        on_store!(self, store => store.ping().await)
    }

    /// The query plan the database chooses for the claim, one line per plan row.
    pub async fn claim_plan(&self) -> Result<Vec<String>, QueueError> {
        on_store!(self, store => store.claim_plan().await)
    }

    /// Writes a consistent copy of a SQLite queue to `target` while workers keep running;
    /// returns its size. A PostgreSQL queue is backed up with `pg_dump`.
    pub(crate) async fn backup(&self, target: &Path) -> Result<u64, QueueError> {
        match &self.store {
            Store::Sqlite(store) => store.backup(target).await,
            Store::Postgres(_) => Err(QueueError::Unsupported(
                "a PostgreSQL queue is backed up with pg_dump: \
                 pg_dump --format=custom --file=approvals.dump DATABASE_URL",
            )),
        }
    }

    /// Why this queue's database files are no longer the ones it opened (deleted or replaced),
    /// or `None` while they are. A PostgreSQL queue has no files of its own: always `None`.
    pub(crate) fn files_replaced(&self) -> Option<String> {
        self.sqlite().and_then(SqliteStore::files_replaced)
    }

    /// Transactions (and autocommit writes) this queue has committed since it was opened:
    /// the benchmark divides it by the jobs finished to report commits per job.
    pub fn commits(&self) -> u64 {
        on_store!(self, store => store.commits())
    }

    /// Closes the connections (a SQLite queue checkpoints its WAL).
    pub async fn close(&self) {
        on_store!(self, store => store.close().await)
    }
}

fn lease_lost(fence: Fence) -> QueueError {
    QueueError::LeaseLost {
        id: fence.id,
        attempt: fence.attempt,
    }
}
