//! Claiming due jobs under a lease, keeping leases alive, and rescuing expired ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::Batch;
use super::{ClaimedJob, Fence, JobId, QueueError, SqliteStore, text, tx};

impl ClaimedJob {
    /// Reads a row of [`CLAIM_SQL`]'s `RETURNING`. A row this worker cannot read is still
    /// its claim: it comes back with [`ClaimedJob::unreadable`] set so that the job is failed
    /// with the reason, instead of the whole claim failing and its jobs staying `running`.
    pub(in crate::queue) fn read(row: &SqliteRow) -> Result<ClaimedJob, sqlx::Error> {
        let id = row.try_get("id")?;
        let attempt = row.try_get("attempt")?;
        let text = |column: &str| -> Result<Option<Result<String, String>>, sqlx::Error> {
            let bytes: Option<&[u8]> = row.try_get(column)?;
            Ok(bytes.map(text::decode))
        };
        let read = || -> Result<ClaimedJob, sqlx::Error> {
            let mut unreadable = None;
            let payload = match text("payload")? {
                Some(Ok(payload)) => payload,
                Some(Err(escaped)) => {
                    unreadable = Some("payload is not valid UTF-8".to_owned());
                    escaped
                }
                None => String::new(),
            };
            let checkpoint = match text("checkpoint")? {
                Some(Ok(checkpoint)) => Some(checkpoint),
                Some(Err(_)) => {
                    unreadable.get_or_insert_with(|| "checkpoint is not valid UTF-8".to_owned());
                    None
                }
                None => None,
            };
            Ok(ClaimedJob {
                id,
                attempt,
                uncharged_attempts: row.try_get("uncharged_attempts")?,
                max_attempts: row.try_get("max_attempts")?,
                payload,
                checkpoint,
                cancel_requested: row.try_get("cancel_requested")?,
                unreadable,
            })
        };
        Ok(read().unwrap_or_else(|e| ClaimedJob {
            id,
            attempt,
            uncharged_attempts: 0,
            max_attempts: None,
            payload: String::new(),
            checkpoint: None,
            cancel_requested: false,
            unreadable: Some(format!("the claimed row could not be read: {e}")),
        }))
    }
}

/// One statement: picks due jobs in index order and leases them. Positional parameters
/// (it runs inside the writer's multi-statement query): owner, lease expiry, now, queue,
/// now, then queue, now and how many for the limit, and the claim's index in its batch,
/// returned to tell its rows apart. The limit is the number of due jobs up to how many
/// (counted like [`DUE_SQL`]), so the walk of `jobs_claim` stops after the due jobs and never
/// walks the jobs waiting in backoff behind them, even when fewer are due than asked for.
pub(super) const CLAIM_SQL: &str = "UPDATE jobs \
     SET status = 'running', attempt = attempt + 1, lease_owner = ?, lease_expires_at = ?, \
         updated_at = ? \
     WHERE id IN (SELECT id FROM jobs \
                  WHERE status = 'queued' AND queue = ? AND run_at <= ? \
                    AND NOT EXISTS (SELECT 1 FROM queue_pauses p WHERE p.queue = jobs.queue) \
                  ORDER BY priority DESC, run_at, id \
                  LIMIT (SELECT COUNT(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_due \
                         WHERE status = 'queued' AND queue = ? AND run_at <= ? LIMIT ?))) \
     RETURNING 'claimed', ? AS claim, id, attempt, uncharged_attempts, max_attempts, payload, \
               checkpoint, cancel_requested;";

/// The `claimed` events of the jobs the claim statement before it just leased: running,
/// leased to this owner until this expiry, updated now, and without a `claimed` event for
/// this attempt yet. Parameters: now, lease expiry, owner, now.
pub(super) const CLAIM_EVENTS_SQL: &str = "INSERT INTO job_events (job_id, at, kind, attempt) \
     SELECT id, ?, 'claimed', attempt FROM jobs \
     WHERE status = 'running' AND lease_expires_at = ? AND lease_owner = ? AND updated_at = ? \
       AND NOT EXISTS (SELECT 1 FROM job_events e \
                       WHERE e.job_id = jobs.id AND e.attempt = jobs.attempt \
                         AND e.kind = 'claimed');";

/// `?1` queue, `?2` now, `?3` at most: how many due jobs there are, up to the claim's limit
/// (none while the queue is paused).
/// It walks `jobs_due` (queue, run_at) and stops at the first job not yet due, so neither an
/// idle poll nor a claim for more jobs than are due ever walks the jobs waiting in backoff.
pub(super) const DUE_SQL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_due \
     WHERE status = 'queued' AND queue = ?1 AND run_at <= ?2 \
       AND NOT EXISTS (SELECT 1 FROM queue_pauses p WHERE p.queue = ?1) LIMIT ?3)";

