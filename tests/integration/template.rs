//! The template check before any upload: a form its template cannot take fails the job at
//! once, naming the field, with no file uploaded and no call spent beyond the schema's.

use approval_worker::sandbox::Endpoint;
use serde_json::json;

use crate::helpers::{Harness, bytes};

#[tokio::test]
async fn a_form_the_template_cannot_take_fails_before_any_upload_naming_the_field() {
    let mut h = Harness::new().await;
    let file = h.file("receipt.pdf", &bytes(2_000, 1));
    let with = |key: &str, value: serde_json::Value| {
        let mut payload = h.payload(&[&file]);
        payload[key] = value;
        payload
    };
    let cases = [
        (
            with("attachment_field", json!("附件列表")),
            "template PROC-TEST has no field 「附件列表」 for the attachments; its fields are \
             「报销事由」, 「说明」, 「金额」, 「附件」",
        ),
        (
            with("attachment_field", json!("说明")),
            "attachment field 「说明」 of template PROC-TEST is a TextareaField, not a \
             DDAttachment: name the template's attachment field (attachment_field)",
        ),
        (
            with("form", json!([{"name": "事由", "value": "出差"}])),
            "form field 「事由」 is not in template PROC-TEST; its fields are 「报销事由」, 「说明」, \
             「金额」, 「附件」",
        ),
    ];
    let mut ids = Vec::new();
    for (payload, _) in &cases {
        ids.push(h.enqueue(payload).await);
    }
    let good = h.enqueue(&h.payload(&[&file])).await;
    h.start();
    for (id, (_, reason)) in ids.iter().zip(&cases) {
        let job = h.finished(*id).await;
        assert_eq!(job.status, "failed", "{job:?}");
        assert_eq!(job.attempt, 1, "failed at once, not retried");
        assert_eq!(job.last_error.as_deref(), Some(*reason));
    }
    assert_eq!(h.finished(good).await.status, "succeeded");
    h.stop().await;
    assert_eq!(
        h.received(Endpoint::OssPut).len(),
        1,
        "only the good job uploaded"
    );
    assert_eq!(h.received(Endpoint::UploadInfo).len(), 1);
    assert_eq!(
        h.received(Endpoint::FormSchema).len(),
        1,
        "one schema fetch for all the jobs of the template"
    );
}

#[tokio::test]
async fn an_unknown_template_fails_the_job_before_any_other_call() {
    let mut h = Harness::new().await;
    let file = h.file("receipt.pdf", &bytes(500, 2));
    let mut payload = h.payload(&[&file]);
    payload["process_code"] = json!("EXPENSE-7");
    let id = h.enqueue(&payload).await;
    h.start();
    let job = h.finished(id).await;
    h.stop().await;
    assert_eq!(job.status, "failed", "{job:?}");
    let error = job.last_error.unwrap_or_default();
    assert!(error.contains("processCodeError"), "{error}");
    let endpoints: Vec<Endpoint> = h.sandbox.requests().iter().map(|r| r.endpoint).collect();
    assert_eq!(endpoints, [Endpoint::Token, Endpoint::FormSchema]);
}
