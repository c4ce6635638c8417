//! Approval processes: the approver tasks and operation records of an instance, and the
//! decisions (agree, refuse, terminate, delete) that end it, in GetProcessInstance's shapes.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Value, json};

use super::ids;

/// What happens to a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The approvers agree: status `COMPLETED`, result `agree`.
    Agree,
    /// The first approver refuses: status `COMPLETED`, result `refuse`.
    Refuse,
    /// The originator withdraws it (撤销): status `TERMINATED`.
    Terminate,
    /// An administrator deletes it: GetProcessInstance answers `processInstanceNotExist`.
    Delete,
}

impl Decision {
    fn name(self) -> &'static str {
        match self {
            Decision::Agree => "agree",
            Decision::Refuse => "refuse",
            Decision::Terminate => "terminate",
            Decision::Delete => "delete",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown decision `{0}` (expected agree, refuse, terminate or delete)")]
pub struct UnknownDecision(pub(crate) String);

impl FromStr for Decision {
    type Err = UnknownDecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Decision::Agree,
            Decision::Refuse,
            Decision::Terminate,
            Decision::Delete,
        ]
        .into_iter()
        .find(|d| d.name() == s)
        .ok_or_else(|| UnknownDecision(s.to_owned()))
    }
}

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// Waiting for its approvers.
    Running,
    /// Agreed or refused (see the result).
    Completed,
    /// Withdrawn by its originator.
    Terminated,
    /// Deleted; DingTalk no longer shows it, so GetProcessInstance answers
    /// `processInstanceNotExist` and the id list leaves it out. Not a DingTalk status.
    Deleted,
}

impl InstanceStatus {
    /// The `status` string of GetProcessInstance.
    pub fn as_wire(self) -> &'static str {
        match self {
            InstanceStatus::Running => "RUNNING",
            InstanceStatus::Completed => "COMPLETED",
            InstanceStatus::Terminated => "TERMINATED",
            InstanceStatus::Deleted => "DELETED",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_wire())
    }
}

/// How a completed instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Approved (`agree`).
    Agree,
    /// Rejected (`refuse`).
    Refuse,
}

impl Outcome {
    /// The lowercase `result` of GetProcessInstance and of the Stream event.
    pub fn as_wire(self) -> &'static str {
        match self {
            Outcome::Agree => "agree",
            Outcome::Refuse => "refuse",
        }
    }
}

/// Why a decision was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// No instance has this id.
    #[error("no approval instance `{0}`")]
    NotFound(String),
    /// The instance was decided before (a finished one may still be deleted).
    #[error("approval instance `{instance_id}` is already {status}{}, so it cannot be decided ({decision})", result.map(|r| format!(" ({})", r.as_wire())).unwrap_or_default())]
    AlreadyDecided {
        /// The instance.
        instance_id: String,
        /// Its status now.
        status: InstanceStatus,
        /// Its result now, if completed.
        result: Option<Outcome>,
        /// The decision that was refused.
        decision: Decision,
    },
}

/// One approval node: who approves and how (`AND` all, `OR` any one, `NONE` the one).
pub(super) struct Node {
    action_type: String,
    user_ids: Vec<String>,
    activity_id: String,
}

