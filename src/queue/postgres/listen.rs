//! The listener: one connection that `LISTEN`s on the jobs channel and turns each
//! notification into a wake-up for the workers of this process.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::queue::QueueError;

/// The channel the schema's triggers notify (see the migrations).
pub(super) const CHANNEL: &str = "approval_worker_jobs";

/// How long the listener waits before trying its connection again after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Starts listening (the first `LISTEN` is made before this returns, so a job inserted
/// after `open` wakes a worker), then hands the listener to a task that bumps `wake` for
/// every notification. When its connection is lost it reconnects and bumps `wake` once
/// more: a notification sent meanwhile is lost, so the workers must look for themselves.
/// The task ends when the pool is closed.
pub(super) async fn spawn(pool: &PgPool, wake: Arc<watch::Sender<u64>>) -> Result<(), QueueError> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    tokio::spawn(async move {
        let bump = || wake.send_modify(|generation| *generation = generation.wrapping_add(1));
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => bump(),
                Ok(None) => {
                    tracing::warn!(
                        "lost the database connection listening for new jobs; reconnecting"
                    );
                    bump();
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(%error, "listening for new jobs failed; reconnecting");
                    // Listening again first, then the wake-up: a job inserted before the
                    // LISTEN is found by the claim the wake-up causes, one inserted after
                    // it by its notification.
                    loop {
                        tokio::time::sleep(RETRY_AFTER).await;
                        match listener.listen(CHANNEL).await {
                            Ok(()) => break,
                            Err(sqlx::Error::PoolClosed) => return,
                            Err(error) => tracing::debug!(%error, "still cannot listen"),
                        }
                    }
                    bump();
                }
            }
        }
    });
    Ok(())
}
