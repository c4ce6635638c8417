//! The schema's migrations: what an upgrade keeps, and what the per-row checks cost.

use std::borrow::Cow;

use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePoolOptions;

use super::connect_options;
use super::test_support::{fresh_queue, job};
use crate::queue::Queue;

/// The writes a job makes row by row: its events, its claim and transitions (which set
/// `status`, checked by the table), and its finish (which enters `jobs_finished`).
const PER_ROW_WRITES: [&str; 4] = [
    "INSERT INTO job_events (job_id, at, kind) VALUES (?1, ?2, 'step_done')",
    "UPDATE jobs SET status = 'running', attempt = attempt + 1 WHERE id = ?1",
    "UPDATE jobs SET status = COALESCE(?1, status), checkpoint = ?2 WHERE id = ?3",
    "UPDATE jobs SET status = 'succeeded', finished_at = ?1 WHERE id = ?2",
];

/// How many temporary b-trees a statement's program opens (`OpenEphemeral`).
async fn temporary_btrees(pool: &sqlx::SqlitePool, sql: &str) -> usize {
    let program = sqlx::query(&format!("EXPLAIN {sql}"))
        .fetch_all(pool)
        .await
        .unwrap();
    program
        .iter()
        .filter(|row| row.get::<String, _>("opcode") == "OpenEphemeral")
        .count()
}

#[tokio::test]
async fn a_job_s_row_by_row_writes_build_no_temporary_table_for_their_checks() {
    let (_dir, queue) = fresh_queue().await;
    for sql in PER_ROW_WRITES {
        assert_eq!(
            temporary_btrees(&queue.sqlite().unwrap().pool, sql).await,
            0,
            "{sql}"
        );
    }
}

/// A database as the fourth migration left it, with two jobs, their events, and an event
/// whose job was deleted with foreign keys off.
const OLD_ROWS: &str = r#"
INSERT INTO jobs (id, idempotency_key, payload, status, step, checkpoint, attempt, result,
                  created_at, updated_at, finished_at)
VALUES (1, 'order-1', '{"a":1}', 'succeeded', 'done', '{"b":2}', 1, '{"c":3}', 1, 3, 3),
       (2, NULL, '{}', 'queued', 'space', NULL, 0, NULL, 1, 1, NULL);
INSERT INTO job_events (id, job_id, at, kind, step, attempt, duration_ms, error, http_status)
VALUES (10, 1, 1, 'claimed', NULL, 1, NULL, NULL, NULL),
       (11, 1, 2, 'step_failed', 'put', 1, 7, 'OSS said no', 503),
       (12, 1, 3, 'succeeded', NULL, 1, NULL, NULL, NULL),
       (13, 99, 4, 'claimed', NULL, 1, NULL, NULL, NULL);
"#;

type JobRow = (
    i64,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);
type EventRow = (
    i64,
    i64,
    i64,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

#[tokio::test]
async fn upgrading_from_the_fourth_migration_keeps_every_row_and_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let all = super::migrator();
    let fourth = Migrator {
        migrations: Cow::Owned(all.migrations[..4].to_vec()),
        ..Migrator::DEFAULT
    };
    let old = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(&path).foreign_keys(false))
        .await
        .unwrap();
    fourth.run(&old).await.unwrap();
    sqlx::raw_sql(OLD_ROWS).execute(&old).await.unwrap();
    old.close().await;

    let queue = Queue::open(&path).await.unwrap();
    let jobs: Vec<JobRow> = sqlx::query_as(
        "SELECT id, idempotency_key, payload, status, step, checkpoint, attempt, result, \
                created_at, updated_at, finished_at FROM jobs ORDER BY id",
    )
    .fetch_all(&queue.sqlite().unwrap().pool)
    .await
    .unwrap();
    let first: JobRow = (
        1,
        Some("order-1".into()),
        r#"{"a":1}"#.into(),
        "succeeded".into(),
        "done".into(),
        Some(r#"{"b":2}"#.into()),
        1,
        Some(r#"{"c":3}"#.into()),
        1,
        3,
        Some(3),
    );
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0], first);
    let events: Vec<EventRow> = sqlx::query_as(
        "SELECT id, job_id, at, kind, step, attempt, duration_ms, error, http_status \
         FROM job_events ORDER BY id",
    )
    .fetch_all(&queue.sqlite().unwrap().pool)
    .await
    .unwrap();
    let ids: Vec<i64> = events.iter().map(|event| event.0).collect();
    assert_eq!(ids, [10, 11, 12], "the event of a deleted job is left out");
    let failed: EventRow = (
        11,
        1,
        2,
        "step_failed".into(),
        Some("put".into()),
        1,
        Some(7),
        Some("OSS said no".into()),
        Some(503),
    );
    assert_eq!(events[1], failed);
    assert_eq!(queue.enqueue(&job(), 10).await.unwrap().id, 3, "ids go on");

    for (sql, what) in [
        (
            "UPDATE jobs SET status = 'done' WHERE id = 2",
            "an unknown status",
        ),
        (
            "INSERT INTO jobs (payload, idempotency_key) VALUES ('{}', 'order-1')",
            "a second job with one idempotency key",
        ),
        (
            "INSERT INTO job_events (job_id, at, kind) VALUES (2, 1, 'finished')",
            "an unknown event kind",
        ),
        (
            "INSERT INTO job_events (job_id, at, kind) VALUES (99, 1, 'claimed')",
            "an event of no job",
        ),
    ] {
        let refused = sqlx::query(sql)
            .execute(&queue.sqlite().unwrap().pool)
            .await;
        assert!(refused.is_err(), "{what} is still refused");
    }
    sqlx::query("DELETE FROM jobs WHERE id = 1")
        .execute(&queue.sqlite().unwrap().pool)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_events")
        .fetch_one(&queue.sqlite().unwrap().pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "deleting a job still deletes its events");

    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name IN ('jobs', 'job_events', '_sqlx_migrations') ORDER BY name",
    )
            .fetch_all(&queue.sqlite().unwrap().pool)
            .await
            .unwrap();
    assert_eq!(
        indexes,
        [
            "job_events_job",
            "jobs_claim",
            "jobs_due",
            "jobs_finished",
            "jobs_lease",
            "jobs_stopped",
            "sqlite_autoindex__sqlx_migrations_1",
            "sqlite_autoindex_jobs_1",
        ],
        "every index is back, named after the renamed tables"
    );
}

#[tokio::test]
async fn another_programs_database_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    let pool = SqlitePoolOptions::new()
        .connect_with(connect_options(&path))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    let refused = Queue::open(&path).await;
    let Err(super::QueueError::NotOurs { tables, .. }) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(tables, "customers");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(names, ["customers"], "nothing was added");
    // An empty file, as a new database is, is taken.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    Queue::open(&empty).await.unwrap();
}

#[tokio::test]
async fn the_connection_runs_in_wal_mode_with_the_configured_pragmas() {
    let (_dir, queue) = fresh_queue().await;
    let pragmas = queue.sqlite().unwrap().pragmas().await.unwrap();
    let get = |name: &str| pragmas.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(get("journal_mode"), "wal");
    assert_eq!(get("synchronous"), "1", "NORMAL");
    assert_eq!(get("busy_timeout"), "10000");
    assert_eq!(get("foreign_keys"), "1");
}
