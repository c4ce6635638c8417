//! Instances as approval processes: GetProcessInstance before and after each decision, the
//! id list's status filter, refusals, auto-decide and the admin route.

use std::time::Duration;

use serde_json::{Value, json};

use super::super::{
    DEFAULT_APPROVER, DecideError, Decision, InstanceStatus, Outcome, SandboxOptions,
};
use super::{Answer, Harness, USER, attachment, create_body};

const BYTES: &[u8] = b"%PDF-1.4 process test";

/// Uploads a file and creates an instance with `approvers` (template flow when null).
async fn create(h: &Harness, token: &str, approvers: Value) -> String {
    let dentry = h.upload(token, "a.pdf", BYTES).await;
    let mut body = create_body(&attachment(&dentry));
    if !approvers.is_null() {
        body["approvers"] = approvers;
    }
    let created = h.create(token, body).await;
    assert_eq!(created.status, 200, "{}", created.body);
    created.body["instanceId"].as_str().unwrap().to_owned()
}

async fn read(h: &Harness, token: &str, id: &str) -> Answer {
    h.get(
        &format!("/v1.0/workflow/processInstances?processInstanceId={id}"),
        token,
    )
    .await
}

/// `2026-11-29T12:00Z`
fn is_iso_minute(value: &Value) -> bool {
    let text = value.as_str().unwrap_or_default();
    text.len() == 17 && text.as_bytes()[10] == b'T' && text.ends_with('Z')
}

#[tokio::test]
async fn an_instance_reads_running_then_completed_agree_with_its_task_and_records() {
    let h = Harness::start().await;
    let token = h.token().await;
    let id = create(&h, &token, Value::Null).await;

    let running = read(&h, &token, &id).await.body["result"].clone();
    assert_eq!(running["status"], "RUNNING");
    assert_eq!(running["result"], "");
    assert!(running.get("finishTime").is_none());
    let task = &running["tasks"][0];
    assert_eq!(running["tasks"].as_array().unwrap().len(), 1);
    assert!(task["taskId"].is_i64(), "taskId is a number: {task}");
    assert_eq!(task["userId"], DEFAULT_APPROVER);
    assert_eq!(
        (task["status"].as_str(), task["result"].as_str()),
        (Some("RUNNING"), Some("NONE"))
    );
    assert!(is_iso_minute(&task["createTime"]) && task.get("finishTime").is_none());
    assert_eq!(task["processInstanceId"], id.as_str());
    assert!(task["activityId"].is_string());
    assert_eq!(
        running["operationRecords"][0]["type"],
        "START_PROCESS_INSTANCE"
    );

    let decided = h
        .sandbox
        .decide_with_remark(&id, Decision::Agree, "同意，票据齐全")
        .unwrap();
    assert_eq!(
        (decided.status, decided.result),
        (InstanceStatus::Completed, Some(Outcome::Agree))
    );

    let done = read(&h, &token, &id).await.body["result"].clone();
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["result"], "agree");
    assert!(is_iso_minute(&done["finishTime"]), "{done}");
    let task = &done["tasks"][0];
    assert_eq!(
        (task["status"].as_str(), task["result"].as_str()),
        (Some("COMPLETED"), Some("AGREE"))
    );
    assert!(is_iso_minute(&task["finishTime"]));
    let records = done["operationRecords"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    let executed = &records[1];
    assert_eq!(executed["type"], "EXECUTE_TASK_NORMAL");
    assert_eq!(executed["result"], "AGREE");
    assert_eq!(executed["remark"], "同意，票据齐全");
    assert_eq!(executed["userId"], DEFAULT_APPROVER);
    assert_eq!(executed["activityId"], task["activityId"]);
    assert!(is_iso_minute(&executed["date"]));
    assert_eq!(h.sandbox.instances()[0].status, InstanceStatus::Completed);
}

