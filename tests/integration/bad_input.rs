//! Bad payloads become failed jobs with a reason naming the field; good jobs still succeed.
//! Files that vanish or change mid-job fail their job clearly, and rows the worker could not
//! read are refused by the table's CHECKs before they ever reach the queue.

use std::time::Duration;

use approval_worker::sandbox::{Endpoint, Fault};
use serde_json::{Value, json};

use crate::helpers::{Harness, Timing, bytes};

/// Largest attachment in these tests: the oversize case is just above it.
const MAX_FILE_BYTES: u64 = 50_000;

#[tokio::test]
async fn malformed_payloads_fail_with_a_readable_reason_while_good_jobs_succeed() {
    let mut h = Harness::new().await;
    h.config.upload.max_file_bytes = MAX_FILE_BYTES;
    let good_file = h.file("good.pdf", &bytes(100, 1));
    let big = h.file("big.pdf", &bytes(MAX_FILE_BYTES as usize + 1, 4));
    let escaping_link = h.spool.join("link.pdf");
    std::os::unix::fs::symlink("/etc/hostname", &escaping_link).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("secret.pdf");
    std::fs::write(&outside_file, b"x").unwrap();
    let bad_name = h.file("bad*name.pdf", &bytes(10, 2));
    let no_ext = h.file("README", &bytes(10, 3));
    let spool = h.spool.clone();
    let good = h.payload(&[&good_file]);
    let with = |key: &str, value: Value| {
        let mut p = good.clone();
        p[key] = value;
        p
    };
    let without = |key: &str| {
        let mut p = good.clone();
        p.as_object_mut().unwrap().remove(key);
        p
    };
    let named = |name: &str| with("attachments", json!([{"path": good_file, "name": name}]));
    let mut cases: Vec<(&str, Value, &str)> = vec![
        ("not an object", json!([1, 2]), "invalid type"),
        (
            "missing process_code",
            without("process_code"),
            "missing field `process_code`",
        ),
        (
            "unknown field",
            with("colour", json!("red")),
            "unknown field `colour`",
        ),
        (
            "dept_id of the wrong type",
            with("dept_id", json!("root")),
            "invalid type",
        ),
        (
            "empty attachment list",
            with("attachments", json!([])),
            "attachments: at least one",
        ),
        (
            "missing file",
            with("attachments", json!([{"path": spool.join("gone.pdf")}])),
            "no such file",
        ),
        (
            "a directory",
            with("attachments", json!([{"path": spool}])),
            "not a regular file",
        ),
        (
            "outside allowed_dirs",
            with("attachments", json!([{"path": outside_file}])),
            "outside [upload] allowed_dirs",
        ),
        (
            "dotdot escape",
            with(
                "attachments",
                json!([{"path": spool.join("../../../etc/passwd")}]),
            ),
            "attachments[0].path",
        ),
        (
            "relative path",
            with("attachments", json!([{"path": "good.pdf"}])),
            "not an absolute path",
        ),
        (
            "a name DingTalk refuses",
            with("attachments", json!([{"path": bad_name}])),
            "must not contain '*'",
        ),
        (
            "no extension",
            with("attachments", json!([{"path": no_ext}])),
            "needs an extension",
        ),
        (
            "bad approver type",
            with(
                "approvers",
                json!([{"action_type": "ALL", "user_ids": ["u"]}]),
            ),
            "approvers[0].action_type",
        ),
        (
            "form value not a string",
            with("form", json!([{"name": "金额", "value": 12}])),
            "invalid type",
        ),
        ("null payload", json!(null), "invalid type: null"),
        (
            "process_code of the wrong type",
            with("process_code", json!(42)),
            "invalid type: integer `42`",
        ),
        (
            "attachments not a list",
            with("attachments", json!("good.pdf")),
            "invalid type: string",
        ),
        (
            "missing attachments",
            without("attachments"),
            "missing field `attachments`",
        ),
        (
            "empty originator",
            with("originator_user_id", json!("")),
            "originator_user_id: must not be empty",
        ),
        (
            "a system file",
            with("attachments", json!([{"path": "/etc/shadow"}])),
            "outside [upload] allowed_dirs",
        ),
        (
            "a symlink out of the spool",
            with("attachments", json!([{"path": escaping_link}])),
            "outside [upload] allowed_dirs",
        ),
        (
            "a file above max_file_bytes",
            with("attachments", json!([{"path": big}])),
            "larger than [upload] max_file_bytes",
        ),
        (
            "a display name with a trailing space",
            named("报销.pdf "),
            "must not start or end with a space",
        ),
        (
            "a display name ending in a dot",
            named("report.pdf."),
            "must not end with '.'",
        ),
        (
            "a display name of 300 characters",
            named(&format!("{}.pdf", "长".repeat(296))),
            "longer than 255 characters",
        ),
        (
            "more than 50 attachments",
            with("attachments", json!(vec![json!({"path": good_file}); 51])),
            "51 files, at most 50 per job",
        ),
        (
            "a form value over 65535 characters",
            with(
                "form",
                json!([{"name": "说明", "value": "x".repeat(65_536)}]),
            ),
            "DingTalk accepts at most 65535",
        ),
        (
            "150 form values plus the attachments",
            with(
                "form",
                json!(
                    (0..150)
                        .map(|n| json!({"name": format!("f{n}"), "value": "v"}))
                        .collect::<Vec<_>>()
                ),
            ),
            "at most 150 including the attachment field",
        ),
        (
            "a form value in the attachment field",
            with("form", json!([{"name": "附件", "value": "[]"}])),
            "is the attachment field",
        ),
        (
            "a cc list of 51 users",
            with("cc_list", json!(vec!["user"; 51])),
            "cc_list: 51 users",
        ),
    ];
    // An unreadable file: root reads a mode-000 file anyway, so the case only means
    // something (and only runs) for an unprivileged user.
    let unreadable = h.file("unreadable.pdf", &bytes(10, 5));
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    if std::fs::read(&unreadable).is_err() {
        cases.push((
            "an unreadable file",
            with("attachments", json!([{"path": unreadable}])),
            "permission denied (unreadable)",
        ));
    }
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut ids = Vec::new();
    for (label, payload, _) in &cases {
        ids.push((label, h.enqueue(payload).await));
    }
    let good_id = h.enqueue(&good).await;
    h.start();
    for ((label, id), (_, _, expected)) in ids.iter().zip(&cases) {
        let job = h.finished(*id).await;
        assert_eq!(job.status, "failed", "{label}: {job:?}");
        let error = job.last_error.clone().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{label}: {error:?} lacks {expected:?}"
        );
        assert_eq!(job.attempt, 1, "{label}: a bad payload is not retried");
    }
    assert_eq!(h.finished(good_id).await.status, "succeeded");
    h.stop().await;
    assert_eq!(h.sandbox.instances().len(), 1);
    assert_eq!(
        h.received(Endpoint::OssPut).len(),
        1,
        "no refused attachment was read or uploaded"
    );
}

