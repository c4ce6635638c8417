//! Deciding instances (by hand, through the admin endpoint, or on the auto-decide timer),
//! and the `bpms_instance_change` events instances publish as they start and end.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ids;
use super::process::{DecideError, Decision, InstanceStatus, Outcome};
use super::records::Instance;
use super::state::{AutoDecision, InstanceRecord, Shared};

/// The Stream event type of instance changes.
pub(super) const INSTANCE_CHANGE: &str = "bpms_instance_change";
/// The remark of automatic decisions.
const AUTO_REMARK: &str = "沙箱自动审批 (sandbox auto-decide)";

/// Applies `decision` to the instance and publishes its event; returns the instance as it
/// now is.
pub(super) fn decide(
    shared: &Shared,
    instance_id: &str,
    decision: Decision,
    remark: &str,
) -> Result<Instance, DecideError> {
    let now_ms = ids::now_ms();
    let mut guard = shared.lock();
    let state = &mut *guard;
    let Some(record) = state
        .instances
        .iter_mut()
        .find(|r| r.instance.instance_id == instance_id)
    else {
        return Err(DecideError::NotFound(instance_id.to_owned()));
    };
    let instance = &mut record.instance;
    // A finished instance can still be deleted, as DingTalk's administrators do.
    let allowed = match instance.status {
        InstanceStatus::Running => true,
        InstanceStatus::Completed | InstanceStatus::Terminated => decision == Decision::Delete,
        InstanceStatus::Deleted => false,
    };
    if !allowed {
        return Err(DecideError::AlreadyDecided {
            instance_id: instance_id.to_owned(),
            status: instance.status,
            result: instance.result,
            decision,
        });
    }
    let task_ids = &mut state.task_ids;
    let process = &mut record.process;
    let kind = match decision {
        Decision::Agree | Decision::Refuse => {
            let outcome = if decision == Decision::Agree {
                process.agree(remark, now_ms, &mut || task_ids.next());
                Outcome::Agree
            } else {
                process.refuse(remark, now_ms);
                Outcome::Refuse
            };
            instance.status = InstanceStatus::Completed;
            instance.result = Some(outcome);
            instance.finished_at_ms = Some(now_ms);
            "finish"
        }
        Decision::Terminate => {
            process.terminate(&instance.originator_user_id, remark, now_ms);
            instance.status = InstanceStatus::Terminated;
            instance.finished_at_ms = Some(now_ms);
            "terminate"
        }
        Decision::Delete => {
            process.delete(now_ms);
            instance.status = InstanceStatus::Deleted;
            instance.finished_at_ms.get_or_insert(now_ms);
            "delete"
        }
    };
    let data = event_data(record, kind, shared.stream.corp_id());
    let snapshot = record.instance.clone();
    drop(guard);
    tracing::debug!(instance_id, %decision, "sandbox: instance decided");
    shared.stream.publish(INSTANCE_CHANGE, data, now_ms);
    shared.changed();
    Ok(snapshot)
}

/// `data` of a `bpms_instance_change` event; `kind` is start, finish, terminate or delete.
pub(super) fn event_data(record: &InstanceRecord, kind: &str, corp_id: &str) -> Value {
    let instance = &record.instance;
    let mut data = json!({
        "processInstanceId": instance.instance_id,
        "processCode": instance.process_code,
        "corpId": corp_id,
        "eventType": INSTANCE_CHANGE,
        "type": kind,
        "title": record.title,
        "staffId": instance.originator_user_id,
        "businessId": record.business_id,
        "bizCategoryId": "",
        "businessType": "",
        "createTime": instance.created_at_ms,
        "url": format!(
            "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm?corpid={corp_id}&dd_share=false&showmenu=true&dd_progress=false&back=native&procInstId={}&taskId=&swfrom=isv&dinghash=approval&dtaction=os&dd_from=corp#approval",
            instance.instance_id
        ),
    });
    if let Some(object) = data.as_object_mut() {
        if kind == "finish"
            && let Some(result) = instance.result
        {
            object.insert("result".into(), json!(result.as_wire()));
        }
        if kind != "start"
            && let Some(finished) = instance.finished_at_ms
        {
            object.insert("finishTime".into(), json!(finished));
        }
    }
    data
}

/// How auto-decide ends the instance created `seq`-th (1-based): every third is refused,
/// the others agreed, so a run shows both outcomes the same way each time.
pub(super) fn auto_decision(seq: u64) -> Decision {
    if seq.is_multiple_of(3) {
        Decision::Refuse
    } else {
        Decision::Agree
    }
}

/// Decides queued instances when their time comes, in creation order (they all wait the
/// same time). Instances decided by hand meanwhile are left alone.
pub(super) fn auto_decider(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<AutoDecision>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = shared.closing.cancelled() => break,
                next = queue.recv() => next,
            };
            let Some((due, instance_id, decision)) = next else {
                break;
            };
            tokio::select! {
                () = shared.closing.cancelled() => break,
                () = tokio::time::sleep_until(due) => {}
            }
            if let Err(e) = decide(&shared, &instance_id, decision, AUTO_REMARK) {
                tracing::debug!("sandbox: auto-decide skipped: {e}");
            }
        }
    })
}
