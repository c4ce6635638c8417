//! A DingTalk-compatible HTTP server on loopback (the handle, its options and the router),
//! for the `demo` command and the tests.
//!
//! It behaves like an outside server: strict request validation with DingTalk's own error
//! shapes, a directory of the users, departments and templates that exist (anything else is
//! refused as DingTalk refuses it), simple and multipart uploads to an OSS endpoint that
//! checks header signatures, a QPS limit, latency, token and ticket expiry, and faults
//! injected per endpoint. It records every request so tests can assert on what the client
//! actually sent. Instances are approval processes that are decided by hand (a method, an
//! admin route) or automatically, and report their outcome through GetProcessInstance and a
//! Stream mode gateway on a second port. It depends on nothing else in this crate.

mod admin;
mod auth;
mod decide;
mod directory;
mod error;
mod faults;
mod form;
mod ids;
mod latency;
mod listener;
mod multipart;
mod oss;
mod pipeline;
mod process;
mod records;
mod state;
mod storage;
mod stream;
mod wire;
mod workflow;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use directory::{Directory, DirectoryError};
pub use faults::{Fault, FaultSpec, FaultSpecError};
pub use latency::Latency;
pub use process::{DecideError, Decision, InstanceStatus, Outcome, UnknownDecision};
pub use records::{Endpoint, Instance, PartPut, Received, StoredFile, UnknownEndpoint};
pub use stream::{AckStatus, StreamDelivery, StreamEvent, StreamOptions, StreamPing, StreamStats};

use listener::{ConnTag, KillableListener};
use pipeline::handler;
use state::Shared;

/// AppKey (Client ID) the sandbox accepts by default.
pub(crate) const DEFAULT_APP_KEY: &str = "dingsandboxkey";
/// AppSecret the sandbox accepts by default.
pub(crate) const DEFAULT_APP_SECRET: &str = "sandbox-secret";
/// AgentId the sandbox expects in `agentId` / `microappAgentId` by default.
pub(crate) const DEFAULT_AGENT_ID: i64 = 3_012_345_678;
/// spaceId of the approval attachment space by default.
pub const DEFAULT_SPACE_ID: i64 = 3_996_960_664;
/// Who approves an instance created without `approvers` (the template's one approver).
pub const DEFAULT_APPROVER: &str = "manager0001";
/// The organisation's corpId, as Stream events carry it.
pub const DEFAULT_CORP_ID: &str = "ding5andb0x0c0rp1d";

