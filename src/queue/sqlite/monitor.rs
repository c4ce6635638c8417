//! Reads for health, status lines and metrics (queue depth, counts per status, a ping), and
//! the online backup.

use std::path::Path;

use super::{Depth, QueueError, SqliteStore};

/// Jobs per status, each status through its partial index: queued through `jobs_due`,
/// running through `jobs_lease`, finished through `jobs_finished`. SQLite uses a partial
/// index only for a query carrying the index's own WHERE term, hence the terms as written
/// there. A status with no jobs has no row in the finished part.
const STATUS_COUNTS_SQL: &str = "SELECT 'queued', COUNT(*) FROM jobs WHERE status = 'queued' \
     UNION ALL SELECT 'running', COUNT(*) FROM jobs WHERE status = 'running' \
     UNION ALL SELECT status, COUNT(*) FROM jobs \
         WHERE (status = 'succeeded' OR status = 'failed' OR status = 'cancelled') GROUP BY status";

impl SqliteStore {
    /// The depth of `queue` at `now_ms`; walks only the partial indexes of unfinished jobs.
    pub(in crate::queue) async fn depth(
        &self,
        queue: &str,
        now_ms: i64,
    ) -> Result<Depth, QueueError> {
        let (queued, due, oldest_due_at, running): (i64, i64, Option<i64>, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(run_at <= ?2), 0), \
                     MIN(CASE WHEN run_at <= ?2 THEN run_at END), \
                     (SELECT COUNT(*) FROM jobs WHERE status = 'running' AND queue = ?1) \
                 FROM jobs WHERE status = 'queued' AND queue = ?1",
        )
        .bind(queue)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(Depth {
            queued,
            due,
            oldest_due_at,
            running,
        })
    }

    /// Jobs per status, all queues; a finished status with no jobs may be missing.
    pub(in crate::queue) async fn status_counts(&self) -> Result<Vec<(String, i64)>, QueueError> {
        Ok(sqlx::query_as(STATUS_COUNTS_SQL)
            .fetch_all(&self.pool)
            .await?)
    }

    /// One round trip to the database.
    pub(in crate::queue) async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Writes a consistent copy of the database to `target` while workers keep running
    /// (`VACUUM INTO`: one read transaction, so writers are not blocked in WAL mode). The
    /// target must not exist; it is created owner-only, like the database. Returns its size.
    pub(in crate::queue) async fn backup(&self, target: &Path) -> Result<u64, QueueError> {
        let open_error = |source| QueueError::Open {
            path: target.display().to_string(),
            source,
        };
        // VACUUM INTO accepts an existing empty file, so creating it first (0600, refusing
        // to overwrite) keeps the copy as private as the original.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(target).map_err(open_error)?;
        let target_text = target.to_string_lossy().into_owned();
        if let Err(e) = sqlx::query("VACUUM INTO ?1")
            .bind(&target_text)
            .execute(&self.pool)
            .await
        {
            // Leave nothing half-written behind that could be mistaken for a backup.
            let _ = std::fs::remove_file(target);
            return Err(e.into());
        }
        Ok(std::fs::metadata(target).map_err(open_error)?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::STATUS_COUNTS_SQL;
    use crate::queue::sqlite::test_support::{fresh_queue, job, queue_with_claimed};
    use crate::queue::{Unstored, now_ms};

    #[tokio::test]
    async fn counting_jobs_per_status_walks_only_indexes_never_the_table() {
        let (_dir, queue) = fresh_queue().await;
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {STATUS_COUNTS_SQL}"))
                .fetch_all(&queue.sqlite().unwrap().pool)
                .await
                .unwrap();
        let scans: Vec<&str> = rows
            .iter()
            .map(|row| row.3.as_str())
            .filter(|line| line.contains("jobs"))
            .collect();
        assert_eq!(scans.len(), 3, "{scans:?}");
        for (line, index) in scans
            .iter()
            .zip(["jobs_due", "jobs_lease", "jobs_finished"])
        {
            assert!(line.contains(index), "{scans:?}");
        }
    }

    #[tokio::test]
    async fn the_counts_per_status_include_every_status_and_follow_a_job_through_its_life() {
        let (_dir, queue, claimed) = queue_with_claimed(2).await;
        let now = now_ms();
        queue.enqueue(&job(), now).await.unwrap();
        let last = queue.enqueue(&job(), now).await.unwrap().id;
        queue
            .succeed(
                claimed[0].fence(),
                &Unstored::default(),
                r#"{"instance_id":"i-1"}"#,
                "done",
                "{}",
                None,
                now,
            )
            .await
            .unwrap();
        queue.cancel(last, "submit", now).await.unwrap();
        let counts = queue.status_counts().await.unwrap();
        let expected: Vec<(String, i64)> = [
            ("queued", 1),
            ("running", 1),
            ("succeeded", 1),
            ("failed", 0),
            ("cancelled", 1),
        ]
        .iter()
        .map(|(status, jobs)| ((*status).to_owned(), *jobs))
        .collect();
        assert_eq!(counts, expected);
    }
}