/// Size of the attachment `tamper_during` tampers with, unless a test says otherwise: small
/// enough for its PUT to send the bytes read for its hash.
const VICTIM_BYTES: usize = 20_000;

/// Runs `good` and a job whose attachment of `victim_bytes` the test tampers with once the
/// sandbox receives a call to `endpoint` (held for half a second); returns the tampered
/// job's row.
async fn tamper_during(
    endpoint: Endpoint,
    victim_bytes: usize,
    tamper: impl FnOnce(&std::path::Path),
) -> (Harness, approval_worker::queue::JobRow) {
    let mut h = Harness::new().await;
    let victim = h.file("victim.pdf", &bytes(victim_bytes, 6));
    let bystander = h.file("bystander.pdf", &bytes(1000, 7));
    let id = h.enqueue(&h.payload(&[&victim])).await;
    h.sandbox
        .inject(endpoint, Fault::Latency(Duration::from_millis(500)), 1);
    h.start_timed_with(Timing {
        submit_settle: Duration::ZERO,
        ..Timing::default()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.received(endpoint).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{endpoint} never called"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tamper(&victim);
    let job = h.finished(id).await;
    let other = h.enqueue(&h.payload(&[&bystander])).await;
    assert_eq!(
        h.finished(other).await.status,
        "succeeded",
        "the queue goes on"
    );
    h.stop().await;
    assert_eq!(h.sandbox.instances().len(), 1, "only the bystander's");
    (h, job)
}

#[tokio::test]
async fn a_file_that_vanishes_after_the_claim_fails_its_job_with_the_path() {
    let (_h, job) = tamper_during(Endpoint::Space, VICTIM_BYTES, |path| {
        std::fs::remove_file(path).unwrap()
    })
    .await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.step, "upload_info");
    let error = job.last_error.unwrap();
    assert!(
        error.contains("victim.pdf") && error.contains("No such file"),
        "{error}"
    );
}

#[tokio::test]
async fn a_file_rewritten_between_upload_info_and_put_is_not_uploaded_as_something_else() {
    let (h, job) = tamper_during(Endpoint::UploadInfo, VICTIM_BYTES, |path| {
        std::fs::write(path, bytes(VICTIM_BYTES, 99)).unwrap()
    })
    .await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.step, "put");
    let error = job.last_error.unwrap();
    assert!(error.contains("file changed"), "{error}");
    assert!(
        h.sandbox.files().len() == 1,
        "nothing of the victim was committed"
    );
}

