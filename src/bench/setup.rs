//! What every scenario needs: a scratch directory with its database (its own SQLite file,
//! or a PostgreSQL database), the sandbox in a child process (so the worker's CPU and memory
//! are measured alone), attachments, payloads, and a worker wired to the sandbox the way
//! `run` wires it to DingTalk.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::BenchError;
use crate::approval::Approval;
use crate::config::Config;
use crate::dingtalk::{ClientSettings, DingTalk};
use crate::oss::Oss;
use crate::queue::{Location, OpenOptions, Queue};
use crate::sandbox::{DEFAULT_AGENT_ID, DEFAULT_APP_KEY, DEFAULT_APP_SECRET};
use crate::secret::Secret;
use crate::worker::{Worker, WorkerSettings};

/// Connect timeout of the benchmark's clients.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence the benchmark's clients accept.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Size of each small attachment of the end-to-end runs.
pub(crate) const SMALL_ATTACHMENT_BYTES: usize = 4 * 1024;
/// Distinct small attachment files the jobs take turns attaching.
const SMALL_ATTACHMENT_FILES: usize = 8;

/// The sandbox running as `approval-worker bench --serve-sandbox`; killed on drop.
pub(crate) struct ChildSandbox {
    child: Child,
    url: String,
}

impl ChildSandbox {
    /// Starts it and waits for the URL it prints.
    pub(crate) fn start(exe: &Path) -> Result<ChildSandbox, BenchError> {
        let mut child = Command::new(exe)
            .args(["bench", "--serve-sandbox"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Setup("sandbox child has no stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line.trim().to_owned();
        if !url.starts_with("http://127.0.0.1:") {
            let _ = child.kill();
            return Err(BenchError::Setup(format!("sandbox child printed {url:?}")));
        }
        Ok(ChildSandbox { child, url })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Its process id, for its CPU time.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildSandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory with a spool of small attachments, removed on drop, and the database its
/// runs use.
pub(crate) struct Scratch {
    pub(crate) dir: PathBuf,
    /// Attachments live here (the allowed directory).
    pub(crate) spool: PathBuf,
    small: Vec<PathBuf>,
    keep: bool,
    /// The PostgreSQL database of its runs, instead of the directory's SQLite file.
    postgres: Option<String>,
}

impl Scratch {
    /// A fresh directory `name` under `root`.
    pub(crate) fn new(root: &Path, name: &str, keep: bool) -> Result<Scratch, BenchError> {
        let dir = root.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let spool = dir.join("spool");
        std::fs::create_dir_all(&spool)?;
        let spool = std::fs::canonicalize(&spool)?;
        let mut small = Vec::new();
        for index in 0..SMALL_ATTACHMENT_FILES {
            let path = spool.join(format!("receipt-{index}.pdf"));
            let bytes: Vec<u8> = (0..SMALL_ATTACHMENT_BYTES)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(index as u8))
                .collect();
            std::fs::write(&path, bytes)?;
            small.push(path);
        }
        Ok(Scratch {
            dir,
            spool,
            small,
            keep,
            postgres: None,
        })
    }

    /// The same directory, its runs on the PostgreSQL database at `url`.
    pub(crate) fn on_postgres(mut self, url: &str) -> Scratch {
        self.postgres = Some(url.to_owned());
        self
    }

    /// The PostgreSQL database of its runs, if they do not use the SQLite file.
    pub(crate) fn postgres_url(&self) -> Option<&str> {
        self.postgres.as_deref()
    }

    /// The database path of this scratch directory.
    pub(crate) fn database(&self) -> PathBuf {
        self.dir.join("queue.db")
    }

    /// Where its runs' queue lives: the PostgreSQL database, or the SQLite file.
    pub(crate) fn location(&self) -> Location {
        match &self.postgres {
            Some(url) => Location::Postgres(super::pgserver::queue_options(url)),
            None => Location::Sqlite(self.database()),
        }
    }

    /// The `[database]` table of a `worker.toml` for that queue.
    pub(crate) fn database_toml(&self) -> String {
        match &self.postgres {
            Some(url) => format!("[database]\nurl = {url:?}\n"),
            None => format!(
                "[database]\npath = {:?}\n",
                self.database().display().to_string()
            ),
        }
    }

    /// Opens the queue as the product does ([`Checkpoints::Automatic`]), or with automatic
    /// WAL checkpoints off, so the WAL's size is what the scenario wrote. A PostgreSQL queue
    /// has no WAL of its own: `checkpoints` does not apply to it.
    pub(crate) async fn queue(&self, checkpoints: Checkpoints) -> Result<Queue, BenchError> {
        if self.postgres.is_some() {
            return Ok(Queue::connect(&self.location()).await?);
        }
        let options = OpenOptions {
            wal_autocheckpoint_pages: match checkpoints {
                Checkpoints::Automatic => None,
                Checkpoints::Off => Some(0),
            },
        };
        Ok(Queue::open_with(&self.database(), &options).await?)
    }

    /// Bytes in the database's WAL file now.
    pub(crate) fn wal_bytes(&self) -> u64 {
        let mut wal = self.database().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    /// A valid payload attaching small file number `index` (modulo the spool), under a
    /// display name unique to `index`: the sandbox renames clashing names the way DingPan
    /// does, by a search that grows with every file already stored.
    pub(crate) fn payload(&self, index: usize) -> String {
        payload_for(&self.small[index % self.small.len()], index)
    }

    /// The `index`th of the small attachment files, round the spool.
    pub(crate) fn small_file(&self, index: usize) -> &Path {
        &self.small[index % self.small.len()]
    }

    /// Settings for a worker serving this scratch directory.
    pub(crate) fn config(&self, sandbox_url: &str, concurrency: u32) -> Config {
        let mut config = Config::default();
        config.database.path = self.database();
        config.database.url.clone_from(&self.postgres);
        config.dingtalk.app_key = DEFAULT_APP_KEY.to_owned();
        config.dingtalk.agent_id = DEFAULT_AGENT_ID;
        config.dingtalk.api_base = sandbox_url.to_owned();
        config.dingtalk.oapi_base = sandbox_url.to_owned();
        config.dingtalk.rate_limit_per_sec = 0;
        config.upload.allowed_dirs = vec![self.spool.clone()];
        config.worker.concurrency = Some(concurrency);
        config
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A job payload attaching one file, shown as `receipt-<index>.pdf`.
pub(crate) fn payload_for(path: &Path, index: usize) -> String {
    json!({
        "process_code": "PROC-BENCH",
        "originator_user_id": "manager4220",
        "dept_id": -1,
        "form": [{"name": "报销事由", "value": "bench"}],
        "attachments": [{"path": path, "name": format!("receipt-{index}.pdf")}],
    })
    .to_string()
}

/// The DingTalk client `run` would build, pointed at `url`.
pub(crate) fn dingtalk(url: &str, rate_limit_per_sec: u32) -> Result<DingTalk, BenchError> {
    DingTalk::new(ClientSettings {
        api_base: url.to_owned(),
        oapi_base: url.to_owned(),
        app_key: DEFAULT_APP_KEY.to_owned(),
        app_secret: Secret::new(DEFAULT_APP_SECRET.to_owned()),
        agent_id: DEFAULT_AGENT_ID,
        rate_limit_per_sec,
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: REQUEST_TIMEOUT,
    })
    .map_err(|e| BenchError::Setup(format!("DingTalk client: {e}")))
}

/// A worker over `queue` talking to `url`, as `run` builds it.
pub(crate) fn worker(
    queue: Queue,
    url: &str,
    settings: WorkerSettings,
) -> Result<Worker, BenchError> {
    worker_with_client(queue, dingtalk(url, 0)?, settings)
}

/// A worker over `queue` calling DingTalk through `dingtalk` (its rate limit, its call
/// counts), as `run` builds it.
pub(crate) fn worker_with_client(
    queue: Queue,
    dingtalk: DingTalk,
    settings: WorkerSettings,
) -> Result<Worker, BenchError> {
    let oss = Oss::new(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
        .map_err(|e| BenchError::Setup(format!("OSS client: {e}")))?;
    Ok(Worker::new(
        queue,
        Approval::new(dingtalk.clone(), oss),
        dingtalk,
        settings,
    ))
}

/// A worker running in the background until [`Running::stop`].
pub(crate) struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub(crate) fn start(worker: &Worker) -> Running {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let worker = worker.clone();
            let shutdown = shutdown.clone();
            async move {
                if let Err(e) = worker.run(shutdown, CancellationToken::new()).await {
                    tracing::error!(error = %e, "bench worker stopped");
                }
            }
        });
        Running { shutdown, task }
    }

    /// Stops the worker and waits for it.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// How a run's database checkpoints its WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checkpoints {
    /// SQLite's automatic checkpoints, as in every queue the product opens: the timed runs.
    Automatic,
    /// None, so the WAL file holds every frame the run wrote: the run that measures WAL bytes
    /// per job, whose times are not reported (it skips the checkpoints' work).
    Off,
}

/// Waits until `total` jobs have finished (succeeded or failed); polls every `every`.
pub(crate) async fn wait_finished(
    queue: &Queue,
    total: i64,
    every: Duration,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let done = queue.count_statuses(&["succeeded", "failed"]).await?;
        if done >= total {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BenchError::Setup(format!(
                "only {done} of {total} jobs finished within {} s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(every).await;
    }
}
