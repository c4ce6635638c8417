//! What every call goes through: recording, the configured latency, injected faults, the
//! QPS limit, and killing the connection for dropped or lost responses.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::error::{self, Refusal};
use super::faults::{self, Fault};
use super::listener::ConnTag;
use super::records::{Endpoint, Received};
use super::state::Shared;
use super::wire;

/// JSON bodies larger than this are refused outright; real ones are a few KiB.
const MAX_JSON_BODY: usize = 8 * 1024 * 1024;

/// A fully received DingTalk API call.
pub(super) struct Call {
    pub(crate) path: String,
    pub(crate) query: BTreeMap<String, String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// An endpoint's synchronous logic: state changes happen under the lock, no awaits.
pub(super) type Work = fn(&Shared, &Call) -> Response;

/// An axum handler running `work` for `endpoint` through the common pipeline.
pub(super) fn handler(
    endpoint: Endpoint,
    work: Work,
) -> impl Fn(State<Arc<Shared>>, ConnectInfo<ConnTag>, Request) -> BoxFuture<'static, Response>
+ Clone
+ Send
+ Sync
+ 'static {
    move |State(shared), ConnectInfo(conn), request| {
        Box::pin(detached(async move {
            handle(&shared, &conn, endpoint, request, work).await
        }))
    }
}

/// Runs a call in its own task: hyper drops a handler whose client hung up, but a real
/// server finishes the work anyway (a client timeout during a slow create still creates).
pub(super) async fn detached(call: impl Future<Output = Response> + Send + 'static) -> Response {
    tokio::spawn(call).await.unwrap_or_else(|e| {
        tracing::debug!("sandbox: handler task failed: {e}");
        error::api(500, "systemError", "系统错误，请稍后重试")
    })
}

async fn handle(
    shared: &Shared,
    conn: &ConnTag,
    endpoint: Endpoint,
    request: Request,
    work: Work,
) -> Response {
    let (parts, body) = request.into_parts();
    let mut arrival = Arrival::begin(shared, endpoint, &parts);
    let body = match axum::body::to_bytes(body, MAX_JSON_BODY).await {
        Ok(body) => body,
        Err(e) => {
            tracing::debug!(%endpoint, "sandbox: unreadable body: {e}");
            let response = error::api(
                400,
                "invalidParameter",
                "request body is unreadable or too large",
            );
            return arrival.finish(shared, conn, response);
        }
    };
    arrival.received.body_len = body.len() as u64;
    if arrival.slot.is_some() {
        arrival.received.body = serde_json::from_slice(&body).ok();
    }

    let response = match arrival.gate(shared).await {
        Gate::Answer(response) => response,
        Gate::Drop => return arrival.drop_connection(shared, conn),
        Gate::Proceed => {
            let call = Call {
                path: parts.uri.path().to_owned(),
                query: arrival.received.query.clone(),
                headers: parts.headers,
                body,
            };
            work(shared, &call)
        }
    };
    arrival.finish(shared, conn, response)
}

/// Outcome of the fault and QPS checks.
pub(super) enum Gate {
    /// Do the real work.
    Proceed,
    /// Answer this instead of doing the work.
    Answer(Response),
    /// Close the connection without doing anything.
    Drop,
}

/// A call from arrival to answer; its slot in the request log is taken on arrival
/// so the log is in arrival order even when faults delay some calls.
pub(super) struct Arrival {
    /// Its place in the request log; `None` when the sandbox keeps no log.
    slot: Option<usize>,
    pub(crate) received: Received,
    fault: Option<Fault>,
}

