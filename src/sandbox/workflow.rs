//! Workflow endpoints: approval space grant, start / read an instance, list instance ids.

use axum::response::Response;
use serde_json::{Value, json};

use super::auth::note_union_id;
use super::decide::{self, INSTANCE_CHANGE};
use super::directory::Directory;
use super::error;
use super::form;
use super::ids;
use super::pipeline::{self, Call};
use super::process::{InstanceStatus, Node, Process};
use super::records::Instance;
use super::state::{Component, InstanceRecord, Shared};
use super::wire::{CreateInstanceRequest, ListIdsRequest, SpaceRequest};

const INSTANCE_STATUSES: [&str; 3] = ["RUNNING", "TERMINATED", "COMPLETED"];

/// `POST /v1.0/workflow/processInstances/spaces/infos/query`
pub(super) fn space(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let request: SpaceRequest = match pipeline::json_body(call, "invalidParameter") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    match request.agent_id {
        None => return error::api(400, "invalidAgentId", "agentId must not be empty"),
        Some(id) if id != shared.options.agent_id => {
            return error::api(
                400,
                "invalidAgentId",
                format!("agentId {id} is not this app's AgentId"),
            );
        }
        Some(_) => {}
    }
    if request.user_id.is_empty() {
        return error::api(400, "invalidUserId", "userId must not be empty");
    }
    let Some(user) = shared.options.directory.user(&request.user_id) else {
        note_union_id(shared, "userId", &request.user_id);
        return error::api(
            400,
            "userNotExist",
            format!("用户不存在: {}", request.user_id),
        );
    };
    shared
        .lock()
        .grant_upload(user.union_id.clone(), shared.options.grant_ttl);
    error::ok(&json!({"result": {"spaceId": shared.options.space_id}, "success": true}))
}

/// `POST /v1.0/workflow/processInstances`
pub(super) fn create(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let request: CreateInstanceRequest = match pipeline::json_body(call, "invalidParameter") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if let Some(id) = request.microapp_agent_id
        && id != shared.options.agent_id
    {
        return error::api(
            400,
            "invalidAgentId",
            format!("microappAgentId {id} is not this app's AgentId"),
        );
    }
    let directory = &shared.options.directory;
    let Some(template) = directory.template(&request.process_code) else {
        return error::api(
            400,
            "processCodeError",
            format!("审批模板不存在: {}", request.process_code),
        );
    };
    if let Err(message) = check_people(&request, directory) {
        note_union_id(shared, "originatorUserId", &request.originator_user_id);
        return error::api(400, "processInstanceInvalidParameter", message);
    }
    if let Err(message) = check_routing(&request) {
        return error::api(400, "invalidParameter", message);
    }
    let mut state = shared.lock();
    if let Err(response) = form::validate(
        shared,
        template,
        &state.files,
        &request.form_component_values,
    ) {
        return *response;
    }

    let created_at_ms = ids::now_ms();
    let seq = state.next_instance_seq();
    let instance_id = ids::uuid_like();
    let components = request
        .form_component_values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            // What the template says the component is; the request's word for unknown labels.
            let kind = template
                .field(&v.name)
                .map(|f| f.component.clone())
                .or_else(|| v.component_type.clone())
                .unwrap_or_else(|| "TextField".to_owned());
            Component {
                id: v.id.clone().unwrap_or_else(|| format!("{kind}_{i}")),
                name: v.name.clone(),
                value: v.value.clone(),
                component_type: kind,
                biz_alias: v.biz_alias.clone(),
                ext_value: v.ext_value.clone(),
            }
        })
        .collect();
    // The request's approvers replace the template's flow, whose one node is the default
    // approver.
    let nodes: Vec<Node> = match request.approvers.as_deref() {
        Some(approvers) if !approvers.is_empty() => approvers
            .iter()
            .map(|a| Node::new(&a.action_type, a.user_ids.clone()))
            .collect(),
        _ => vec![Node::new(
            "NONE",
            vec![shared.options.default_approver.clone()],
        )],
    };
    let process = Process::start(
        nodes,
        &request.originator_user_id,
        created_at_ms,
        &mut || state.task_ids.next(),
    );
    let record = InstanceRecord {
        instance: Instance {
            instance_id: instance_id.clone(),
            process_code: request.process_code.clone(),
            originator_user_id: request.originator_user_id.clone(),
            dept_id: request.dept_id,
            form: request
                .form_component_values
                .iter()
                .map(|v| (v.name.clone(), v.value.clone()))
                .collect(),
            approvers: serde_json::to_value(&request.approvers).unwrap_or(Value::Null),
            cc_list: request.cc_list.clone().unwrap_or_default(),
            created_at_ms,
            status: InstanceStatus::Running,
            result: None,
            finished_at_ms: None,
        },
        components,
        title: format!(
            "{}提交的审批",
            display_name(directory, &request.originator_user_id)
        ),
        business_id: ids::business_id(created_at_ms, seq),
        process,
    };
    let event = shared
        .stream
        .publishes()
        .then(|| decide::event_data(&record, "start", shared.stream.corp_id()));
    state.instances.push(record);
    drop(state);
    if let Some(event) = event {
        shared.stream.publish(INSTANCE_CHANGE, event, created_at_ms);
    }
    if let (Some(queue), Some(after)) = (&shared.auto_decide, shared.options.auto_decide_after) {
        let due = tokio::time::Instant::now() + after;
        // Fails only once the sandbox is stopping, when nothing is decided any more.
        let _ = queue.send((due, instance_id.clone(), decide::auto_decision(seq)));
    }
    shared.changed();
    error::ok(&json!({"instanceId": instance_id}))
}