/// How often [`SqliteStore::wait_for_change`] looks for other processes' commits.
const CHANGE_CHECK: Duration = Duration::from_millis(50);

/// A claim waiting for the group-commit writer.
pub(super) struct ClaimRequest {
    pub(super) queue: String,
    pub(super) owner: String,
    pub(super) limit: u32,
    pub(super) lease_ms: i64,
    pub(super) now_ms: i64,
}

impl ClaimRequest {
    /// Binds [`CLAIM_SQL`] and [`CLAIM_EVENTS_SQL`] for this claim, the `index`-th of its batch.
    pub(in crate::queue) fn bind<'q>(&'q self, query: Batch<'q>, index: usize) -> Batch<'q> {
        let expires = self.now_ms + self.lease_ms;
        query
            .bind(&self.owner)
            .bind(expires)
            .bind(self.now_ms)
            .bind(&self.queue)
            .bind(self.now_ms)
            .bind(&self.queue)
            .bind(self.now_ms)
            .bind(i64::from(self.limit))
            .bind(i64::try_from(index).unwrap_or(i64::MAX))
            .bind(self.now_ms)
            .bind(expires)
            .bind(&self.owner)
            .bind(self.now_ms)
    }
}

impl SqliteStore {
    /// Leases up to `limit` due jobs of `queue` to `owner` until `now_ms + lease_ms`, and
    /// records a `claimed` event for each, in one transaction (shared with whatever other
    /// writes are waiting, see the writer).
    ///
    /// After a claim that found fewer jobs than it asked for, the next one first counts the
    /// due jobs with one cheap read, and returns at once, taking no write lock, when there
    /// are none: an idle worker's polls stay reads. After a claim that got all it asked
    /// for, more are likely due, so the next one goes straight to the writer: that read
    /// would be one more hand-off to the connection's thread per claim while jobs flow.
    pub(in crate::queue) async fn claim(
        &self,
        queue: &str,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let likely_due = self.last_claim_full.load(Ordering::Relaxed);
        if !likely_due && self.due(queue, limit, now_ms).await? == 0 {
            return Ok(Vec::new());
        }
        let claimed = self
            .writer
            .claim(ClaimRequest {
                queue: queue.to_owned(),
                owner: owner.to_owned(),
                limit,
                lease_ms,
                now_ms,
            })
            .await?;
        let full = u32::try_from(claimed.len()).is_ok_and(|n| n == limit);
        self.last_claim_full.store(full, Ordering::Relaxed);
        Ok(claimed)
    }

    /// Waits until the database files change (another process committed, e.g. a producer's
    /// plain `INSERT`), or `max_wait` passes. An idle worker waits here instead of sleeping
    /// its whole poll interval, so pickup does not wait for the next poll. It looks at the
    /// files' size and mtime every [`CHANGE_CHECK`]: a `stat` on this thread, no hand-off to
    /// the connection's thread, so an idle `run` stays far below 1 % of a core. Jobs that
    /// become due by the clock alone (backoff) wait for `max_wait`. The files are first
    /// looked at when this is called, not when the future is first polled.
    pub(in crate::queue) fn wait_for_change(
        &self,
        max_wait: Duration,
    ) -> impl Future<Output = ()> + Send + use<> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let files = Arc::clone(&self.files);
        let seen = files.fingerprint();
        async move {
            loop {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return;
                }
                tokio::time::sleep(CHANGE_CHECK.min(deadline - now)).await;
                if files.fingerprint() != seen {
                    return;
                }
            }
        }
    }

    /// How many jobs of `queue` are due at `now_ms`, counting no further than `limit`.
    async fn due(&self, queue: &str, limit: u32, now_ms: i64) -> Result<u32, QueueError> {
        let (due,): (i64,) = sqlx::query_as(DUE_SQL)
            .bind(queue)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await?;
        Ok(u32::try_from(due).unwrap_or(0))
    }

    /// Extends the leases of `fences`, the claims this process is still driving, to
    /// `now_ms + lease_ms`; returns how many. A job whose runner stopped (it gave up on a
    /// write, or panicked) is not among them, so its lease runs out and it is rescued.
    pub(in crate::queue) async fn heartbeat(
        &self,
        owner: &str,
        fences: &[Fence],
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        if fences.is_empty() {
            return Ok(0);
        }
        let live: Vec<[i64; 2]> = fences
            .iter()
            .map(|fence| [fence.id, fence.attempt])
            .collect();
        let done = sqlx::query(HEARTBEAT_SQL)
            .bind(now_ms + lease_ms)
            .bind(owner)
            .bind(serde_json::to_string(&live).unwrap_or_default())
            .execute(&self.pool)
            .await?;
        self.count_commit();
        Ok(done.rows_affected())
    }

    /// Puts running jobs whose lease expired before `now_ms` back in the queue at their
    /// checkpoint, without charging the attempt (the worker died, not the job).
    pub(in crate::queue) async fn rescue(&self, now_ms: i64) -> Result<Vec<JobId>, QueueError> {
        let rescued = tx::immediate(&self.pool, async |conn| {
            let rescued: Vec<(JobId, i64)> = sqlx::query_as(RESCUE_SQL)
                .bind(now_ms)
                .fetch_all(&mut *conn)
                .await?;
            for (id, attempt) in &rescued {
                sqlx::query(RESCUED_EVENT_SQL)
                    .bind(id)
                    .bind(now_ms)
                    .bind(attempt)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(rescued)
        })
        .await?;
        self.count_commit();
        Ok(rescued.into_iter().map(|(id, _)| id).collect())
    }
}

