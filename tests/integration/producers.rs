//! Other services enqueue with plain SQL, through their own SQLite, while the worker runs.

use std::process::Command;

use approval_worker::sandbox::Endpoint;
use sqlx::Connection;

use crate::helpers::{Harness, bytes};

/// Runs SQL through the system's own SQLite (the `sqlite3` CLI, else Python's module), as a
/// producer written in another language would.
fn outside_sql(db: &std::path::Path, sql: &str) {
    let cli = Command::new("sqlite3").arg(db).arg(sql).output();
    let output = match cli {
        Ok(output) => output,
        Err(_) => Command::new("python3")
            .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()"])
            .arg(db)
            .arg(sql)
            .output()
            .expect("neither sqlite3 nor python3 is installed"),
    };
    assert!(
        output.status.success(),
        "outside SQL failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn rows_inserted_with_plain_sql_while_the_worker_runs_are_completed() {
    let mut h = Harness::new().await;
    h.start();
    let db = h.config.database.path.clone();
    let mut expected = 0;
    for n in 0..3_u8 {
        let file = h.file(&format!("cli-{n}.pdf"), &bytes(500, n));
        let payload = h.payload(&[&file]).to_string().replace('\'', "''");
        outside_sql(
            &db,
            &format!("INSERT INTO jobs (payload) VALUES ('{payload}');"),
        );
        expected += 1;
    }
    // Another service using its own driver and the optional columns.
    let url = format!("sqlite://{}", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for n in 0..3_u8 {
        let file = h.file(&format!("svc-{n}.pdf"), &bytes(700, n));
        sqlx::query("INSERT INTO jobs (payload, idempotency_key, priority, max_attempts) VALUES (?1, ?2, 5, 3)")
            .bind(h.payload(&[&file]).to_string())
            .bind(format!("svc-{n}"))
            .execute(&mut conn)
            .await
            .unwrap();
        expected += 1;
    }
    conn.close().await.unwrap();

    for id in 1..=expected {
        let job = h.finished(id).await;
        assert_eq!(job.status, "succeeded", "{job:?}");
    }
    h.stop().await;
    assert_eq!(h.sandbox.instances().len(), expected as usize);
    assert_eq!(
        h.received(Endpoint::CreateInstance).len(),
        expected as usize
    );
}

#[tokio::test]
async fn the_table_refuses_rows_the_worker_could_not_read() {
    let h = Harness::new().await;
    let db = h.config.database.path.clone();
    for bad in [
        "INSERT INTO jobs (payload) VALUES ('{not json');",
        "INSERT INTO jobs (payload, priority) VALUES ('{}', 'high');",
        "INSERT INTO jobs (payload, run_at) VALUES ('{}', '2026-01-01');",
        "INSERT INTO jobs (payload, max_attempts) VALUES ('{}', 0);",
        "INSERT INTO jobs (payload, status) VALUES ('{}', 'paused');",
    ] {
        let output = Command::new("sqlite3").arg(&db).arg(bad).output().unwrap();
        assert!(!output.status.success(), "accepted: {bad}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("CHECK constraint failed"),
            "{bad}"
        );
    }
}
