//! StartProcessInstance validation: the attachment value, people, template and auth.

use reqwest::Method;
use serde_json::json;

use super::super::Endpoint;
use super::{Harness, attachment, create_body};

const BYTES: &[u8] = b"%PDF-1.4 form test";

/// Asserts a `formConverterError` whose message mentions `needle`.
fn assert_form_error(answer: &super::Answer, needle: &str) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["code"], "formConverterError", "{}", answer.body);
    let message = answer.body["message"].as_str().unwrap();
    assert!(message.contains("附件"), "{message}");
    assert!(message.contains(needle), "{message}");
}

#[tokio::test]
async fn a_numeric_file_size_in_the_attachment_is_refused() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    let value = json!([{
        "spaceId": dentry["spaceId"], "fileName": dentry["name"], "fileSize": dentry["size"],
        "fileType": dentry["extension"], "fileId": dentry["id"],
    }])
    .to_string();
    assert_form_error(&h.create(&token, create_body(&value)).await, "fileSize");
    assert!(h.sandbox.instances().is_empty());
}

#[tokio::test]
async fn an_attachment_naming_an_uncommitted_file_is_refused() {
    let h = Harness::start().await;
    let token = h.token().await;
    let mut dentry = h.upload(&token, "a.pdf", BYTES).await;
    dentry["id"] = json!("999999999999");
    assert_form_error(
        &h.create(&token, create_body(&attachment(&dentry))).await,
        "not a committed file",
    );
}

#[tokio::test]
async fn attachment_values_must_be_an_array_of_exactly_the_five_keys_matching_the_file() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    let good: serde_json::Value = serde_json::from_str(&attachment(&dentry)).unwrap();
    let item = good[0].clone();

    let mut extra = item.clone();
    extra["url"] = json!("x");
    let mut wrong_name = item.clone();
    wrong_name["fileName"] = json!("b.pdf");
    let mut wrong_type = item.clone();
    wrong_type["fileType"] = json!("PDF");
    let cases = [
        (item.to_string(), "JSON array"),
        (json!([extra]).to_string(), "unexpected key `url`"),
        (json!([wrong_name]).to_string(), "fileName"),
        (json!([wrong_type]).to_string(), "fileType"),
        ("[]".to_owned(), "lists no file"),
        ("not json".to_owned(), "not valid JSON"),
    ];
    for (value, needle) in cases {
        assert_form_error(&h.create(&token, create_body(&value)).await, needle);
    }

    let mut without = create_body("");
    without["formComponentValues"] = json!([{"name": "说明", "value": "x"}]);
    assert_form_error(&h.create(&token, without).await, "missing");
}

#[tokio::test]
async fn a_call_without_the_token_header_is_unauthorized() {
    let h = Harness::start().await;
    let answer = h
        .post("/v1.0/workflow/processInstances", None, create_body("[]"))
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["code"], "Unauthorized");
    assert!(answer.body["requestid"].is_string());
    let record = h.sandbox.requests().pop().unwrap();
    assert_eq!(
        (record.endpoint, record.status),
        (Endpoint::CreateInstance, 401)
    );
    assert_eq!(
        record.headers["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(record.body.unwrap()["processCode"], "PROC-SANDBOX-EXPENSE");

    let unknown = h
        .post(
            "/v1.0/workflow/processInstances",
            Some("0123456789abcdef0123456789abcdef"),
            create_body("[]"),
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["code"], "InvalidAuthentication");
    assert_eq!(unknown.body["message"], "不合法的access_token");
}

#[tokio::test]
async fn unknown_fields_wrong_types_and_wrong_content_types_are_invalid_parameters() {
    let h = Harness::start().await;
    let token = h.token().await;
    let mut unknown = create_body("[]");
    unknown["RequestId"] = json!("x");
    let answer = h.create(&token, unknown).await;
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (400, Some("invalidParameter"))
    );
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("RequestId")
    );

    let mut numeric_value = create_body("[]");
    numeric_value["formComponentValues"][1]["value"] = json!(42);
    let answer = h.create(&token, numeric_value).await;
    assert_eq!(answer.body["code"], "invalidParameter");

    let mut string_dept = create_body("[]");
    string_dept["deptId"] = json!("-1");
    assert_eq!(
        h.create(&token, string_dept).await.body["code"],
        "invalidParameter"
    );

    let plain = h
        .request(
            Method::POST,
            "/v1.0/workflow/processInstances",
            Some(&token),
            None,
        )
        .header("content-type", "text/plain")
        .body(create_body("[]").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(super::answer(plain).await.body["code"], "invalidParameter");
}

#[tokio::test]
async fn template_originator_department_and_agent_are_checked() {
    let h = Harness::start().await;
    let token = h.token().await;
    let dentry = h.upload(&token, "a.pdf", BYTES).await;
    let good = create_body(&attachment(&dentry));

    let mut code = good.clone();
    code["processCode"] = json!("EXPENSE");
    assert_eq!(
        h.create(&token, code).await.body["code"],
        "processCodeError"
    );

    let mut ghost = good.clone();
    ghost["originatorUserId"] = json!("ghost-7");
    assert_eq!(
        h.create(&token, ghost).await.body["code"],
        "processInstanceInvalidParameter"
    );

    let mut no_dept = good.clone();
    no_dept.as_object_mut().unwrap().remove("deptId");
    assert_eq!(
        h.create(&token, no_dept.clone()).await.body["code"],
        "processInstanceInvalidParameter"
    );
    no_dept["approvers"] = json!([{"actionType": "NONE", "userIds": ["boss1"]}]);
    assert_eq!(h.create(&token, no_dept).await.status, 200);

    let mut agent = good.clone();
    agent["microappAgentId"] = json!(1);
    assert_eq!(h.create(&token, agent).await.body["code"], "invalidAgentId");

    let mut action = good;
    action["approvers"] = json!([{"actionType": "ANY", "userIds": ["boss1"]}]);
    assert_eq!(
        h.create(&token, action).await.body["code"],
        "invalidParameter"
    );

    let instances = h.sandbox.instances();
    assert_eq!(instances.len(), 1);
    assert_eq!(
        instances[0].approvers,
        json!([{"actionType": "NONE", "userIds": ["boss1"]}])
    );
}

#[tokio::test]
async fn reading_an_unknown_instance_is_process_instance_not_exist() {
    let h = Harness::start().await;
    let token = h.token().await;
    let answer = h
        .get(
            "/v1.0/workflow/processInstances?processInstanceId=nope",
            &token,
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["code"], "processInstanceNotExist");
}