#[tokio::test]
async fn a_large_file_rewritten_between_upload_info_and_put_is_not_sent() {
    // Too large to be hashed before its ticket: its PUT reads it, and refuses a file whose
    // modification time moved since the ticket was asked for.
    let large = 300 * 1024;
    let (h, job) = tamper_during(Endpoint::UploadInfo, large, |path| {
        std::fs::write(path, bytes(large, 99)).unwrap()
    })
    .await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.step, "put");
    let error = job.last_error.unwrap();
    assert!(
        error.contains("file changed") && error.contains("written to since"),
        "{error}"
    );
    assert_eq!(
        h.received(Endpoint::OssPut).len(),
        1,
        "only the bystander's PUT"
    );
}

#[tokio::test]
async fn a_file_that_grows_between_upload_info_and_put_fails_before_sending() {
    let (h, job) = tamper_during(Endpoint::UploadInfo, VICTIM_BYTES, |path| {
        std::fs::write(path, bytes(30_000, 6)).unwrap()
    })
    .await;
    assert_eq!(job.status, "failed", "{job:?}");
    let error = job.last_error.unwrap();
    assert!(error.contains("30000 bytes, expected 20000"), "{error}");
    assert_eq!(
        h.received(Endpoint::OssPut).len(),
        1,
        "only the bystander's PUT"
    );
}

#[tokio::test]
async fn rows_the_worker_could_not_read_are_refused_by_the_tables_checks() {
    use sqlx::Connection;
    let h = Harness::new().await;
    let url = format!("sqlite://{}", h.config.database.path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let refused = [
        (
            "payload that is not JSON",
            "INSERT INTO jobs (payload) VALUES ('{\"process_code\": ')",
        ),
        (
            "payload stored as a blob",
            "INSERT INTO jobs (payload) VALUES (x'7b7d')",
        ),
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
    ];
    for (label, sql) in refused {
        let error = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(
            error.to_string().contains("CHECK constraint failed"),
            "{label}: {error}"
        );
    }
    conn.close().await.unwrap();
    assert!(h.all_jobs().await.is_empty(), "nothing reached the queue");
}

#[tokio::test]
async fn a_row_with_invalid_utf8_fails_alone_with_a_reason_and_every_listing_still_works() {
    use sqlx::Connection;
    let mut h = Harness::new().await;
    let file = h.file("a.pdf", &bytes(100, 9));
    let mut good = h.payload(&[&file]);
    let first = h.enqueue(&good).await;
    // json_valid accepts these bytes, so the table's CHECKs let the rows in.
    good["form"][0]["value"] = json!("BAD");
    let bad_payload = good.to_string().replace("BAD", "\u{1}").into_bytes();
    let bad_payload: Vec<u8> = bad_payload
        .into_iter()
        .map(|b| if b == 1 { 0xFF } else { b })
        .collect();
    let url = format!("sqlite://{}", h.config.database.path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let bad: i64 =
        sqlx::query_scalar("INSERT INTO jobs (payload) VALUES (CAST(?1 AS TEXT)) RETURNING id")
            .bind(&bad_payload)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    good["form"][0]["value"] = json!("fine");
    let odd_key: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (payload, idempotency_key) VALUES (?1, CAST(x'6b6579fe' AS TEXT)) \
         RETURNING id",
    )
    .bind(good.to_string())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let last = h.enqueue(&good).await;

    h.start();
    let jobs = h.all_finished(Duration::from_secs(30)).await;
    let status = |id: i64| {
        let job = jobs.iter().find(|j| j.id == id).unwrap();
        (job.status.clone(), job.last_error.clone())
    };
    assert_eq!(
        status(bad),
        (
            "failed".to_owned(),
            Some("payload is not valid UTF-8".to_owned())
        )
    );
    for id in [first, odd_key, last] {
        assert_eq!(status(id).0, "succeeded", "job {id}: {:?}", status(id));
    }
    assert_eq!(h.received(Endpoint::CreateInstance).len(), 3);
    h.stop().await;

    let config = h.config_file("listing.toml", "");
    let run = |args: &[&str]| {
        let out = h
            .command()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    assert!(run(&["jobs"]).contains("failed"));
    let listed: Value = serde_json::from_str(&run(&["jobs", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    assert!(run(&["show", &bad.to_string()]).contains("\\xFF"));
    assert!(run(&["show", &odd_key.to_string(), "--json"]).contains("key\\\\xFE"));
}
