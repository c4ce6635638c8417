//! Bad payloads become failed jobs with a reason naming the field; good jobs still succeed.

use serde_json::{Value, json};

use crate::helpers::{Harness, bytes};

#[tokio::test]
async fn malformed_payloads_fail_with_a_readable_reason_while_good_jobs_succeed() {
    let mut h = Harness::new().await;
    let good_file = h.file("good.pdf", &bytes(100, 1));
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
    let cases: Vec<(&str, Value, &str)> = vec![
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
    ];
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
}
