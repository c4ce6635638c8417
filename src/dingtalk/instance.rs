//! Reading an approval instance back (§5.9): its status and decision, its tasks and its
//! operation records.

use serde::{Deserialize, Serialize};

use super::DingTalk;
use super::call::{Host, Request};
use super::error::DingTalkError;
use super::isotime::parse_time_ms;
use super::wire::{GetInstanceResponse, InstanceResult, WireOperationRecord, WireTask};
use super::workflow::FormValue;

/// The parts of an instance the worker reads back. Text DingTalk left out reads as empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceInfo {
    instance_id: String,
    status: String,
    result: String,
    originator_user_id: String,
    create_time: String,
    finish_time: Option<String>,
    /// The form as stored; null or missing values read as empty strings.
    pub(crate) form: Vec<FormValue>,
    tasks: Vec<InstanceTask>,
    operation_records: Vec<OperationRecord>,
}

/// One approver's task. Statuses: `NEW`, `RUNNING`, `PAUSED`, `CANCELED`, `COMPLETED`,
/// `TERMINATED`; results: `AGREE`, `REFUSE`, `REDIRECTED` (uppercase, unlike the instance's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceTask {
    /// int64 on the wire; 0 when missing.
    pub(crate) task_id: i64,
    pub(crate) user_id: String,
    pub(crate) status: String,
    pub(crate) result: String,
    /// ISO time as DingTalk sends it (see [`parse_time_ms`]).
    pub(crate) create_time: Option<String>,
    /// Absent while the task is open.
    pub(crate) finish_time: Option<String>,
    pub(crate) activity_id: String,
}

/// One entry of the instance's history: `kind` is `EXECUTE_TASK_NORMAL`,
/// `START_PROCESS_INSTANCE`, `TERMINATE_PROCESS_INSTANCE`, `ADD_REMARK`, …; `result` is `AGREE`,
/// `REFUSE` or `NONE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OperationRecord {
    pub(crate) user_id: String,
    /// ISO time as DingTalk sends it (see [`parse_time_ms`]).
    pub(crate) date: Option<String>,
    pub(crate) kind: String,
    pub(crate) result: String,
    /// The approver's comment; may be empty.
    pub(crate) remark: String,
    /// The operator's display name.
    pub(crate) show_name: String,
}

/// What became of an instance, read from its status and result together (approved means
/// `COMPLETED` and `agree`; §5.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstanceOutcome {
    /// `RUNNING` or `NEW`: nobody has decided yet.
    Running,
    /// `COMPLETED` with `agree`.
    Approved,
    /// `COMPLETED` with `refuse`.
    Refused,
    /// `TERMINATED` (withdrawn by the originator or stopped by an admin) or `CANCELED`.
    Terminated,
    /// A combination DingTalk does not document, e.g. `COMPLETED` without a result.
    Unknown,
}

impl InstanceInfo {
    fn from_wire(instance_id: &str, result: InstanceResult) -> Self {
        Self {
            instance_id: instance_id.to_owned(),
            status: result.status,
            result: result.result.unwrap_or_default(),
            originator_user_id: result.originator_user_id,
            create_time: result.create_time,
            finish_time: result.finish_time.filter(|t| !t.trim().is_empty()),
            form: result
                .form_component_values
                .into_iter()
                .map(|field| FormValue {
                    name: field.name.unwrap_or_default(),
                    value: field.value.unwrap_or_default(),
                    component_type: field.component_type,
                })
                .collect(),
            tasks: result.tasks.into_iter().map(InstanceTask::from).collect(),
            operation_records: result
                .operation_records
                .into_iter()
                .map(OperationRecord::from)
                .collect(),
        }
    }

    /// The id asked for.
    #[cfg(test)]
    pub(crate) fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// `RUNNING`, `TERMINATED`, `COMPLETED` (also `NEW`, `CANCELED` seen).
    pub(crate) fn status(&self) -> &str {
        &self.status
    }

    /// `agree` or `refuse` (lowercase) once decided; empty before.
    pub(crate) fn result(&self) -> &str {
        &self.result
    }

    /// The originator's userId.
    #[cfg(test)]
    pub(crate) fn originator_user_id(&self) -> &str {
        &self.originator_user_id
    }

    /// As DingTalk sends it, e.g. `2022-08-31T11:52Z`.
    #[cfg(test)]
    pub(crate) fn create_time(&self) -> &str {
        &self.create_time
    }

    /// As DingTalk sends it; `None` while the instance runs.
    pub(crate) fn finish_time(&self) -> Option<&str> {
        self.finish_time.as_deref()
    }

    /// [`Self::finish_time`] in unix ms, when present and readable.
    pub(crate) fn finish_time_ms(&self) -> Option<i64> {
        self.finish_time.as_deref().and_then(parse_time_ms)
    }

    /// The approvers' tasks, in DingTalk's order.
    pub(crate) fn tasks(&self) -> &[InstanceTask] {
        &self.tasks
    }

    /// The instance's history, in DingTalk's order (oldest first).
    pub(crate) fn operation_records(&self) -> &[OperationRecord] {
        &self.operation_records
    }

