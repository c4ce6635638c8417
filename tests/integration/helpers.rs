//! Shared set-up: a sandbox, a fresh database, a spool of attachments, and a running worker.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use approval_worker::approval::Approval;
use approval_worker::config::Config;
use approval_worker::dingtalk::{ClientSettings, DingTalk};
use approval_worker::oss::Oss;
use approval_worker::queue::{JobId, JobRow, NewJob, Queue, now_ms};
use approval_worker::sandbox::{Endpoint, Received, Sandbox, SandboxOptions};
use approval_worker::secret::Secret;
use approval_worker::worker::{Worker, WorkerSettings};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for a job to finish before failing.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// A sandbox, a queue in a temporary directory, and (once started) a worker.
pub struct Harness {
    pub sandbox: Sandbox,
    pub queue: Queue,
    pub config: Config,
    pub spool: PathBuf,
    /// Holds the temporary directory until the harness drops.
    _dir: tempfile::TempDir,
    worker: Option<(CancellationToken, JoinHandle<()>, Worker)>,
}

impl Harness {
    /// A harness with the default sandbox.
    pub async fn new() -> Harness {
        Harness::with_sandbox(SandboxOptions::default()).await
    }

    /// A harness with a customised sandbox.
    pub async fn with_sandbox(options: SandboxOptions) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).expect("spool dir");
        let sandbox = Sandbox::start(options.clone())
            .await
            .expect("sandbox starts");
        let mut config = Config::default();
        config.database.path = dir.path().join("queue.db");
        config.dingtalk.app_key = options.app_key.clone();
        config.dingtalk.agent_id = options.agent_id;
        config.dingtalk.api_base = sandbox.base_url();
        config.dingtalk.oapi_base = sandbox.base_url();
        config.dingtalk.rate_limit_per_sec = 0;
        config.upload.allowed_dirs = vec![spool.clone()];
        config.worker.poll_interval_ms = 20;
        config.worker.concurrency = 4;
        config.worker.backoff_base_secs = 1;
        config.worker.backoff_max_secs = 1;
        let queue = Queue::open(&config.database.path)
            .await
            .expect("queue opens");
        Harness {
            sandbox,
            queue,
            config,
            spool,
            _dir: dir,
            worker: None,
        }
    }

    /// Writes an attachment into the spool.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.spool.join(name);
        std::fs::write(&path, bytes).expect("write attachment");
        path
    }

    /// A valid payload attaching `files`.
    pub fn payload(&self, files: &[&Path]) -> Value {
        json!({
            "process_code": "PROC-TEST",
            "originator_user_id": "manager4220",
            "dept_id": -1,
            "form": [{"name": "报销事由", "value": "出差"}],
            "attachments": files.iter().map(|p| json!({"path": p})).collect::<Vec<_>>(),
        })
    }

    /// Enqueues a payload through the queue API.
    pub async fn enqueue(&self, payload: &Value) -> JobId {
        self.enqueue_job(NewJob {
            payload: payload.to_string(),
            ..NewJob::default()
        })
        .await
    }

    /// Enqueues a job through the queue API.
    pub async fn enqueue_job(&self, job: NewJob) -> JobId {
        self.queue
            .enqueue(&job, now_ms())
            .await
            .expect("enqueue")
            .id
    }

    /// The DingTalk client the worker uses, built from the harness config.
    pub fn dingtalk(&self) -> DingTalk {
        DingTalk::new(ClientSettings {
            api_base: self.config.dingtalk.api_base.clone(),
            oapi_base: self.config.dingtalk.oapi_base.clone(),
            app_key: self.config.dingtalk.app_key.clone(),
            app_secret: Secret::new(SandboxOptions::default().app_secret),
            agent_id: self.config.dingtalk.agent_id,
            rate_limit_per_sec: self.config.dingtalk.rate_limit_per_sec,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        })
        .expect("client")
    }

    /// A worker over this harness's queue and sandbox (not started).
    pub fn worker(&self) -> Worker {
        let oss = Oss::new(Duration::from_secs(2), Duration::from_secs(5)).expect("oss client");
        Worker::new(
            self.queue.clone(),
            Approval::new(self.dingtalk(), oss),
            WorkerSettings::from_config(&self.config),
        )
    }

    /// Starts a worker in the background.
    pub fn start(&mut self) -> Worker {
        let worker = self.worker();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn({
            let worker = worker.clone();
            let shutdown = shutdown.clone();
            async move {
                worker
                    .run(shutdown, CancellationToken::new())
                    .await
                    .expect("worker runs");
            }
        });
        self.worker = Some((shutdown, handle, worker.clone()));
        worker
    }

    /// Stops the background worker and waits for it.
    pub async fn stop(&mut self) {
        if let Some((shutdown, handle, _)) = self.worker.take() {
            shutdown.cancel();
            handle.await.expect("worker task");
        }
    }

    /// Waits until the job is succeeded, failed or cancelled, and returns its row.
    pub async fn finished(&self, id: JobId) -> JobRow {
        let deadline = Instant::now() + FINISH_TIMEOUT;
        loop {
            let job = self.queue.get(id).await.expect("job exists");
            if matches!(job.status.as_str(), "succeeded" | "failed" | "cancelled") {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} unfinished: {job:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Requests the sandbox received for one endpoint.
    pub fn received(&self, endpoint: Endpoint) -> Vec<Received> {
        self.sandbox
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == endpoint)
            .collect()
    }
}

/// The `result` JSON of a finished job.
pub fn result_of(job: &JobRow) -> Value {
    serde_json::from_str(job.result.as_deref().expect("job has a result")).expect("result is JSON")
}

/// Deterministic test bytes of a given size.
pub fn bytes(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Hex MD5 of bytes.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}
