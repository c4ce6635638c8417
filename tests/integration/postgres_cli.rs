//! The command line on a PostgreSQL queue: every command works as on SQLite, and bad set-ups
//! (a server that is down, a wrong password, another program's database, a schema newer than
//! the binary) end with a clear error and exit code, never showing the password.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::cluster::{Cluster, Database};

const BIN: &str = env!("CARGO_BIN_EXE_approval-worker");

/// A directory with a spool holding one attachment and `worker.toml` naming `url`, with
/// `extra` lines added to `[database]`.
fn setup(url: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::write(spool.join("a.pdf"), b"%PDF-1.4").unwrap();
    std::fs::write(
        dir.path().join("worker.toml"),
        format!(
            "[database]\nurl = {url:?}\n{extra}\n[upload]\nallowed_dirs = [{:?}]\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    (dir, spool)
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env_remove("APPROVAL_WORKER_CONFIG")
        .env_remove("APPROVAL_WORKER_DATABASE")
        .env_remove("APPROVAL_WORKER_DATABASE_URL")
        .env_remove("PGPASSWORD")
        .env("DINGTALK_APP_SECRET", "unused")
        .args(args)
        .output()
        .expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

const ENQUEUE: [&str; 9] = [
    "enqueue",
    "--process-code",
    "PROC-1",
    "--originator",
    "manager4220",
    "--dept-id",
    "-1",
    "--attach",
    "spool/a.pdf",
];

#[test]
fn every_command_works_on_a_postgres_queue() {
    let Some(database) = Database::create() else {
        return;
    };
    let (dir, spool) = setup(&database.url, "");
    let dir = dir.path();

    let out = run(dir, &["jobs"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no schema yet: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("`approval-worker migrate` creates one"));
    assert!(ok(dir, &["migrate"]).contains("is at the latest schema"));
    let check = text(&run(dir, &["check"]).stdout);
    assert!(check.contains("on PostgreSQL"), "{check}");
    assert!(check.contains("schema 6 (current), 0 jobs"), "{check}");

    let mut with_key = ENQUEUE.to_vec();
    with_key.extend(["--idempotency-key", "order-7"]);
    assert_eq!(ok(dir, &with_key).trim(), "1");
    assert!(ok(dir, &with_key).starts_with("1 (existing"));
    let payload = serde_json::json!({
        "process_code": "PROC-2",
        "originator_user_id": "u2",
        "dept_id": -1,
        "attachments": [{"path": spool.join("a.pdf")}],
    });
    let lines = format!("{payload}\n").repeat(2);
    std::fs::write(dir.join("jobs.jsonl"), lines).unwrap();
    // PostgreSQL's sequence may skip the id a repeated key drew: ids grow, with gaps.
    let added: Vec<String> = ok(dir, &["enqueue", "--payload", "jobs.jsonl"])
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let [second, third] = [&added[0], &added[1]];
    assert!(
        1 < second.parse::<i64>().unwrap() && second < third,
        "{added:?}"
    );

    let listed: Vec<Value> = serde_json::from_str(&ok(dir, &["jobs", "--json"])).unwrap();
    let ids: Vec<String> = listed.iter().map(|job| job["id"].to_string()).collect();
    assert_eq!(ids, [third.as_str(), second.as_str(), "1"]);
    let shown: Value = serde_json::from_str(&ok(dir, &["show", second, "--json"])).unwrap();
    assert_eq!(shown["payload"]["process_code"], "PROC-2", "{shown}");

    assert!(ok(dir, &["cancel", third]).contains(third.as_str()));
    let cancelled: Value = serde_json::from_str(&ok(dir, &["show", third, "--json"])).unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    ok(dir, &["retry", third]);
    let retried: Value = serde_json::from_str(&ok(dir, &["show", third, "--json"])).unwrap();
    assert_eq!(retried["status"], "queued");
    let out = run(dir, &["retry", "1"]);
    assert_eq!(out.status.code(), Some(2), "a queued job cannot be retried");

    let stats: Value = serde_json::from_str(&ok(dir, &["stats", "--json"])).unwrap();
    assert_eq!(
        stats["by_status"],
        serde_json::json!({"queued": 3}),
        "{stats}"
    );
    ok(dir, &["cancel", second]);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let prune = |extra: &[&str]| -> Value {
        let mut args = vec!["prune", "--older-than", "0s", "--json"];
        args.extend(extra);
        serde_json::from_str(&ok(dir, &args)).unwrap()
    };
    assert_eq!(prune(&["--dry-run"])["matched"], 1);
    assert_eq!(prune(&[])["pruned"], 1);
    assert_eq!(run(dir, &["show", second]).status.code(), Some(2), "pruned");

    let out = run(dir, &["backup", "copy.db"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("pg_dump"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_server_that_is_down_or_another_programs_database_is_a_clear_error() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (dir, _) = setup(
        &format!("postgres://approval@127.0.0.1:{free}/approvals"),
        "",
    );
    let out = run(dir.path(), &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Connection refused"),
        "{}",
        text(&out.stderr)
    );
    let check = text(&run(dir.path(), &["check"]).stdout);
    assert!(check.contains("FAIL  database"), "{check}");

    let other = Database::create_in(cluster);
    let output = Command::new("psql")
        .arg(&other.url)
        .args(["-X", "-q", "-c", "CREATE TABLE invoices (id int)"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let (dir, _) = setup(&other.url, "");
    let out = run(dir.path(), &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("not an approval-worker database: it holds other tables (invoices)"),
        "{}",
        text(&out.stderr)
    );

    let newer = Database::create_in(cluster);
    let (dir, _) = setup(&newer.url, "");
    ok(dir.path(), &["migrate"]);
    let output = Command::new("psql")
        .arg(&newer.url)
        .args(["-X", "-q", "-c"])
        .arg(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (99, 'from the future', true, '\\x00', 1)",
        )
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let out = run(dir.path(), &["jobs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("has schema version 99, newer than this approval-worker knows"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_password_comes_from_a_file_and_never_appears_in_any_output() {
    const PASSWORD: &str = "s3cret-Pa55word";
    let Some(cluster) = Cluster::start_with(Some(PASSWORD)) else {
        return;
    };
    let url = cluster.url();

    let (dir, _) = setup(&url.replace("approval@", "approval:wrong-guess@"), "");
    let out = run(dir.path(), &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains("password authentication failed"), "{said}");
    assert!(
        !said.contains("wrong-guess"),
        "the URL's password is never shown: {said}"
    );

    let (dir, _) = setup(&url, "password_file = \"db-password\"");
    let dir = dir.path();
    std::fs::write(dir.join("db-password"), format!("{PASSWORD}\n")).unwrap();
    // A relative password file is a systemd credential.
    let out = Command::new(BIN)
        .current_dir(dir)
        .env_remove("APPROVAL_WORKER_CONFIG")
        .env("CREDENTIALS_DIRECTORY", dir)
        .env("DINGTALK_APP_SECRET", "unused")
        .env("APPROVAL_WORKER_LOG", "debug")
        .args(["migrate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut everything = text(&out.stdout) + &text(&out.stderr);
    for args in [&ENQUEUE[..], &["jobs", "--json"], &["check"], &["stats"]] {
        let out = Command::new(BIN)
            .current_dir(dir)
            .env("CREDENTIALS_DIRECTORY", dir)
            .env("DINGTALK_APP_SECRET", "unused")
            .env("APPROVAL_WORKER_LOG", "debug")
            .args(args)
            .output()
            .unwrap();
        everything += &text(&out.stdout);
        everything += &text(&out.stderr);
    }
    assert!(
        everything.contains("\"id\":1") || everything.contains("\"id\": 1"),
        "{everything}"
    );
    assert!(!everything.contains(PASSWORD), "{everything}");
}