    /// The decision, from status and result (both compared without regard to case).
    pub(crate) fn outcome(&self) -> InstanceOutcome {
        let status = self.status.to_ascii_uppercase();
        let result = self.result.to_ascii_lowercase();
        match (status.as_str(), result.as_str()) {
            ("RUNNING" | "NEW", _) => InstanceOutcome::Running,
            ("COMPLETED", "agree") => InstanceOutcome::Approved,
            ("COMPLETED", "refuse") => InstanceOutcome::Refused,
            ("TERMINATED" | "CANCELED", _) => InstanceOutcome::Terminated,
            _ => InstanceOutcome::Unknown,
        }
    }
}

impl From<WireTask> for InstanceTask {
    fn from(task: WireTask) -> Self {
        Self {
            task_id: task.task_id.unwrap_or_default(),
            user_id: task.user_id.unwrap_or_default(),
            status: task.status.unwrap_or_default(),
            result: task.result.unwrap_or_default(),
            create_time: task.create_time.filter(|t| !t.trim().is_empty()),
            finish_time: task.finish_time.filter(|t| !t.trim().is_empty()),
            activity_id: task.activity_id.unwrap_or_default(),
        }
    }
}

impl From<WireOperationRecord> for OperationRecord {
    fn from(record: WireOperationRecord) -> Self {
        Self {
            user_id: record.user_id.unwrap_or_default(),
            date: record.date.filter(|t| !t.trim().is_empty()),
            kind: record.kind.unwrap_or_default(),
            result: record.result.unwrap_or_default(),
            remark: record.remark.unwrap_or_default(),
            show_name: record.show_name.unwrap_or_default(),
        }
    }
}

impl DingTalk {
    /// §5.9: reads an instance back.
    pub(crate) async fn get_instance(
        &self,
        instance_id: &str,
    ) -> Result<InstanceInfo, DingTalkError> {
        let request = Request::get(
            "workflow/processInstances/get",
            Host::Api,
            "/v1.0/workflow/processInstances",
        )
        .query("processInstanceId", instance_id);
        let response: GetInstanceResponse = self.call(&request).await?;
        Ok(InstanceInfo::from_wire(instance_id, response.result))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dingtalk::fake::{Fake, Reply};
    use serde_json::json;

    /// 2022-08-31T11:52Z.
    const AUG_31_1152_UTC: i64 = 1_661_946_720_000;

    /// A finished instance as DingTalk returns it: numbers where documented, strings elsewhere,
    /// an agent's approval, a remark and a comment attachment.
    fn refused_instance() -> serde_json::Value {
        json!({"success": "true", "result": {
            "title": "张三提交的报销", "createTime": "2022-08-31T11:40Z", "finishTime": "2022-08-31T11:52Z",
            "originatorUserId": "manager4220", "originatorDeptId": "-1", "originatorDeptName": "总部",
            "status": "COMPLETED", "result": "refuse", "businessId": "202208311140000123",
            "approverUserIds": ["a1", "a2"], "ccUserIds": [], "bizAction": "NONE",
            "formComponentValues": [
                {"id": "DDAttachment-1", "name": "附件", "value": "[]", "componentType": "DDAttachment", "bizAlias": ""}
            ],
            "tasks": [
                {"taskId": 81234567890_i64, "userId": "a1", "status": "COMPLETED", "result": "AGREE",
                 "createTime": "2022-08-31T11:40Z", "finishTime": "2022-08-31T11:45Z",
                 "mobileUrl": "https://aflow.dingtalk.com/m", "pcUrl": "https://aflow.dingtalk.com/p",
                 "processInstanceId": "INST-9", "activityId": "act-1", "taskGroupName": ""},
                {"taskId": "81234567891", "userId": "a2", "status": "COMPLETED", "result": "REFUSE",
                 "createTime": "2022-08-31T11:45Z", "finishTime": "2022-08-31T11:52Z", "activityId": "act-2"},
                {"userId": "a3", "status": "CANCELED", "result": null, "finishTime": ""}
            ],
            "operationRecords": [
                {"userId": "manager4220", "date": "2022-08-31T11:40Z", "type": "START_PROCESS_INSTANCE",
                 "result": "NONE", "showName": "发起审批", "attachments": [], "images": []},
                {"userId": "a1", "date": "2022-08-31T11:45Z", "type": "EXECUTE_TASK_AGENT",
                 "result": "AGREE", "remark": "同意", "showName": "审批人",
                 "attachments": [{"fileId": "1", "fileName": "x.pdf", "fileSize": "3", "fileType": "pdf", "spaceId": "2"}]},
                {"userId": "a2", "date": "2022-08-31T11:52Z", "type": "EXECUTE_TASK_NORMAL",
                 "result": "REFUSE", "remark": "金额不对", "showName": "审批人", "activityId": "act-2"}
            ]
        }})
    }

    #[tokio::test]
    async fn a_decided_instance_reads_with_its_decision_tasks_and_history() {
        let fake = Fake::start(|_| Reply::json(200, refused_instance())).await;
        let info = fake.client().get_instance("INST-9").await.unwrap();

        assert_eq!(info.instance_id(), "INST-9");
        assert_eq!((info.status(), info.result()), ("COMPLETED", "refuse"));
        assert_eq!(info.outcome(), InstanceOutcome::Refused);
        assert_eq!(info.originator_user_id(), "manager4220");
        assert_eq!(info.create_time(), "2022-08-31T11:40Z");
        assert_eq!(info.finish_time(), Some("2022-08-31T11:52Z"));
        assert_eq!(info.finish_time_ms(), Some(AUG_31_1152_UTC));
        assert_eq!(info.form.len(), 1);

        let tasks = info.tasks();
        assert_eq!(tasks.len(), 3);
        assert_eq!(
            tasks[1],
            InstanceTask {
                task_id: 81_234_567_891,
                user_id: "a2".into(),
                status: "COMPLETED".into(),
                result: "REFUSE".into(),
                create_time: Some("2022-08-31T11:45Z".into()),
                finish_time: Some("2022-08-31T11:52Z".into()),
                activity_id: "act-2".into(),
            }
        );
        assert_eq!(tasks[0].task_id, 81_234_567_890);
        assert_eq!(
            (
                tasks[2].task_id,
                tasks[2].result.as_str(),
                &tasks[2].finish_time
            ),
            (0, "", &None),
            "missing, null and empty fields read as empty"
        );

        let records = info.operation_records();
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[2],
            OperationRecord {
                user_id: "a2".into(),
                date: Some("2022-08-31T11:52Z".into()),
                kind: "EXECUTE_TASK_NORMAL".into(),
                result: "REFUSE".into(),
                remark: "金额不对".into(),
                show_name: "审批人".into(),
            }
        );
        assert_eq!(records[0].remark, "");
    }

