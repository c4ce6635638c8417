//! Shared set-up: a sandbox, a fresh database, a spool of attachments, and a running worker.

pub mod browser;
pub mod cluster;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use approval_worker::approval::Approval;
use approval_worker::config::Config;
use approval_worker::dingtalk::{ClientSettings, DingTalk};
use approval_worker::oss::Oss;
use approval_worker::queue::{EventRow, JobId, JobRow, NewJob, Queue, now_ms};
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

    /// A harness whose queue is a PostgreSQL database of its own, or `None` where
    /// PostgreSQL is missing and not required.
    pub async fn on_postgres() -> Option<Harness> {
        Harness::on_postgres_with(SandboxOptions::default()).await
    }

    /// [`Harness::on_postgres`] with a customised sandbox.
    pub async fn on_postgres_with(options: SandboxOptions) -> Option<Harness> {
        let cluster = crate::helpers::cluster::Cluster::shared()?;
        Some(Harness::on_postgres_in(cluster, options).await)
    }

    /// A harness whose queue is a new database in `cluster`.
    pub async fn on_postgres_in(
        cluster: &crate::helpers::cluster::Cluster,
        options: SandboxOptions,
    ) -> Harness {
        let database = crate::helpers::cluster::Database::create_in(cluster);
        let mut harness = Harness::with_sandbox(options).await;
        harness.config.database.url = Some(database.url.clone());
        harness.queue = database.queue().await;
        harness
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
        config.worker.concurrency = Some(4);
        config.worker.backoff_base_secs = 1;
        config.worker.backoff_max_secs = 1;
        // Tests that are not about outcomes see only the calls of the submit: no Stream, and
        // no read of an instance within their run (the first comes a minute after a create).
        config.outcome.stream = false;
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
        self.client(Duration::from_secs(5))
    }

    /// A DingTalk client for the harness's sandbox with this request timeout.
    fn client(&self, request_timeout: Duration) -> DingTalk {
        DingTalk::new(ClientSettings {
            api_base: self.config.dingtalk.api_base.clone(),
            oapi_base: self.config.dingtalk.oapi_base.clone(),
            app_key: self.config.dingtalk.app_key.clone(),
            app_secret: Secret::new(SandboxOptions::default().app_secret),
            agent_id: self.config.dingtalk.agent_id,
            rate_limit_per_sec: self.config.dingtalk.rate_limit_per_sec,
            connect_timeout: Duration::from_secs(2),
            request_timeout,
        })
        .expect("client")
    }

    /// A worker over this harness's queue and sandbox (not started).
    pub fn worker(&self) -> Worker {
        let oss = Oss::new(Duration::from_secs(2), Duration::from_secs(5)).expect("oss client");
        let dingtalk = self.dingtalk();
        Worker::new(
            self.queue.clone(),
            Approval::new(dingtalk.clone(), oss),
            dingtalk,
            WorkerSettings::from_config(&self.config),
        )
    }

    /// Starts a worker in the background.
    pub fn start(&mut self) -> Worker {
        self.run_in_background(self.worker())
    }

    /// Starts a worker with `settings` in the background.
    pub fn start_with_settings(&mut self, settings: WorkerSettings) -> Worker {
        let oss = Oss::new(Duration::from_secs(2), Duration::from_secs(5)).expect("oss client");
        let dingtalk = self.dingtalk();
        let worker = Worker::new(
            self.queue.clone(),
            Approval::new(dingtalk.clone(), oss),
            dingtalk,
            settings,
        );
        self.run_in_background(worker)
    }

    /// Runs `worker` in the background until [`Harness::stop`].
    fn run_in_background(&mut self, worker: Worker) -> Worker {
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

/// A SQLite queue in a temporary directory of its own.
pub async fn fresh_sqlite_queue() -> (tempfile::TempDir, Queue) {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&dir.path().join("q.db")).await.unwrap();
    (dir, queue)
}

/// The kinds of a job's stored events, oldest first.
pub async fn event_kinds(queue: &Queue, id: JobId) -> Vec<String> {
    queue
        .events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
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

/// Timings for reliability tests: millisecond backoffs and short timeouts, so faults that
/// send a job back to the queue cost a fraction of a second. Set on `WorkerSettings`
/// directly, since the config file's units are whole seconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// DingTalk and OSS request timeout (OSS: longest silence).
    pub request_timeout: Duration,
    /// Queue backoff ceiling, first retry and cap alike.
    pub backoff: Duration,
    /// How long a create without an answer may still land.
    pub submit_settle: Duration,
    /// Claim lease.
    pub lease: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            request_timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(50),
            // Twice the request timeout, as `run` sets it: a create the client gave up on
            // has that long again to land before reconciliation believes it did not.
            submit_settle: Duration::from_secs(4),
            lease: Duration::from_secs(5),
        }
    }
}

