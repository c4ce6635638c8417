//! PostgreSQL's own behaviour as the queue relies on it: the producer contract checked
//! through `psql` as another service would use it, the claim's plan on a million rows, and
//! LISTEN/NOTIFY waking workers, across a server restart too.

use std::process::Command;

use approval_worker::queue::Queue;

use crate::helpers::cluster::{Cluster, Database};

#[test]
fn producers_insert_jobs_with_plain_sql_and_the_schema_refuses_rows_the_worker_cannot_read() {
    let Some(pg) = Cluster::start() else { return };
    pg.apply_schema();

    let id = pg.psql_ok(
        r#"INSERT INTO jobs (payload) VALUES ('{"process_code":"PROC-1","originator_user_id":"u1"}') RETURNING id"#,
    );
    let row = pg.psql_ok(&format!(
        "SELECT queue, priority, status, step, attempt, cancel_requested, \
                abs(run_at - (extract(epoch FROM now()) * 1000)::bigint) < 60000, \
                created_at = updated_at, payload ->> 'process_code' \
         FROM jobs WHERE id = {id}"
    ));
    assert_eq!(row, "default|0|queued|space|0|f|t|t|PROC-1");

    let keyed = "INSERT INTO jobs (payload, idempotency_key) VALUES ('{}', 'order-7') \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id";
    assert!(
        !pg.psql_ok(keyed).is_empty(),
        "the first insert of a key adds a job"
    );
    assert!(pg.psql_ok(keyed).is_empty(), "a repeat adds nothing");

    let refused = [
        (
            "payload that is not JSON",
            r#"INSERT INTO jobs (payload) VALUES ('{"a":')"#,
        ),
        ("no payload", "INSERT INTO jobs (queue) VALUES ('q')"),
        (
            "priority that is not an integer",
            "INSERT INTO jobs (payload, priority) VALUES ('{}', 'high')",
        ),
        (
            "max_attempts of zero",
            "INSERT INTO jobs (payload, max_attempts) VALUES ('{}', 0)",
        ),
        (
            "unknown status",
            "INSERT INTO jobs (payload, status) VALUES ('{}', 'paused')",
        ),
        (
            "payload with bytes that are not UTF-8",
            r"INSERT INTO jobs (payload) VALUES (convert_from('\x7b2261223a22ff227d', 'UTF8')::jsonb)",
        ),
    ];
    for (what, sql) in refused {
        let output = pg.psql(sql);
        assert!(!output.status.success(), "{what} was accepted");
    }
    assert_eq!(pg.psql_ok("SELECT count(*) FROM jobs"), "2");
}

#[test]
fn an_insert_notifies_the_workers_listening_on_its_queue() {
    let Some(pg) = Cluster::start() else { return };
    pg.apply_schema();
    // One session listens and inserts: PostgreSQL delivers its own notifications too, at
    // commit, and psql prints them after the statement.
    let output = Command::new("psql")
        .arg(pg.url())
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(["-c", "LISTEN approval_worker_jobs"])
        .args([
            "-c",
            "INSERT INTO jobs (payload, queue) VALUES ('{}', 'invoices'), ('{}', 'invoices')",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let notes: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("Asynchronous notification"))
        .collect();
    assert_eq!(
        notes.len(),
        1,
        "one notification per queue and commit: {stdout}"
    );
    assert!(notes[0].contains("\"invoices\""), "{}", notes[0]);
}

#[tokio::test]
async fn the_claim_walks_its_index_without_sorting_on_a_million_due_jobs() {
    let Some(database) = Database::create() else {
        return;
    };
    let queue = database.queue().await;
    let now = approval_worker::queue::now_ms();
    let cluster = Cluster::shared().unwrap();
    let name = database.url.rsplit('/').next().unwrap();
    // A million due jobs in one statement, then fresh statistics, as autovacuum would have.
    let fill = format!(
        "INSERT INTO jobs (payload, run_at, created_at, updated_at) \
         SELECT '{{}}', {now} - i, {now}, {now} FROM generate_series(1, 1000000) AS i; \
         ANALYZE jobs"
    );
    let output = Command::new("psql")
        .arg(cluster.url_of(name))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", &fill])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan = queue.claim_plan().await.unwrap().join("\n");
    assert!(plan.contains("Index Scan using jobs_claim"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

#[tokio::test]
async fn a_row_inserted_with_plain_sql_wakes_an_idle_worker_at_once() {
    let Some(database) = Database::create() else {
        return;
    };
    let queue = database.queue().await;
    let cluster = Cluster::shared().unwrap();
    let name = database.url.rsplit('/').next().unwrap().to_owned();
    let waiting = queue.wait_for_change(std::time::Duration::from_secs(30));
    let started = std::time::Instant::now();
    let insert = Command::new("psql")
        .arg(cluster.url_of(&name))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(r#"INSERT INTO jobs (payload) VALUES ('{"process_code":"PROC-1"}')"#)
        .output()
        .unwrap();
    assert!(insert.status.success());
    tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("the notification ends the wait long before its 30 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let claimed = queue
        .claim("default", "w1", 4, 60_000, approval_worker::queue::now_ms())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

#[tokio::test]
async fn the_listener_reconnects_after_a_restart_and_wakes_workers_again() {
    // A cluster of its own: a restart cuts every connection to the server.
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let database = Database::create_in(&cluster);
    let queue = database.queue().await;
    let reconnected = queue.wait_for_change(std::time::Duration::from_secs(20));
    let started = std::time::Instant::now();
    cluster.restart();
    reconnected.await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the listener said it was back ({:?})",
        started.elapsed()
    );
    let waiting = queue.wait_for_change(std::time::Duration::from_secs(30));
    let insert = Command::new("psql")
        .arg(&database.url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(r#"INSERT INTO jobs (payload) VALUES ('{"process_code":"PROC-1"}')"#)
        .output()
        .unwrap();
    assert!(insert.status.success());
    tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("a notification after the restart ends the wait");
    let claimed = queue
        .claim("default", "w1", 4, 60_000, approval_worker::queue::now_ms())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the pool reconnected too");
}

#[tokio::test]
async fn with_listen_off_a_worker_finds_new_rows_by_polling_alone() {
    let Some(database) = Database::create() else {
        return;
    };
    let approval_worker::queue::Location::Postgres(mut options) = database.location() else {
        unreachable!("a PostgreSQL database")
    };
    options.listen = false;
    let queue = Queue::connect(&approval_worker::queue::Location::Postgres(options))
        .await
        .unwrap();
    let poll = std::time::Duration::from_millis(400);
    let waiting = queue.wait_for_change(poll);
    let started = std::time::Instant::now();
    let insert = Command::new("psql")
        .arg(&database.url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(r#"INSERT INTO jobs (payload) VALUES ('{"process_code":"PROC-1"}')"#)
        .output()
        .unwrap();
    assert!(insert.status.success());
    waiting.await;
    assert!(
        started.elapsed() >= poll,
        "no notification can end the wait early"
    );
    let claimed = queue
        .claim("default", "w1", 4, 60_000, approval_worker::queue::now_ms())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the poll finds the row");
}