#[tokio::test]
async fn refusing_completes_with_refuse_and_cancels_the_other_approvers() {
    let h = Harness::start().await;
    let token = h.token().await;
    let id = create(
        &h,
        &token,
        json!([{"actionType": "OR", "userIds": ["boss1", "boss2"]}]),
    )
    .await;
    h.sandbox
        .decide_with_remark(&id, Decision::Refuse, "金额不符")
        .unwrap();

    let result = read(&h, &token, &id).await.body["result"].clone();
    assert_eq!(
        (result["status"].as_str(), result["result"].as_str()),
        (Some("COMPLETED"), Some("refuse"))
    );
    let tasks: Vec<(&str, &str, &str)> = result["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["userId"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
                t["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tasks,
        [
            ("boss1", "COMPLETED", "REFUSE"),
            ("boss2", "CANCELED", "NONE")
        ]
    );
    let last = result["operationRecords"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["type"].as_str(), last["result"].as_str()),
        (Some("EXECUTE_TASK_NORMAL"), Some("REFUSE"))
    );
    assert_eq!(last["remark"], "金额不符");
}

#[tokio::test]
async fn agreeing_takes_every_approver_of_an_and_node_and_reaches_the_later_nodes() {
    let h = Harness::start().await;
    let token = h.token().await;
    let approvers = json!([
        {"actionType": "AND", "userIds": ["boss1", "boss2"]},
        {"actionType": "NONE", "userIds": ["finance01"]},
    ]);
    let id = create(&h, &token, approvers).await;
    let before = read(&h, &token, &id).await.body["result"]["tasks"].clone();
    let users: Vec<&str> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["userId"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        ["boss1", "boss2"],
        "the second node has no task before the flow reaches it"
    );

    h.sandbox.decide(&id, Decision::Agree).unwrap();
    let result = read(&h, &token, &id).await.body["result"].clone();
    let agreed: Vec<(&str, &str)> = result["operationRecords"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|r| (r["userId"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        agreed,
        [
            ("boss1", "AGREE"),
            ("boss2", "AGREE"),
            ("finance01", "AGREE")
        ]
    );
    assert!(
        result["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["result"] == "AGREE")
    );
    assert_eq!(
        result["approverUserIds"],
        json!(["boss1", "boss2", "finance01"])
    );
}

#[tokio::test]
async fn terminating_cancels_the_tasks_and_records_the_originators_withdrawal() {
    let h = Harness::start().await;
    let token = h.token().await;
    let id = create(&h, &token, Value::Null).await;
    h.sandbox
        .decide_with_remark(&id, Decision::Terminate, "填错了")
        .unwrap();

    let result = read(&h, &token, &id).await.body["result"].clone();
    assert_eq!(result["status"], "TERMINATED");
    assert_eq!(result["result"], "");
    assert!(is_iso_minute(&result["finishTime"]));
    assert_eq!(result["tasks"][0]["status"], "CANCELED");
    let last = result["operationRecords"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["type"], "TERMINATE_PROCESS_INSTANCE");
    assert_eq!(last["userId"], USER);
    assert_eq!(last["remark"], "填错了");
}

#[tokio::test]
async fn a_deleted_instance_is_gone_for_get_and_the_id_list_but_kept_in_the_record() {
    let h = Harness::start().await;
    let token = h.token().await;
    let id = create(&h, &token, Value::Null).await;
    h.sandbox.decide(&id, Decision::Delete).unwrap();

    let answer = read(&h, &token, &id).await;
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (400, Some("processInstanceNotExist"))
    );
    assert_eq!(list(&h, &token, json!([])).await, Vec::<String>::new());
    assert_eq!(h.sandbox.instances()[0].status, InstanceStatus::Deleted);
}

#[tokio::test]
async fn deciding_a_decided_instance_is_refused_but_a_finished_one_may_be_deleted() {
    let h = Harness::start().await;
    let token = h.token().await;
    let id = create(&h, &token, Value::Null).await;
    h.sandbox.decide(&id, Decision::Agree).unwrap();

    let again = h.sandbox.decide(&id, Decision::Refuse).unwrap_err();
    assert_eq!(
        again,
        DecideError::AlreadyDecided {
            instance_id: id.clone(),
            status: InstanceStatus::Completed,
            result: Some(Outcome::Agree),
            decision: Decision::Refuse,
        }
    );
    assert!(
        again.to_string().contains("already COMPLETED (agree)"),
        "{again}"
    );
    assert!(h.sandbox.decide(&id, Decision::Terminate).is_err());
    let unknown = h.sandbox.decide("nope", Decision::Agree).unwrap_err();
    assert_eq!(unknown, DecideError::NotFound("nope".into()));

    h.sandbox.decide(&id, Decision::Delete).unwrap();
    assert!(matches!(
        h.sandbox.decide(&id, Decision::Delete),
        Err(DecideError::AlreadyDecided {
            status: InstanceStatus::Deleted,
            ..
        })
    ));
    assert_eq!(
        read(&h, &token, &id).await.body["code"],
        "processInstanceNotExist"
    );
}

async fn list(h: &Harness, token: &str, statuses: Value) -> Vec<String> {
    let answer = h
        .post(
            "/v1.0/workflow/processes/instanceIds/query",
            Some(token),
            json!({"processCode": "PROC-SANDBOX-EXPENSE", "startTime": 0, "nextToken": 0,
                   "maxResults": 20, "statuses": statuses}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_value(answer.body["result"]["list"].clone()).unwrap()
}

#[tokio::test]
async fn the_id_list_filters_on_the_status_instances_really_have() {
    let h = Harness::start().await;
    let token = h.token().await;
    let running = create(&h, &token, Value::Null).await;
    let agreed = create(&h, &token, Value::Null).await;
    let terminated = create(&h, &token, Value::Null).await;
    h.sandbox.decide(&agreed, Decision::Agree).unwrap();
    h.sandbox.decide(&terminated, Decision::Terminate).unwrap();

    assert_eq!(
        list(&h, &token, json!(["RUNNING"])).await,
        [running.as_str()]
    );
    assert_eq!(
        list(&h, &token, json!(["COMPLETED"])).await,
        [agreed.as_str()]
    );
    assert_eq!(
        list(&h, &token, json!(["TERMINATED", "RUNNING"])).await,
        [running.as_str(), terminated.as_str()]
    );
    assert_eq!(
        list(&h, &token, json!([])).await,
        [running, agreed, terminated]
    );
}

#[tokio::test]
async fn auto_decide_agrees_and_refuses_every_third_instance_after_the_delay() {
    let h = Harness::with(SandboxOptions {
        auto_decide_after: Some(Duration::from_millis(30)),
        ..SandboxOptions::default()
    })
    .await;
    let token = h.token().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(create(&h, &token, Value::Null).await);
    }
    let decided = h
        .sandbox
        .wait_for(Duration::from_secs(10), |s| {
            s.instances()
                .iter()
                .all(|i| i.status != InstanceStatus::Running)
        })
        .await;
    assert!(decided, "{:?}", h.sandbox.instances());
    let results: Vec<Option<Outcome>> = h.sandbox.instances().iter().map(|i| i.result).collect();
    use Outcome::{Agree, Refuse};
    assert_eq!(
        results,
        [Some(Agree), Some(Agree), Some(Refuse), Some(Agree)]
    );
    let record = read(&h, &token, &ids[2]).await.body["result"]["operationRecords"][1].clone();
    assert_eq!(record["result"], "REFUSE");
    assert!(record["remark"].as_str().unwrap().contains("auto"));
}

#[tokio::test]
async fn the_admin_route_decides_and_explains_what_it_refuses() {
    let h = Harness::start().await;
    let token = h.token().await;
    let id = create(&h, &token, Value::Null).await;
    let path = format!("/sandbox/instances/{id}/decide");

    let refused = h
        .post(&path, None, json!({"action": "refuse", "remark": "不批"}))
        .await;
    assert_eq!(refused.status, 200, "{}", refused.body);
    assert_eq!(refused.body["status"], "COMPLETED");
    assert_eq!(refused.body["result"], "refuse");
    assert!(is_iso_minute(&refused.body["finishTime"]));

    let twice = h.post(&path, None, json!({"action": "agree"})).await;
    assert_eq!(
        (twice.status, twice.body["code"].as_str()),
        (409, Some("alreadyDecided"))
    );
    assert!(
        twice.body["message"]
            .as_str()
            .unwrap()
            .contains("already COMPLETED")
    );
    let unknown = h
        .post(
            "/sandbox/instances/nope/decide",
            None,
            json!({"action": "agree"}),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (404, Some("processInstanceNotExist"))
    );
    let bad = h.post(&path, None, json!({"action": "approve"})).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["message"]
            .as_str()
            .unwrap()
            .contains("agree, refuse, terminate or delete")
    );

    let listed = h.get("/sandbox/instances", "").await;
    assert_eq!(listed.body["instances"][0]["status"], "COMPLETED");
    assert_eq!(listed.body["instances"][0]["result"], "refuse");
    assert!(
        h.sandbox
            .requests()
            .iter()
            .all(|r| !r.path.starts_with("/sandbox/")),
        "admin calls are not recorded"
    );
}
