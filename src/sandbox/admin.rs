//! Admin routes under `/sandbox/`, a prefix DingTalk does not use: decide instances, queue
//! faults and drive the Stream gateway's from outside the process (`sandbox decide`,
//! `sandbox fault`, curl). They need no token and are not recorded: they are not part of
//! DingTalk's API. They answer loopback clients only, even when the sandbox listens wider.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::decide;
use super::error::{self, Refusal};
use super::faults::{Fault, FaultSpecError};
use super::ids;
use super::listener::ConnTag;
use super::process::{DecideError, Decision};
use super::state::Shared;
use super::wire;

/// The admin routes, to merge into the API router.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sandbox/instances", get(instances))
        .route("/sandbox/instances/{id}/decide", post(decide_instance))
        .route("/sandbox/stream", get(stream))
        .route("/sandbox/stream/disconnect", post(disconnect))
        .route("/sandbox/stream/drop", post(drop_connections))
        .route("/sandbox/stream/duplicate-next", post(duplicate_next))
        .route("/sandbox/stream/delay", post(delay))
        .route(
            "/sandbox/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route_layer(middleware::from_fn(loopback_only))
}

/// Refuses admin calls from anywhere but this host: they reach into the sandbox's state.
async fn loopback_only(
    ConnectInfo(conn): ConnectInfo<ConnTag>,
    request: Request,
    next: Next,
) -> Response {
    if conn.peer().ip().is_loopback() {
        next.run(request).await
    } else {
        error::api(
            403,
            "Forbidden.AdminLoopbackOnly",
            "the sandbox's admin routes answer loopback clients only",
        )
    }
}

/// `{"action": "agree"|"refuse"|"terminate"|"delete", "remark": "…"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    action: String,
    remark: Option<String>,
}

/// An empty body reads as `{}`, so plain `curl -X POST` works.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, Refusal> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    wire::parse(bytes).map_err(|message| error::api(400, "invalidParameter", message).into())
}

/// `GET /sandbox/instances`
async fn instances(State(shared): State<Arc<Shared>>) -> Response {
    let state = shared.lock();
    let list: Vec<Value> = state
        .instances
        .iter()
        .map(|r| serde_json::to_value(&r.instance).unwrap_or(Value::Null))
        .collect();
    drop(state);
    error::ok(&json!({ "instances": list }))
}

/// `POST /sandbox/instances/{id}/decide`: 200 with the instance's new status, 404
/// `processInstanceNotExist`, 409 `alreadyDecided`, 400 `invalidParameter`.
async fn decide_instance(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let request: DecideBody = match body(&bytes) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let decision: Decision = match request.action.parse() {
        Ok(decision) => decision,
        Err(e) => return error::api(400, "invalidParameter", format!("action: {e}")),
    };
    let remark = request.remark.unwrap_or_default();
    match decide::decide(&shared, &id, decision, &remark) {
        Ok(instance) => {
            let mut answer = json!({
                "instanceId": instance.instance_id,
                "status": instance.status.as_wire(),
                "result": instance.result.map(|r| r.as_wire()).unwrap_or_default(),
            });
            if let (Some(finished), Some(object)) =
                (instance.finished_at_ms, answer.as_object_mut())
            {
                object.insert("finishTime".into(), json!(ids::iso_minute(finished)));
            }
            error::ok(&answer)
        }
        Err(e @ DecideError::NotFound(_)) => {
            error::api(404, "processInstanceNotExist", e.to_string())
        }
        Err(e @ DecideError::AlreadyDecided { .. }) => {
            error::api(409, "alreadyDecided", e.to_string())
        }
    }
}

/// `GET /sandbox/stream`: the endpoint, counters, events with their deliveries, pings.
async fn stream(State(shared): State<Arc<Shared>>) -> Response {
    let gateway = &shared.stream;
    error::ok(&json!({
        "endpoint": gateway.endpoint(),
        "stats": gateway.stats(),
        "events": gateway.events(),
        "pings": gateway.pings(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    reason: Option<String>,
}

/// `POST /sandbox/stream/disconnect {"reason"}`
async fn disconnect(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let request: DisconnectBody = match body(&bytes) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let reason = request.reason.unwrap_or_else(|| "sandbox admin".to_owned());
    error::ok(&json!({"connections": shared.stream.disconnect_all(&reason)}))
}

/// `POST /sandbox/stream/drop`
async fn drop_connections(State(shared): State<Arc<Shared>>) -> Response {
    error::ok(&json!({"connections": shared.stream.drop_all()}))
}

/// `POST /sandbox/stream/duplicate-next`
async fn duplicate_next(State(shared): State<Arc<Shared>>) -> Response {
    shared.stream.duplicate_next();
    error::ok(&json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayBody {
    ms: u64,
}

/// `POST /sandbox/stream/delay {"ms": N}`; 0 turns the delay off.
async fn delay(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let request: DelayBody = match body(&bytes) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    shared.stream.set_delay(Duration::from_millis(request.ms));
    error::ok(&json!({"delayMs": request.ms}))
}

/// `{"endpoint": "create_instance", "fault": "server_error(503)", "count": 2}`; the parts
/// of `--fault ENDPOINT:KIND[:COUNT]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    endpoint: String,
    fault: String,
    count: Option<u32>,
}

/// `POST /sandbox/faults`: queues the fault for the endpoint's next `count` calls (1 when
/// left out) after those already queued; 200 with what was queued and how many faults now
/// wait on that endpoint, 400 `invalidParameter` naming the bad part.
async fn add_fault(State(shared): State<Arc<Shared>>, bytes: Bytes) -> Response {
    let request: FaultBody = match body(&bytes) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let parsed = request
        .endpoint
        .parse()
        .map_err(FaultSpecError::from)
        .and_then(|endpoint| Ok((endpoint, request.fault.parse::<Fault>()?)));
    let (endpoint, fault) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return error::api(400, "invalidParameter", e.to_string()),
    };
    let count = request.count.unwrap_or(1);
    if count == 0 {
        return error::api(
            400,
            "invalidParameter",
            FaultSpecError::Count("0".into()).to_string(),
        );
    }
    let mut state = shared.lock();
    state.inject(endpoint, fault.clone(), count);
    let queued: u32 = state
        .pending_faults()
        .iter()
        .filter(|(e, _, _)| *e == endpoint)
        .map(|(_, _, n)| n)
        .sum();
    drop(state);
    tracing::info!(%endpoint, %fault, count, "sandbox: fault queued");
    error::ok(&json!({
        "endpoint": endpoint, "fault": fault.to_string(), "count": count, "queued": queued,
    }))
}

/// `GET /sandbox/faults`: the faults still waiting, per endpoint in the order they strike.
async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    let pending = shared.lock().pending_faults();
    let faults: Vec<Value> = pending
        .into_iter()
        .map(|(endpoint, fault, count)| {
            json!({"endpoint": endpoint, "fault": fault.to_string(), "count": count})
        })
        .collect();
    error::ok(&json!({ "faults": faults }))
}

/// `DELETE /sandbox/faults`: drops every queued fault.
async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    let cleared = shared.lock().clear_faults();
    error::ok(&json!({ "cleared": cleared }))
}
