//! Fenced writes a claim makes: checkpoint, retry later, succeed, fail, release, cancel.
//! Each changes the job row and records its event in one transaction.

use sqlx::{Sqlite, Transaction};

use super::{Fence, Queue, QueueError, fenced, lease_lost};

/// The kinds of rows in `job_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A worker leased the job.
    Claimed,
    /// A step finished and its output was checkpointed.
    StepDone,
    /// A step failed and the job took another path within the same attempt.
    StepFailed,
    /// The attempt failed and the job waits for `run_at`.
    RetryScheduled,
    /// An expired lease was taken back.
    Rescued,
    /// A worker gave the job back unfinished (shutdown), uncharged.
    Released,
    /// The approval instance exists.
    Succeeded,
    /// The job gave up.
    Failed,
    /// The job stopped on request.
    Cancelled,
    /// An operator re-queued a finished job.
    Retried,
}

impl EventKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Claimed => "claimed",
            EventKind::StepDone => "step_done",
            EventKind::StepFailed => "step_failed",
            EventKind::RetryScheduled => "retry_scheduled",
            EventKind::Rescued => "rescued",
            EventKind::Released => "released",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
            EventKind::Retried => "retried",
        }
    }
}

/// What went wrong in a step, as recorded in `last_error` and the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// The step that failed.
    pub step: String,
    /// A readable reason (never a credential).
    pub message: String,
    /// The HTTP status DingTalk or OSS answered, if any.
    pub http_status: Option<u16>,
    /// How long the step ran.
    pub duration_ms: i64,
}

/// The columns of one event row.
struct Event<'a> {
    kind: EventKind,
    step: Option<&'a str>,
    duration_ms: Option<i64>,
    error: Option<&'a str>,
    http_status: Option<u16>,
}

impl<'a> Event<'a> {
    fn plain(kind: EventKind) -> Self {
        Event {
            kind,
            step: None,
            duration_ms: None,
            error: None,
            http_status: None,
        }
    }

    fn failure(kind: EventKind, failure: &'a Failure) -> Self {
        Event {
            kind,
            step: Some(&failure.step),
            duration_ms: Some(failure.duration_ms),
            error: Some(&failure.message),
            http_status: failure.http_status,
        }
    }
}