    #[tokio::test]
    async fn a_running_instance_has_no_result_or_finish_time() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"success": "true", "result": {
                    "createTime": "2022-08-31T11:52Z", "originatorUserId": "manager4220",
                    "status": "RUNNING", "result": "", "finishTime": null,
                    "formComponentValues": [], "tasks": null
                }}),
            )
        })
        .await;
        let info = fake.client().get_instance("INST-1").await.unwrap();
        assert_eq!(info.outcome(), InstanceOutcome::Running);
        assert_eq!((info.result(), info.finish_time()), ("", None));
        assert_eq!(info.finish_time_ms(), None);
        assert!(info.tasks().is_empty() && info.operation_records().is_empty());
    }

    #[test]
    fn outcome_needs_status_and_result_together() {
        let info = |status: &str, result: &str| InstanceInfo {
            status: status.into(),
            result: result.into(),
            ..InstanceInfo::from_wire("I", serde_json::from_value(json!({})).unwrap())
        };
        assert_eq!(
            info("COMPLETED", "agree").outcome(),
            InstanceOutcome::Approved
        );
        assert_eq!(
            info("completed", "AGREE").outcome(),
            InstanceOutcome::Approved
        );
        assert_eq!(
            info("COMPLETED", "refuse").outcome(),
            InstanceOutcome::Refused
        );
        assert_eq!(info("COMPLETED", "").outcome(), InstanceOutcome::Unknown);
        assert_eq!(
            info("TERMINATED", "").outcome(),
            InstanceOutcome::Terminated
        );
        assert_eq!(info("CANCELED", "").outcome(), InstanceOutcome::Terminated);
        assert_eq!(info("NEW", "").outcome(), InstanceOutcome::Running);
        assert_eq!(info("", "").outcome(), InstanceOutcome::Unknown);
    }

    #[tokio::test]
    async fn get_instance_wire_shape_and_string_success() {
        let fake = Fake::start(|_| {
            Reply::json(
                200,
                json!({"success": "true", "result": {
                    "title": "t", "createTime": "2022-08-31T11:52Z", "originatorUserId": "manager4220",
                    "originatorDeptId": "-1", "status": "RUNNING", "result": "", "businessId": "b",
                    "formComponentValues": [
                        {"id": "TextField-1", "name": "报销事由", "value": "出差", "componentType": "TextField", "bizAlias": ""},
                        {"id": "DDAttachment-1", "name": "附件", "value": null, "componentType": "DDAttachment"}
                    ],
                    "tasks": [{"taskId": 1, "userId": "a1", "status": "RUNNING"}]
                }}),
            )
        })
        .await;
        let info = fake.client().get_instance("INST 1").await.unwrap();
        assert_eq!(
            info.form,
            vec![
                FormValue {
                    name: "报销事由".into(),
                    value: "出差".into(),
                    component_type: Some("TextField".into()),
                },
                FormValue {
                    name: "附件".into(),
                    value: String::new(),
                    component_type: Some("DDAttachment".into()),
                },
            ]
        );
        assert_eq!(info.tasks()[0].task_id, 1);
        let seen = fake.last();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, "/v1.0/workflow/processInstances");
        assert_eq!(seen.query, "processInstanceId=INST+1");
        assert_eq!(seen.header("content-type"), None);
        assert!(seen.body.is_empty());
        assert!(seen.header("x-acs-dingtalk-access-token").is_some());
    }
}