/// How long an orderly shutdown waits for in-flight requests before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// AppKey (Client ID) the sandbox accepts.
    pub app_key: String,
    /// AppSecret the sandbox accepts.
    pub app_secret: String,
    /// The app's AgentId; requests must carry it as `agentId` / `microappAgentId`.
    pub agent_id: i64,
    /// The approval attachment space.
    pub space_id: i64,
    /// The organisation: users, departments and templates; unknown ones are refused with
    /// DingTalk's errors.
    pub directory: Directory,
    /// How long every DingTalk API call takes to answer (OSS PUTs excepted: see
    /// `oss_bytes_per_sec`); `None` = at once.
    pub latency: Option<Latency>,
    /// Faults queued before the first call is accepted (as [`Sandbox::inject`] would).
    pub faults: Vec<FaultSpec>,
    /// Access token lifetime.
    pub token_ttl: Duration,
    /// Upload ticket lifetime (`expirationSeconds`).
    pub ticket_ttl: Duration,
    /// Upload grant lifetime after spaces/infos/query.
    pub grant_ttl: Duration,
    /// Calls per second allowed per DingTalk API; `None` = unlimited.
    pub qps_limit: Option<u32>,
    /// How fast OSS takes an upload's bytes (each PUT on its own), as a slow link to OSS
    /// would; `None` = as fast as they come.
    pub oss_bytes_per_sec: Option<u64>,
    /// Whether every request is kept for [`Sandbox::requests`]. Building a record (headers,
    /// body parsed as JSON) costs more than some calls' own work, so the benchmark's sandbox
    /// child, which never reads them, turns it off; DingTalk keeps no such log either.
    pub record_requests: bool,
    /// The approver of instances created without `approvers` (the templates' own flow);
    /// should be a user of `directory` (the built-in one has [`DEFAULT_APPROVER`]).
    pub default_approver: String,
    /// The organisation's corpId (`eventCorpId`, `corpId` in Stream events).
    pub corp_id: String,
    /// Decide every instance this long after its creation: every third one created is
    /// refused, the others agreed (see [`Sandbox::decide`] for the effects). `None`: they
    /// stay running until decided by hand.
    pub auto_decide_after: Option<Duration>,
    /// The Stream mode gateway.
    pub stream: StreamOptions,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            app_key: DEFAULT_APP_KEY.to_owned(),
            app_secret: DEFAULT_APP_SECRET.to_owned(),
            agent_id: DEFAULT_AGENT_ID,
            space_id: DEFAULT_SPACE_ID,
            directory: Directory::builtin(),
            latency: None,
            faults: Vec::new(),
            token_ttl: Duration::from_secs(7200),
            ticket_ttl: Duration::from_secs(900),
            grant_ttl: Duration::from_secs(600),
            qps_limit: None,
            oss_bytes_per_sec: None,
            record_requests: true,
            default_approver: DEFAULT_APPROVER.to_owned(),
            corp_id: DEFAULT_CORP_ID.to_owned(),
            auto_decide_after: None,
            stream: StreamOptions::default(),
        }
    }
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The Stream listener, the pump and the auto-decider.
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Binds `options.bind` (the API) and `options.stream.bind` (the Stream endpoint) and
    /// serves in background tasks.
    pub async fn start(options: SandboxOptions) -> std::io::Result<Sandbox> {
        let tcp = listener::listen(options.bind, options.oss_bytes_per_sec.is_some())?;
        let addr = tcp.local_addr()?;
        // A wildcard bind is reachable through loopback; the URL must be one clients can dial.
        let url_addr = if addr.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        } else {
            addr
        };
        let (stream_tcp, stream_endpoint) = stream::bind(&options.stream).await?;
        let (auto_tx, auto_rx) = match options.auto_decide_after {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared::new(
            options,
            format!("http://{url_addr}"),
            stream_endpoint,
            auto_tx,
        ));
        {
            let mut state = shared.lock();
            for spec in &shared.options.faults {
                state.inject(spec.endpoint, spec.fault.clone(), spec.count);
            }
        }
        let mut background = vec![
            stream::serve(Arc::clone(&shared), stream_tcp),
            stream::pump(Arc::clone(&shared)),
        ];
        if let Some(queue) = auto_rx {
            background.push(decide::auto_decider(Arc::clone(&shared), queue));
        }
        let app = router(Arc::clone(&shared)).into_make_service_with_connect_info::<ConnTag>();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = axum::serve(KillableListener::new(tcp), app).with_graceful_shutdown(async {
            // A dropped sender means the handle is gone: stop as well.
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::debug!("sandbox: server ended with {e}");
            }
        });
        tracing::debug!(%addr, "sandbox: listening");
        Ok(Sandbox {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
            background,
        })
    }

    /// `http://127.0.0.1:PORT`; serves both the api and the oapi paths, and OSS under `/oss/`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The options the sandbox runs with.
    #[cfg(test)]
    pub(crate) fn options(&self) -> &SandboxOptions {
        &self.shared.options
    }

    /// Every request received so far, in arrival order, including refused and faulted ones;
    /// none when the sandbox was started without `record_requests`.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().requests.clone()
    }

    /// Approval instances created so far.
    pub fn instances(&self) -> Vec<Instance> {
        let state = self.shared.lock();
        state.instances.iter().map(|r| r.instance.clone()).collect()
    }

    /// Adds `count` running instances by `originator` without the calls that create one
    /// (an upload each), and returns their ids: for the benchmark, which reads thousands of
    /// pending instances back. No Stream event announces them.
    pub(crate) fn seed_running(&self, count: usize, originator: &str) -> Vec<String> {
        workflow::seed_running(&self.shared, count, originator)
    }

    /// Files committed so far.
    pub fn files(&self) -> Vec<StoredFile> {
        let state = self.shared.lock();
        state.files.iter().map(|f| f.file.clone()).collect()
    }

    /// The bytes of a committed file (a multipart upload's parts assembled); `None` when
    /// unknown or larger than 64 MiB (only length and MD5 are kept for those).
    #[cfg(test)]
    pub(crate) fn file_content(&self, file_id: &str) -> Option<bytes::Bytes> {
        let state = self.shared.lock();
        state.files.by_id(file_id).and_then(|f| f.content.clone())
    }

    /// Every PUT of a multipart upload's part received so far, in arrival order, refused and
    /// faulted ones included (their `status` tells); none when the sandbox was started
    /// without `record_requests`. A part PUT twice shows twice.
    pub fn part_puts(&self) -> Vec<PartPut> {
        multipart::part_puts(&self.shared.lock())
    }

    /// The next `times` calls to `endpoint` suffer `fault` (queued after earlier injections).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        self.shared.lock().inject(endpoint, fault, times);
    }

    /// Moves the sandbox's clock ahead by `by`: tokens, grants and upload tickets expire and
    /// QPS windows pass as if that much time had gone by, without a test waiting for it.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.lock().advance_clock(by);
    }

    /// Decides `instance_id` with an empty remark; see [`Sandbox::decide_with_remark`].
    pub fn decide(&self, instance_id: &str, decision: Decision) -> Result<Instance, DecideError> {
        self.decide_with_remark(instance_id, decision, "")
    }

    /// Decides a running instance, as its approvers or originator would, and publishes the
    /// Stream event (`finish` with `result`, `terminate`, `delete`); returns the instance as
    /// it now is. Agree: every approver node agrees in turn (tasks `COMPLETED`/`AGREE`, an
    /// `EXECUTE_TASK_NORMAL` record with result `AGREE` and `remark` each); status
    /// `COMPLETED`, result `agree`. Refuse: the first running approver refuses, other tasks
    /// are `CANCELED`; status `COMPLETED`, result `refuse`. Terminate: tasks `CANCELED`, a
    /// `TERMINATE_PROCESS_INSTANCE` record by the originator; status `TERMINATED`, no
    /// result. Delete: GetProcessInstance answers `processInstanceNotExist` from now on;
    /// allowed on finished instances too. Anything else on a decided instance is refused.
    pub fn decide_with_remark(
        &self,
        instance_id: &str,
        decision: Decision,
        remark: &str,
    ) -> Result<Instance, DecideError> {
        decide::decide(&self.shared, instance_id, decision, remark)
    }

    /// Waits until `condition` holds, re-checking after every change to instances or the
    /// Stream gateway; false if `timeout` passes first.
    pub async fn wait_for(&self, timeout: Duration, condition: impl Fn(&Sandbox) -> bool) -> bool {
        let mut changes = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.mark_unchanged();
            if condition(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return condition(self),
            }
        }
    }

    /// Every issued access token becomes invalid now.
    pub fn expire_tokens(&self) {
        self.shared.lock().expire_tokens();
    }

    /// Every upload ticket and multipart part URL issued so far expires now.
    pub fn expire_tickets(&self) {
        self.shared.lock().expire_tickets();
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds), then returns.
    pub(crate) async fn shutdown(mut self) {
        self.shared.closing.cancel();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for mut task in self.background.drain(..) {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Graceful stop in the background: Drop cannot await.
        self.shared.closing.cancel();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// All routes: api.dingtalk.com and oapi.dingtalk.com paths, the OSS upload path, and the
/// admin routes under `/sandbox/`.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/v1.0/oauth2/accessToken",
            post(handler(Endpoint::Token, auth::token)),
        )
        .route(
            "/gettoken",
            get(handler(Endpoint::LegacyToken, auth::legacy_token)),
        )
        .route(
            "/topapi/v2/user/get",
            post(handler(Endpoint::UserGet, auth::user_get)),
        )
        .route(
            "/v1.0/workflow/processInstances/spaces/infos/query",
            post(handler(Endpoint::Space, workflow::space)),
        )
        .route(
            "/v1.0/storage/spaces/{space_id}/files/uploadInfos/query",
            post(handler(Endpoint::UploadInfo, storage::upload_info)),
        )
        .route(
            "/v1.0/storage/spaces/{space_id}/files/multiPartUploadInfos/init",
            post(handler(Endpoint::MultipartInit, multipart::init)),
        )
        .route(
            "/v1.0/storage/spaces/files/multiPartUploadInfos/query",
            post(handler(Endpoint::MultipartQuery, multipart::query)),
        )
        .route("/oss/{*object_key}", put(oss::put))
        .route(
            "/v1.0/storage/spaces/{space_id}/files/commit",
            post(handler(Endpoint::Commit, storage::commit)),
        )
        .route(
            "/v1.0/workflow/processInstances",
            post(handler(Endpoint::CreateInstance, workflow::create))
                .get(handler(Endpoint::GetInstance, workflow::get)),
        )
        .route(
            "/v1.0/workflow/processes/instanceIds/query",
            post(handler(Endpoint::ListInstanceIds, workflow::list_ids)),
        )
        .route(
            "/v1.0/workflow/forms/schemas/processCodes",
            get(handler(Endpoint::FormSchema, form::schema)),
        )
        .route(
            "/v1.0/gateway/connections/open",
            post(handler(Endpoint::OpenConnection, stream::open)),
        )
        .merge(admin::routes())
        .fallback(pipeline::unknown_path)
        .method_not_allowed_fallback(pipeline::unknown_path)
        .with_state(shared)
}
