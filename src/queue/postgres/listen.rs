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
/// every notification. When its connection fails, the task opens a new one, listens again,
/// and only then bumps `wake` once more: a notification sent meanwhile is lost, so the
/// workers must look for themselves, and anything inserted after that bump notifies. The
/// task ends when the pool is closed.
pub(super) async fn spawn(pool: &PgPool, wake: Arc<watch::Sender<u64>>) -> Result<(), QueueError> {
    let mut listener = connect(pool).await?;
    let pool = pool.clone();
    tokio::spawn(async move {
        let bump = || wake.send_modify(|generation| *generation = generation.wrapping_add(1));
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => bump(),
                // sqlx reconnected and listens again already.
                Ok(None) => {
                    tracing::warn!(
                        "lost the database connection listening for new jobs; reconnected"
                    );
                    bump();
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    // A connection sqlx does not recognise as lost (a reset, say) stays in
                    // the listener and fails every call: a new listener replaces it.
                    tracing::warn!(%error, "listening for new jobs failed; reconnecting");
                    listener = loop {
                        tokio::time::sleep(RETRY_AFTER).await;
                        if pool.is_closed() {
                            return;
                        }
                        match connect(&pool).await {
                            Ok(listener) => break listener,
                            Err(error) => tracing::debug!(%error, "still cannot listen"),
                        }
                    };
                    tracing::info!("listening for new jobs again");
                    bump();
                }
            }
        }
    });
    Ok(())
}

/// A listener on its own connection of `pool`, listening on [`CHANNEL`].
async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