/// Adds `count` running instances by `originator`, each waiting on the default approver, as
/// if created through the API without a form, and returns their ids. For the benchmark,
/// which reads thousands of pending instances back: creating each through the API takes an
/// upload first. They publish no Stream event (they were created before anyone listened)
/// and are never decided automatically.
pub(super) fn seed_running(shared: &Shared, count: usize, originator: &str) -> Vec<String> {
    let mut state = shared.lock();
    let mut created = Vec::with_capacity(count);
    for _ in 0..count {
        let created_at_ms = ids::now_ms();
        let seq = state.next_instance_seq();
        let instance_id = ids::uuid_like();
        let nodes = vec![Node::new(
            "NONE",
            vec![shared.options.default_approver.clone()],
        )];
        let process = Process::start(nodes, originator, created_at_ms, &mut || {
            state.task_ids.next()
        });
        state.instances.push(InstanceRecord {
            instance: Instance {
                instance_id: instance_id.clone(),
                process_code: "PROC-BENCH".to_owned(),
                originator_user_id: originator.to_owned(),
                dept_id: Some(-1),
                form: Vec::new(),
                approvers: Value::Null,
                cc_list: Vec::new(),
                created_at_ms,
                status: InstanceStatus::Running,
                result: None,
                finished_at_ms: None,
            },
            components: Vec::new(),
            title: format!(
                "{}提交的审批",
                display_name(&shared.options.directory, originator)
            ),
            business_id: ids::business_id(created_at_ms, seq),
            process,
        });
        created.push(instance_id);
    }
    drop(state);
    shared.changed();
    created
}

/// The name the directory gives a user; the id itself for one it does not know.
fn display_name(directory: &Directory, user_id: &str) -> String {
    directory
        .user(user_id)
        .map_or_else(|| user_id.to_owned(), |u| u.name.clone())
}

/// Originator, approvers, cc and actioners must be people of the org, and the originator a
/// member of the department the instance is started in (`-1`: the root).
fn check_people(request: &CreateInstanceRequest, directory: &Directory) -> Result<(), String> {
    let Some(originator) = directory.user(&request.originator_user_id) else {
        return Err(format!("发起人不存在: {}", request.originator_user_id));
    };
    let has_approvers = request.approvers.as_ref().is_some_and(|a| !a.is_empty());
    match request.dept_id {
        None if !has_approvers => {
            return Err("deptId is required when approvers is not given".into());
        }
        Some(id) if !originator.in_department(id) => {
            return Err(format!("发起人 {} 不在部门 {id} 中", originator.user_id));
        }
        _ => {}
    }
    let approvers = request.approvers.iter().flatten().flat_map(|a| &a.user_ids);
    let cc = request.cc_list.iter().flatten();
    let actioners = request
        .target_select_actioners
        .iter()
        .flatten()
        .flat_map(|t| &t.actioner_user_ids);
    match approvers
        .chain(cc)
        .chain(actioners)
        .find(|user| directory.user(user).is_none())
    {
        Some(user) => Err(format!("用户不存在: {user}")),
        None => Ok(()),
    }
}

/// Shape limits on approvers, cc and actioners.
fn check_routing(request: &CreateInstanceRequest) -> Result<(), String> {
    if let Some(approvers) = &request.approvers {
        if approvers.len() > 20 {
            return Err("approvers allows at most 20 nodes".into());
        }
        for approver in approvers {
            if !["AND", "OR", "NONE"].contains(&approver.action_type.as_str()) {
                return Err(format!(
                    "approvers.actionType {} must be AND, OR or NONE",
                    approver.action_type
                ));
            }
            if approver.user_ids.is_empty()
                || (approver.action_type == "NONE" && approver.user_ids.len() > 1)
            {
                return Err(
                    "approvers.userIds must hold one user for NONE, one or more for AND/OR".into(),
                );
            }
        }
    }
    if request.cc_list.as_ref().is_some_and(|cc| cc.len() > 50) {
        return Err("ccList allows at most 50 users".into());
    }
    if let Some(position) = &request.cc_position
        && !["START", "FINISH", "START_FINISH"].contains(&position.as_str())
    {
        return Err(format!(
            "ccPosition {position} must be START, FINISH or START_FINISH"
        ));
    }
    if let Some(actioners) = &request.target_select_actioners {
        if actioners.len() > 20 {
            return Err("targetSelectActioners allows at most 20 items".into());
        }
        if actioners.iter().any(|t| t.actioner_key.is_empty()) {
            return Err("targetSelectActioners.actionerKey must not be empty".into());
        }
    }
    Ok(())
}