impl Node {
    pub(super) fn new(action_type: &str, user_ids: Vec<String>) -> Self {
        Self {
            action_type: action_type.to_owned(),
            user_ids,
            activity_id: format!("{}_{}", ids::random_hex(2), ids::random_hex(2)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskStatus {
    Running,
    Completed,
    Canceled,
}

/// One approver's task.
struct Task {
    task_id: i64,
    user_id: String,
    status: TaskStatus,
    result: Option<Outcome>,
    created_ms: i64,
    finished_ms: Option<i64>,
    node: usize,
}

/// One entry of `operationRecords`.
struct OperationRecord {
    user_id: String,
    date_ms: i64,
    kind: &'static str,
    result: &'static str,
    remark: String,
    activity_id: Option<String>,
}

/// The flow of one instance: its nodes, the tasks created so far and what was done.
pub(super) struct Process {
    nodes: Vec<Node>,
    tasks: Vec<Task>,
    records: Vec<OperationRecord>,
}

/// Hands out task ids; DingTalk's are 11-digit numbers.
pub(super) type TaskIds<'a> = &'a mut dyn FnMut() -> i64;

impl Process {
    /// A started flow: the start record, and a running task for each approver of the first
    /// node (later nodes get theirs when the flow reaches them, as in DingTalk).
    pub(super) fn start(nodes: Vec<Node>, originator: &str, now_ms: i64, ids: TaskIds) -> Self {
        let mut process = Self {
            nodes,
            tasks: Vec::new(),
            records: vec![OperationRecord {
                user_id: originator.to_owned(),
                date_ms: now_ms,
                kind: "START_PROCESS_INSTANCE",
                result: "NONE",
                remark: String::new(),
                activity_id: None,
            }],
        };
        process.open_node(0, now_ms, ids);
        process
    }

    fn open_node(&mut self, node: usize, now_ms: i64, ids: TaskIds) {
        let Some(users) = self.nodes.get(node).map(|n| n.user_ids.clone()) else {
            return;
        };
        if self.tasks.iter().any(|t| t.node == node) {
            return;
        }
        for user_id in users {
            self.tasks.push(Task {
                task_id: ids(),
                user_id,
                status: TaskStatus::Running,
                result: None,
                created_ms: now_ms,
                finished_ms: None,
                node,
            });
        }
    }

    /// Every node agrees in turn: all approvers of an `AND` node, the first of the others
    /// (whose other tasks are cancelled).
    pub(super) fn agree(&mut self, remark: &str, now_ms: i64, ids: TaskIds) {
        for node in 0..self.nodes.len() {
            self.open_node(node, now_ms, ids);
            let everyone = self.nodes[node].action_type == "AND";
            let mut agreed = false;
            for index in 0..self.tasks.len() {
                let task = &self.tasks[index];
                if task.node != node || task.status != TaskStatus::Running {
                    continue;
                }
                if everyone || !agreed {
                    self.complete(index, Outcome::Agree, remark, now_ms);
                    agreed = true;
                } else {
                    self.cancel(index, now_ms);
                }
            }
        }
    }

    /// The first running approver refuses; every other running task is cancelled.
    pub(super) fn refuse(&mut self, remark: &str, now_ms: i64) {
        if let Some(index) = self
            .tasks
            .iter()
            .position(|t| t.status == TaskStatus::Running)
        {
            self.complete(index, Outcome::Refuse, remark, now_ms);
        }
        self.cancel_running(now_ms);
    }

    /// The originator withdraws the instance.
    pub(super) fn terminate(&mut self, originator: &str, remark: &str, now_ms: i64) {
        self.cancel_running(now_ms);
        self.records.push(OperationRecord {
            user_id: originator.to_owned(),
            date_ms: now_ms,
            kind: "TERMINATE_PROCESS_INSTANCE",
            result: "NONE",
            remark: remark.to_owned(),
            activity_id: None,
        });
    }

    /// Nothing is left to do on a deleted instance.
    pub(super) fn delete(&mut self, now_ms: i64) {
        self.cancel_running(now_ms);
    }

    fn complete(&mut self, index: usize, outcome: Outcome, remark: &str, now_ms: i64) {
        let task = &mut self.tasks[index];
        task.status = TaskStatus::Completed;
        task.result = Some(outcome);
        task.finished_ms = Some(now_ms);
        let record = OperationRecord {
            user_id: task.user_id.clone(),
            date_ms: now_ms,
            kind: "EXECUTE_TASK_NORMAL",
            result: match outcome {
                Outcome::Agree => "AGREE",
                Outcome::Refuse => "REFUSE",
            },
            remark: remark.to_owned(),
            activity_id: Some(self.nodes[task.node].activity_id.clone()),
        };
        self.records.push(record);
    }

    fn cancel(&mut self, index: usize, now_ms: i64) {
        let task = &mut self.tasks[index];
        task.status = TaskStatus::Canceled;
        task.finished_ms = Some(now_ms);
    }

    fn cancel_running(&mut self, now_ms: i64) {
        for index in 0..self.tasks.len() {
            if self.tasks[index].status == TaskStatus::Running {
                self.cancel(index, now_ms);
            }
        }
    }

    /// `result.tasks` of GetProcessInstance.
    pub(super) fn tasks_json(&self, instance_id: &str, business_id: &str) -> Vec<Value> {
        self.tasks
            .iter()
            .map(|task| {
                let link = format!(
                    "aflow.dingtalk.com?procInsId={instance_id}&taskId={}&businessId={business_id}",
                    task.task_id
                );
                let mut value = json!({
                    "taskId": task.task_id,
                    "userId": task.user_id,
                    "status": match task.status {
                        TaskStatus::Running => "RUNNING",
                        TaskStatus::Completed => "COMPLETED",
                        TaskStatus::Canceled => "CANCELED",
                    },
                    "result": match task.result {
                        None => "NONE",
                        Some(Outcome::Agree) => "AGREE",
                        Some(Outcome::Refuse) => "REFUSE",
                    },
                    "createTime": ids::iso_minute(task.created_ms),
                    "mobileUrl": link,
                    "pcUrl": link,
                    "processInstanceId": instance_id,
                    "activityId": self.nodes[task.node].activity_id,
                });
                if let (Some(finished), Some(object)) = (task.finished_ms, value.as_object_mut()) {
                    object.insert("finishTime".into(), json!(ids::iso_minute(finished)));
                }
                value
            })
            .collect()
    }

    /// `result.operationRecords` of GetProcessInstance.
    pub(super) fn records_json(&self) -> Vec<Value> {
        self.records
            .iter()
            .map(|record| {
                let mut value = json!({
                    "userId": record.user_id,
                    "date": ids::iso_minute(record.date_ms),
                    "type": record.kind,
                    "result": record.result,
                    "remark": record.remark,
                    "attachments": [],
                    "ccUserIds": [],
                    "images": [],
                });
                if let (Some(activity), Some(object)) = (&record.activity_id, value.as_object_mut())
                {
                    object.insert("activityId".into(), json!(activity));
                    object.insert("showName".into(), json!("审批人"));
                }
                value
            })
            .collect()
    }
}