/// `?1` new expiry, `?2` owner, `?3` the live fences as a JSON array of `[id, attempt]`: each
/// is looked up by its primary key, and renewed only while it is still that claim.
const HEARTBEAT_SQL: &str = "UPDATE jobs SET lease_expires_at = ?1 \
     FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempt \
           FROM json_each(?3)) AS live \
     WHERE jobs.id = live.id AND jobs.attempt = live.attempt \
       AND jobs.status = 'running' AND jobs.lease_owner = ?2";

/// Running jobs whose lease expired before `?1` go back to the queue at their checkpoint,
/// their attempt uncharged.
const RESCUE_SQL: &str = "UPDATE jobs \
     SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, run_at = ?1, \
         uncharged_attempts = uncharged_attempts + 1, updated_at = ?1 \
     WHERE status = 'running' AND lease_expires_at < ?1 \
     RETURNING id, attempt";

/// `?1` job, `?2` now, `?3` attempt.
const RESCUED_EVENT_SQL: &str = "INSERT INTO job_events (job_id, at, kind, attempt, error) \
     VALUES (?1, ?2, 'rescued', ?3, 'lease expired')";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use crate::queue::sqlite::measure::PlainProducer;
    use crate::queue::{NewJob, Queue, now_ms};

    fn job(run_at: Option<i64>) -> NewJob {
        NewJob {
            payload: json!({"process_code": "PROC-1"}).to_string(),
            run_at,
            ..NewJob::default()
        }
    }

    #[tokio::test]
    async fn jobs_waiting_in_backoff_are_not_counted_as_due() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("q.db")).await.unwrap();
        let now = now_ms();
        queue
            .enqueue_many(&vec![job(Some(now + 60_000)); 50], now)
            .await
            .unwrap();
        queue.enqueue_many(&vec![job(None); 3], now).await.unwrap();
        assert_eq!(
            queue
                .sqlite()
                .unwrap()
                .due("default", 16, now)
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            queue
                .sqlite()
                .unwrap()
                .due("default", 2, now)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            queue.sqlite().unwrap().due("other", 16, now).await.unwrap(),
            0
        );
        let claimed = queue.claim("default", "w", 16, 60_000, now).await.unwrap();
        assert_eq!(claimed.len(), 3);
        assert!(
            queue
                .claim("default", "w", 16, 60_000, now)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_heartbeat_renews_only_the_claims_it_names_so_the_others_are_rescued() {
        let (_dir, queue, claimed) =
            crate::queue::sqlite::test_support::queue_with_claimed(3).await;
        let now = now_ms();
        let live = [claimed[0].fence(), claimed[1].fence()];
        let stale_attempt = crate::queue::Fence {
            id: claimed[1].id,
            attempt: claimed[1].attempt + 1,
        };
        assert_eq!(
            queue
                .heartbeat("w1", &[live[0], stale_attempt], 120_000, now)
                .await
                .unwrap(),
            1,
            "a fence of another attempt renews nothing"
        );
        assert_eq!(queue.heartbeat("w1", &live, 120_000, now).await.unwrap(), 2);
        assert_eq!(queue.heartbeat("w2", &live, 120_000, now).await.unwrap(), 0);
        let rescued = queue.rescue(now + 90_000).await.unwrap();
        assert_eq!(rescued, [claimed[2].id]);
    }

    #[tokio::test]
    async fn an_idle_wait_ends_when_another_connection_inserts_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let queue = Queue::open(&path).await.unwrap();
        let mut producer = PlainProducer::connect(&path).await.unwrap();
        let waiting = queue.wait_for_change(Duration::from_secs(30));
        producer
            .insert(&json!({"process_code": "PROC-1"}).to_string())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends long before its 30 s");
    }
}
