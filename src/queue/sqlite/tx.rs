//! Multi-statement writes: `BEGIN IMMEDIATE` … `COMMIT` sent as plain statements, and a
//! connection that may still be inside a transaction never goes back to the pool.
//!
//! sqlx's own `Transaction` counts its depth itself and believes a `ROLLBACK` succeeded only
//! when SQLite says so. After a disk-full error SQLite may already have rolled the
//! transaction back, so that `ROLLBACK` fails, the count stays at one, and every later
//! `begin` on the connection is refused ("non-zero transaction depth") for the life of the
//! process. Here SQLite alone keeps the state: a failed write is rolled back, "no transaction
//! is active" counts as done, and a connection whose state is unknown is closed, not reused.

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};

use super::QueueError;

/// Runs `body` between `BEGIN IMMEDIATE` and `COMMIT` on one pooled connection. On any error
/// (of `BEGIN`, `body` or `COMMIT`) the transaction is rolled back before the error returns;
/// if the future is dropped halfway, the connection is closed (SQLite rolls back on close).
pub(super) async fn immediate<T>(
    pool: &SqlitePool,
    body: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, QueueError>,
) -> Result<T, QueueError> {
    let mut guard = Open(Some(pool.acquire().await?));
    let conn = guard.conn();
    let outcome = match sqlx::query("BEGIN IMMEDIATE").execute(&mut **conn).await {
        Ok(_) => match body(conn).await {
            Ok(value) => sqlx::query("COMMIT")
                .execute(&mut **conn)
                .await
                .map(|_| value)
                .map_err(QueueError::from),
            Err(e) => Err(e),
        },
        Err(e) => Err(e.into()),
    };
    let conn = guard.settled();
    if outcome.is_err() {
        roll_back(conn).await;
    }
    outcome
}

/// Ends whatever transaction a failed statement may have left open on `conn`. If SQLite
/// cannot confirm it (the `ROLLBACK` fails for another reason than there being nothing to
/// roll back), the connection is closed instead of going back to the pool.
pub(super) async fn roll_back(mut conn: PoolConnection<Sqlite>) {
    match sqlx::query("ROLLBACK").execute(&mut *conn).await {
        Err(e) if !nothing_to_roll_back(&e) => {
            tracing::warn!(error = %e, "rollback failed: closing the database connection");
            conn.close_on_drop();
        }
        _ => {}
    }
}

/// SQLite's answer to a `ROLLBACK` outside a transaction (it had already rolled back).
fn nothing_to_roll_back(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.message().contains("no transaction is active"))
}

/// A connection between `BEGIN` and the end of its transaction: dropped there (the caller's
/// future was cancelled), it is closed rather than returned to the pool.
struct Open(Option<PoolConnection<Sqlite>>);

impl Open {
    fn conn(&mut self) -> &mut PoolConnection<Sqlite> {
        // Invariant: `Some` from construction until `settled` takes it.
        #[allow(clippy::expect_used)]
        self.0
            .as_mut()
            .expect("connection taken before the transaction settled")
    }

    /// The transaction has committed or failed: the caller decides what happens next.
    fn settled(mut self) -> PoolConnection<Sqlite> {
        #[allow(clippy::expect_used)]
        self.0.take().expect("connection taken twice")
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use crate::queue::sqlite::test_support::job;
    use crate::queue::{CallDelta, JobFilter, Queue, QueueError, now_ms};

    /// A tmpfs of `kib` KiB mounted on a fresh directory, unmounted when dropped; `None` where
    /// this process may not mount (not root).
    struct SmallFs {
        dir: tempfile::TempDir,
    }

    impl SmallFs {
        fn mount(kib: u32) -> Option<SmallFs> {
            let dir = tempfile::tempdir().unwrap();
            let mounted = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
                .arg(dir.path())
                .output()
                .is_ok_and(|out| out.status.success());
            mounted.then_some(SmallFs { dir })
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        /// Writes a file until the filesystem is full; returns its path.
        fn fill(&self) -> PathBuf {
            use std::io::Write;
            let filler = self.path().join("filler");
            let mut file = std::fs::File::create(&filler).unwrap();
            let block = vec![0_u8; 4096];
            while file.write_all(&block).is_ok() {}
            let _ = file.write_all(&[0]);
            filler
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }

    fn deltas() -> Vec<CallDelta> {
        (0..50)
            .map(|n| CallDelta {
                endpoint: format!("endpoint-{n:02}"),
                counted: true,
                calls: 1,
            })
            .collect()
    }

    #[tokio::test]
    async fn after_a_disk_full_error_rescue_and_call_counting_work_again_once_space_is_back() {
        let Some(fs) = SmallFs::mount(2048) else {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return;
        };
        let queue = Queue::open(&fs.path().join("q.db")).await.unwrap();
        let now = now_ms();
        queue.enqueue_many(&vec![job(); 20], now).await.unwrap();
        queue.claim("default", "w1", 20, 1_000, now).await.unwrap();
        let filler = fs.fill();
        let refused = queue.rescue(now + 2_000).await;
        assert!(
            matches!(&refused, Err(QueueError::Database(e)) if e.to_string().contains("full")),
            "{refused:?}"
        );
        let refused = queue.add_calls("app", "2026-12", &deltas(), now).await;
        assert!(refused.is_err(), "{refused:?}");
        std::fs::remove_file(filler).unwrap();
        assert_eq!(queue.rescue(now + 2_000).await.unwrap().len(), 20);
        assert_eq!(
            queue
                .add_calls("app", "2026-12", &deltas(), now)
                .await
                .unwrap(),
            50
        );
    }

    #[tokio::test]
    async fn a_transaction_dropped_halfway_leaves_no_open_transaction_behind() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("q.db")).await.unwrap();
        let now = now_ms();
        queue.enqueue_many(&vec![job(); 1], now).await.unwrap();
        let (updated, update_ran) = tokio::sync::oneshot::channel();
        let halfway = super::immediate(&queue.sqlite().unwrap().pool, async move |conn| {
            sqlx::query("UPDATE jobs SET priority = 5")
                .execute(&mut *conn)
                .await?;
            let _ = updated.send(());
            std::future::pending::<()>().await;
            Ok(())
        });
        // The update runs, then the caller gives up on the transaction (drops its future).
        tokio::select! {
            _ = halfway => panic!("the transaction never ends by itself"),
            ran = update_ran => ran.unwrap(),
        }
        queue.claim("default", "w1", 1, 1_000, now).await.unwrap();
        assert_eq!(queue.rescue(now + 2_000).await.unwrap().len(), 1);
        let jobs = queue
            .list(&JobFilter {
                limit: 1,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(jobs[0].priority, 0, "the abandoned update was rolled back");
    }
}