async fn insert_event(
    tx: &mut Transaction<'_, Sqlite>,
    fence: Fence,
    event: Event<'_>,
    now_ms: i64,
) -> Result<(), QueueError> {
    sqlx::query(
        "INSERT INTO job_events (job_id, at, kind, step, attempt, duration_ms, error, http_status) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(fence.id)
    .bind(now_ms)
    .bind(event.kind.as_str())
    .bind(event.step)
    .bind(fence.attempt)
    .bind(event.duration_ms)
    .bind(event.error)
    .bind(event.http_status)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Queue {
    /// Stores the next step after `done_step` finished. Returns whether a cancel was
    /// requested meanwhile, so the runner can stop at this step boundary without another read.
    pub async fn checkpoint(
        &self,
        fence: Fence,
        done_step: &str,
        duration_ms: i64,
        next_step: &str,
        checkpoint_json: &str,
        now_ms: i64,
    ) -> Result<bool, QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let cancel: Option<(bool,)> = sqlx::query_as(
            "UPDATE jobs SET step = ?1, checkpoint = ?2, updated_at = ?3 \
             WHERE id = ?4 AND attempt = ?5 AND status = 'running' \
             RETURNING cancel_requested",
        )
        .bind(next_step)
        .bind(checkpoint_json)
        .bind(now_ms)
        .bind(fence.id)
        .bind(fence.attempt)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((cancel_requested,)) = cancel else {
            return Err(lease_lost(fence));
        };
        let event = Event {
            step: Some(done_step),
            duration_ms: Some(duration_ms),
            ..Event::plain(EventKind::StepDone)
        };
        insert_event(&mut tx, fence, event, now_ms).await?;
        tx.commit().await?;
        Ok(cancel_requested)
    }

    /// Records a step failure the job recovers from within this attempt (for example an
    /// expired upload ticket sending it back to `upload_info`), with the step to go back to.
    pub async fn step_failed(
        &self,
        fence: Fence,
        failure: &Failure,
        next_step: &str,
        checkpoint_json: &str,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET step = ?1, checkpoint = ?2, updated_at = ?3 \
             WHERE id = ?4 AND attempt = ?5 AND status = 'running'",
        )
        .bind(next_step)
        .bind(checkpoint_json)
        .bind(now_ms)
        .bind(fence.id)
        .bind(fence.attempt)
        .execute(&mut *tx)
        .await?;
        fenced(done.rows_affected(), fence)?;
        insert_event(
            &mut tx,
            fence,
            Event::failure(EventKind::StepFailed, failure),
            now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts the job back in the queue until `run_at_ms`, keeping its checkpoint.
    pub async fn retry_later(
        &self,
        fence: Fence,
        failure: &Failure,
        run_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = ?1, lease_owner = NULL, \
                 lease_expires_at = NULL, last_error = ?2, updated_at = ?3 \
             WHERE id = ?4 AND attempt = ?5 AND status = 'running'",
        )
        .bind(run_at_ms)
        .bind(&failure.message)
        .bind(now_ms)
        .bind(fence.id)
        .bind(fence.attempt)
        .execute(&mut *tx)
        .await?;
        fenced(done.rows_affected(), fence)?;
        let event = Event::failure(EventKind::RetryScheduled, failure);
        insert_event(&mut tx, fence, event, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Finishes the job: the instance exists. `checkpoint_json` is the final step.
    pub async fn succeed(
        &self,
        fence: Fence,
        result_json: &str,
        checkpoint_json: &str,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'succeeded', step = 'done', result = ?1, checkpoint = ?2, \
                 last_error = NULL, lease_owner = NULL, lease_expires_at = NULL, \
                 updated_at = ?3, finished_at = ?3 \
             WHERE id = ?4 AND attempt = ?5 AND status = 'running'",
        )
        .bind(result_json)
        .bind(checkpoint_json)
        .bind(now_ms)
        .bind(fence.id)
        .bind(fence.attempt)
        .execute(&mut *tx)
        .await?;
        fenced(done.rows_affected(), fence)?;
        insert_event(&mut tx, fence, Event::plain(EventKind::Succeeded), now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives up on the job.
    pub async fn fail(
        &self,
        fence: Fence,
        failure: &Failure,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        self.finish_unsuccessfully(
            fence,
            "failed",
            Event::failure(EventKind::Failed, failure),
            Some(&failure.message),
            now_ms,
        )
        .await
    }

    /// Stops the job because a cancel was requested (called only at a step boundary).
    pub async fn cancel_running(&self, fence: Fence, now_ms: i64) -> Result<(), QueueError> {
        let event = Event {
            error: Some("cancel requested"),
            ..Event::plain(EventKind::Cancelled)
        };
        self.finish_unsuccessfully(fence, "cancelled", event, None, now_ms)
            .await
    }

    async fn finish_unsuccessfully(
        &self,
        fence: Fence,
        status: &str,
        event: Event<'_>,
        last_error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = ?1, last_error = COALESCE(?2, last_error), \
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = ?3, finished_at = ?3 \
             WHERE id = ?4 AND attempt = ?5 AND status = 'running'",
        )
        .bind(status)
        .bind(last_error)
        .bind(now_ms)
        .bind(fence.id)
        .bind(fence.attempt)
        .execute(&mut *tx)
        .await?;
        fenced(done.rows_affected(), fence)?;
        insert_event(&mut tx, fence, event, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives the job back unfinished (shutdown): queued again at once at its checkpoint, and
    /// the attempt is not charged.
    pub async fn release(&self, fence: Fence, now_ms: i64) -> Result<(), QueueError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = ?1, lease_owner = NULL, \
                 lease_expires_at = NULL, uncharged_attempts = uncharged_attempts + 1, \
                 updated_at = ?1 \
             WHERE id = ?2 AND attempt = ?3 AND status = 'running'",
        )
        .bind(now_ms)
        .bind(fence.id)
        .bind(fence.attempt)
        .execute(&mut *tx)
        .await?;
        fenced(done.rows_affected(), fence)?;
        insert_event(&mut tx, fence, Event::plain(EventKind::Released), now_ms).await?;
        tx.commit().await?;
        Ok(())
    }
}