impl Harness {
    /// A worker with `timing` instead of the config's whole-second values.
    pub fn timed_worker(&self, timing: Timing) -> Worker {
        let dingtalk = self.client(timing.request_timeout);
        let oss = Oss::new(Duration::from_secs(2), timing.request_timeout).expect("oss client");
        let approval =
            Approval::new(dingtalk.clone(), oss).with_submit_settle(timing.submit_settle);
        let mut settings = WorkerSettings::from_config(&self.config);
        settings.backoff_base = timing.backoff;
        settings.backoff_max = timing.backoff;
        settings.lease = timing.lease;
        Worker::new(self.queue.clone(), approval, dingtalk, settings)
    }

    /// Starts a worker with the default reliability-test timings.
    pub fn start_timed(&mut self) -> Worker {
        self.start_timed_with(Timing::default())
    }

    /// Starts a worker with `timing` in the background.
    pub fn start_timed_with(&mut self, timing: Timing) -> Worker {
        self.run_in_background(self.timed_worker(timing))
    }

    /// Waits until `check` holds for the job's row and events (polling the database).
    pub async fn wait_until(
        &self,
        id: JobId,
        what: &str,
        check: impl Fn(&JobRow, &[EventRow]) -> bool,
    ) -> (JobRow, Vec<EventRow>) {
        let deadline = Instant::now() + FINISH_TIMEOUT;
        loop {
            let job = self.queue.get(id).await.expect("job exists");
            let events = self.queue.events(id).await.expect("events");
            if check(&job, &events) {
                return (job, events);
            }
            assert!(
                Instant::now() < deadline,
                "job {id}: gave up waiting for {what}: {job:?} {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sets columns of a job with plain SQL, as an operator or another process would (for
    /// example, moving `run_at` to let time pass).
    pub async fn sql(&self, sql: &str) {
        use sqlx::Connection;
        let url = format!("sqlite://{}", self.config.database.path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query(sql).execute(&mut conn).await.expect("sql");
        conn.close().await.expect("close");
    }
}

/// The fileIds the DDAttachment field of a sandbox instance references.
pub fn instance_file_ids(instance: &approval_worker::sandbox::Instance) -> Vec<String> {
    instance
        .form
        .iter()
        .filter(|(name, _)| name == "附件")
        .find_map(|(_, value)| approval_worker::dingtalk::dd_attachment_file_ids(value))
        .unwrap_or_default()
}

/// The fileIds a finished job's `result` lists.
pub fn result_file_ids(job: &JobRow) -> Vec<String> {
    result_of(job)["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["file_id"].as_str().expect("file_id").to_string())
        .collect()
}

/// What the sandbox holds against what the jobs recorded: returns `(duplicates, lost)`.
/// A duplicate is an instance beyond the first for one job's files, or an instance no job
/// owns; a lost job is one that did not succeed, or whose recorded instance is not the one
/// the sandbox holds for its files.
pub fn audit(instances: &[approval_worker::sandbox::Instance], jobs: &[JobRow]) -> (usize, usize) {
    let succeeded: Vec<(&JobRow, Vec<String>)> = jobs
        .iter()
        .filter(|job| job.status == "succeeded")
        .map(|job| (job, result_file_ids(job)))
        .collect();
    let mut duplicates = 0;
    let mut per_job = vec![0_usize; succeeded.len()];
    for instance in instances {
        let files = instance_file_ids(instance);
        match succeeded.iter().position(|(_, ids)| *ids == files) {
            Some(index) => per_job[index] += 1,
            None => duplicates += 1,
        }
    }
    duplicates += per_job.iter().map(|n| n.saturating_sub(1)).sum::<usize>();
    let mut lost = jobs.len() - succeeded.len();
    for ((job, files), count) in succeeded.iter().zip(&per_job) {
        let recorded = result_of(job)["instance_id"].as_str().map(str::to_string);
        let held = instances
            .iter()
            .any(|i| Some(&i.instance_id) == recorded.as_ref() && instance_file_ids(i) == *files);
        if *count == 0 || !held {
            lost += 1;
        }
    }
    (duplicates, lost)
}

/// The real binary, for tests that run, signal and kill it.
pub const BIN: &str = env!("CARGO_BIN_EXE_approval-worker");

/// A `[worker]` table for the binary: short lease (5 s, the minimum) and 1 s backoffs.
pub const BINARY_WORKER: &str = "[worker]\nconcurrency = 8\npoll_interval_ms = 20\n\
     lease_secs = 5\nmax_attempts = 100\nbackoff_base_secs = 1\nbackoff_max_secs = 1\n\
     shutdown_grace_secs = 1\n";

impl Harness {
    /// Writes `NAME.toml` for the binary: this harness's sandbox, database and spool, its
    /// upload limits, a 2 s request timeout, and `worker_table` (see [`BINARY_WORKER`]).
    pub fn binary_config(&self, name: &str, worker_table: &str) -> PathBuf {
        self.config_file(
            &format!("{name}.toml"),
            &format!(
                "[dingtalk]\nconnect_timeout_secs = 1\nrequest_timeout_secs = 2\n\
                 [upload]\nmax_file_bytes = {}\nmultipart_threshold_bytes = {}\n\
                 part_bytes = {}\n{worker_table}",
                self.config.upload.max_file_bytes,
                self.config.upload.multipart_threshold_bytes,
                self.config.upload.part_bytes,
            ),
        )
    }

    /// Starts `approval-worker --config CONFIG run` with the sandbox's secret in the
    /// environment; its stderr (the log, at `log_level`) is appended to `log`.
    pub fn spawn_binary(&self, config: &Path, log: &Path, log_level: &str) -> std::process::Child {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("APPROVAL_WORKER_CONFIG")
            .env_remove("APPROVAL_WORKER_DATABASE")
            .env_remove("APPROVAL_WORKER_DATABASE_URL")
            .env("DINGTALK_APP_SECRET", SandboxOptions::default().app_secret)
            .env("APPROVAL_WORKER_LOG", log_level)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("binary starts")
    }

    /// Every job, oldest first.
    pub async fn all_jobs(&self) -> Vec<JobRow> {
        let filter = approval_worker::queue::JobFilter {
            limit: i64::MAX,
            ..Default::default()
        };
        let mut jobs = self.queue.list(&filter).await.expect("list jobs");
        jobs.reverse();
        jobs
    }

    /// Waits until no job is queued or running (at most `timeout`), and returns them all.
    pub async fn all_finished(&self, timeout: Duration) -> Vec<JobRow> {
        let deadline = Instant::now() + timeout;
        loop {
            let jobs = self.all_jobs().await;
            let open: Vec<&JobRow> = jobs
                .iter()
                .filter(|j| matches!(j.status.as_str(), "queued" | "running"))
                .collect();
            if open.is_empty() {
                return jobs;
            }
            assert!(
                Instant::now() < deadline,
                "{} jobs stuck, e.g. {:?}",
                open.len(),
                open[0]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until the log file `path` has a line containing `needle`.
pub async fn wait_for_line(path: &Path, needle: &str) {
    let deadline = Instant::now() + DAEMON_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|line| line.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGTERM (through `kill`, no signal crate needed).
pub fn sigterm(child: &std::process::Child) {
    send_signal(child.id(), "TERM");
}

/// Sends `signal` (e.g. "TERM", "INT") to process `pid` with the system's `kill`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits for a child to exit, at most `timeout`, without blocking the runtime.
pub async fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long a test waits for the binary to say or do something.
pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(30);

impl Harness {
    /// The harness's temporary directory (holds the database and the spool).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Writes `name` in the temporary directory: a worker.toml pointing at this harness's
    /// sandbox, database and spool, with the sections of `extra` (TOML) merged over it.
    pub fn config_file(&self, name: &str, extra: &str) -> PathBuf {
        let database = match &self.config.database.url {
            Some(url) => format!("url = {url:?}"),
            None => format!(
                "path = {:?}",
                self.config.database.path.display().to_string()
            ),
        };
        let mut config: toml::Table = toml::from_str(&format!(
            "[database]\n{database}\n\
             [dingtalk]\napp_key = {key:?}\nagent_id = {agent}\napi_base = {url:?}\n\
             oapi_base = {url:?}\nrate_limit_per_sec = 0\n\
             [upload]\nallowed_dirs = [{spool:?}]\n\
             [worker]\npoll_interval_ms = 20\nconcurrency = 4\nbackoff_base_secs = 1\n\
             backoff_max_secs = 1\n\
             [outcome]\nstream = false\n",
            key = self.config.dingtalk.app_key,
            agent = self.config.dingtalk.agent_id,
            url = self.sandbox.base_url(),
            spool = self.spool.display().to_string(),
        ))
        .expect("base config");
        let extra: toml::Table = toml::from_str(extra).expect("extra config");
        for (section, values) in extra {
            match (config.get_mut(&section), values) {
                (Some(toml::Value::Table(base)), toml::Value::Table(values)) => base.extend(values),
                (_, values) => {
                    config.insert(section, values);
                }
            }
        }
        let path = self.dir().join(name);
        std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
        path
    }

    /// The binary with this harness's app secret in its environment, run in the temporary
    /// directory, without the caller's config, database or systemd variables.
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(BIN);
        command
            .current_dir(self.dir())
            .env_remove("APPROVAL_WORKER_CONFIG")
            .env_remove("APPROVAL_WORKER_DATABASE")
            .env_remove("APPROVAL_WORKER_DATABASE_URL")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env("DINGTALK_APP_SECRET", SandboxOptions::default().app_secret);
        command
    }

    /// Starts `approval-worker --config CONFIG run` with extra environment variables.
    pub fn spawn_run(&self, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut command = self.command();
        command
            .arg("--config")
            .arg(config)
            .arg("run")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        Daemon::spawn(command)
    }
}

/// A running `approval-worker run`, with its stderr collected line by line.
pub struct Daemon {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
}

impl Daemon {
    /// Spawns `command` (stderr piped) and reads its stderr in a thread.
    pub fn spawn(mut command: std::process::Command) -> Daemon {
        let mut child = command.spawn().expect("binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + DAEMON_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Sends `signal` (e.g. "TERM", "INT") to the process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Waits for the process to exit and returns its exit code; reads the rest of stderr.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.log.extend(self.lines.try_iter());
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "process still running after {timeout:?}; log:\n{}",
                self.log.join("\n")
            );
            self.log.extend(self.lines.try_iter());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test must not leave a worker running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