impl Arrival {
    pub(super) fn begin(shared: &Shared, endpoint: Endpoint, parts: &Parts) -> Self {
        let mut state = shared.lock();
        let fault = state.take_fault(endpoint);
        let record = shared.options.record_requests;
        let received = Received {
            endpoint,
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(wire::decode_form).unwrap_or_default(),
            headers: if record {
                header_map(&parts.headers)
            } else {
                BTreeMap::new()
            },
            body: None,
            body_len: 0,
            body_md5: None,
            part_number: None,
            status: 0,
            fault: fault.as_ref().map(ToString::to_string),
        };
        let slot = record.then(|| {
            state.requests.push(received.clone());
            state.requests.len() - 1
        });
        drop(state);
        tracing::debug!(%endpoint, method = %parts.method, path = parts.uri.path(), ?fault, "sandbox: request");
        Self {
            slot,
            received,
            fault,
        }
    }

    /// Waits the configured latency, applies the injected fault, then the QPS limit (the
    /// latency and the limit are DingTalk's, so OSS PUTs have neither).
    pub(super) async fn gate(&self, shared: &Shared) -> Gate {
        let endpoint = self.received.endpoint;
        if endpoint != Endpoint::OssPut
            && let Some(latency) = &shared.options.latency
        {
            tokio::time::sleep(latency.sample()).await;
        }
        match &self.fault {
            Some(Fault::DropConnection) => return Gate::Drop,
            Some(Fault::Latency(delay)) => tokio::time::sleep(*delay).await,
            Some(fault) => {
                if let Some(response) = faults::answer(endpoint, fault) {
                    return Gate::Answer(response);
                }
            }
            None => {}
        }
        if let Some(limit) = shared.options.qps_limit
            && endpoint != Endpoint::OssPut
            && shared.lock().over_qps(endpoint, limit)
        {
            return Gate::Answer(faults::throttle(endpoint, false));
        }
        Gate::Proceed
    }

    /// Records the answer and sends it, unless the response is to be lost.
    pub(super) fn finish(
        mut self,
        shared: &Shared,
        conn: &ConnTag,
        response: Response,
    ) -> Response {
        self.received.status = response.status().as_u16();
        let lose = matches!(self.fault, Some(Fault::LoseResponse));
        tracing::debug!(endpoint = %self.received.endpoint, status = self.received.status, lose, "sandbox: answered");
        self.store(shared);
        if lose {
            conn.kill();
        }
        response
    }

    /// Records a dropped call and kills its connection before anything is written.
    pub(super) fn drop_connection(mut self, shared: &Shared, conn: &ConnTag) -> Response {
        self.received.status = 0;
        self.store(shared);
        conn.kill();
        // Never written: the connection refuses all I/O from here on.
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }

    fn store(self, shared: &Shared) {
        let Some(slot) = self.slot else {
            return;
        };
        let mut state = shared.lock();
        if let Some(record) = state.requests.get_mut(slot) {
            *record = self.received;
        }
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// The token from `x-acs-dingtalk-access-token`, or the gateway's refusal.
pub(super) fn require_token(shared: &Shared, call: &Call) -> Result<(), Refusal> {
    let token = call
        .headers
        .get("x-acs-dingtalk-access-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    match token {
        None => Err(error::api(
            401,
            "Unauthorized",
            "请求缺少访问凭证 x-acs-dingtalk-access-token",
        )
        .into()),
        Some(token) if shared.lock().token_valid(token) => Ok(()),
        Some(_) => Err(error::invalid_token().into()),
    }
}

/// Parses a JSON POST body into `T`, refusing other content types, with `code`
/// (`invalidParameter` for workflow, `paramError` for storage) on failure.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    call: &Call,
    code: &str,
) -> Result<T, Refusal> {
    if !wire::is_json(&call.headers) {
        return Err(error::api(400, code, "Content-Type must be application/json").into());
    }
    wire::parse(&call.body).map_err(|message| error::api(400, code, message).into())
}

/// Axum handler for paths the gateway does not know (not recorded: no endpoint).
pub(super) async fn unknown_path(method: Method, uri: axum::http::Uri, _body: Body) -> Response {
    tracing::debug!(%method, %uri, "sandbox: unknown path");
    error::not_found()
}