/// `GET /v1.0/workflow/processInstances?processInstanceId=ID`
pub(super) fn get(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let Some(id) = call
        .query
        .get("processInstanceId")
        .filter(|id| !id.is_empty())
    else {
        return error::api(400, "invalidParameter", "processInstanceId is required");
    };
    let state = shared.lock();
    let Some(record) = state
        .instances
        .iter()
        .find(|r| &r.instance.instance_id == id && r.instance.status != InstanceStatus::Deleted)
    else {
        return error::api(
            400,
            "processInstanceNotExist",
            format!("审批实例不存在: {id}"),
        );
    };
    let instance = &record.instance;
    let components: Vec<Value> = record.components.iter().map(component_json).collect();
    let approvers: Vec<&String> = request_approvers(&instance.approvers);
    let mut body = json!({
        "result": {
            "title": record.title,
            "createTime": ids::iso_minute(instance.created_at_ms),
            "originatorUserId": instance.originator_user_id,
            "originatorDeptId": instance.dept_id.unwrap_or(-1).to_string(),
            "originatorDeptName": shared
                .options
                .directory
                .department(instance.dept_id.unwrap_or(-1))
                .map_or("", |d| d.name.as_str()),
            "status": instance.status.as_wire(),
            "result": instance.result.map(|r| r.as_wire()).unwrap_or_default(),
            "businessId": record.business_id,
            "approverUserIds": approvers,
            "ccUserIds": instance.cc_list,
            "bizAction": "NONE",
            "attachedProcessInstanceIds": [],
            "formComponentValues": components,
            "operationRecords": record.process.records_json(),
            "tasks": record.process.tasks_json(&instance.instance_id, &record.business_id),
        },
        "success": "true",
    });
    if let (Some(finished), Some(result)) =
        (instance.finished_at_ms, body["result"].as_object_mut())
    {
        result.insert("finishTime".into(), json!(ids::iso_minute(finished)));
    }
    drop(state);
    error::ok(&body)
}

fn request_approvers(approvers: &Value) -> Vec<&String> {
    approvers
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("userIds")?.as_array())
        .flatten()
        .filter_map(|u| match u {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn component_json(component: &Component) -> Value {
    let mut value = json!({
        "id": component.id,
        "name": component.name,
        "value": component.value,
        "componentType": component.component_type,
    });
    if let Some(object) = value.as_object_mut() {
        if let Some(alias) = &component.biz_alias {
            object.insert("bizAlias".into(), json!(alias));
        }
        if let Some(ext) = &component.ext_value {
            object.insert("extValue".into(), json!(ext));
        }
    }
    value
}

/// `POST /v1.0/workflow/processes/instanceIds/query`
pub(super) fn list_ids(shared: &Shared, call: &Call) -> Response {
    if let Err(response) = pipeline::require_token(shared, call) {
        return *response;
    }
    let request: ListIdsRequest = match pipeline::json_body(call, "invalidParameter") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if !(1..=20).contains(&request.max_results) {
        return error::api(
            400,
            "invalidParameter",
            "maxResults must be between 1 and 20",
        );
    }
    if request.next_token < 0 {
        return error::api(400, "invalidParameter", "nextToken must not be negative");
    }
    if request.user_ids.as_ref().is_some_and(|u| u.len() > 10) {
        return error::api(400, "invalidParameter", "userIds allows at most 10 users");
    }
    let statuses = request.statuses.clone().unwrap_or_default();
    if let Some(bad) = statuses
        .iter()
        .find(|s| !INSTANCE_STATUSES.contains(&s.as_str()))
    {
        return error::api(400, "invalidParameter", format!("unknown status {bad}"));
    }
    let state = shared.lock();
    let matching: Vec<String> = state
        .instances
        .iter()
        .map(|r| &r.instance)
        .filter(|i| i.status != InstanceStatus::Deleted && i.process_code == request.process_code)
        .filter(|i| statuses.is_empty() || statuses.iter().any(|s| s == i.status.as_wire()))
        .filter(|i| i.created_at_ms >= request.start_time)
        .filter(|i| request.end_time.is_none_or(|end| i.created_at_ms <= end))
        .filter(|i| {
            request
                .user_ids
                .as_ref()
                .is_none_or(|users| users.contains(&i.originator_user_id))
        })
        .map(|i| i.instance_id.clone())
        .collect();
    drop(state);
    let offset = usize::try_from(request.next_token).unwrap_or(usize::MAX);
    let limit = usize::try_from(request.max_results).unwrap_or(20);
    let page: Vec<&String> = matching.iter().skip(offset).take(limit).collect();
    let mut result = json!({"list": page});
    let next = offset.saturating_add(limit);
    if next < matching.len()
        && let Some(object) = result.as_object_mut()
    {
        object.insert("nextToken".into(), json!(next.to_string()));
    }
    error::ok(&json!({"result": result, "success": true}))
}
