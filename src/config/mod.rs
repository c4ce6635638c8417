//! `worker.toml`: the settings, their defaults, environment overrides and validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

mod dashboard;
mod outcome;

pub(crate) use dashboard::DEFAULT_DASHBOARD_LISTEN;
pub use dashboard::DashboardConfig;
pub use outcome::OutcomeConfig;
pub(crate) use outcome::check_webhook_url;

/// Environment variable naming the config file when `--config` is not given.
pub(crate) const CONFIG_ENV: &str = "APPROVAL_WORKER_CONFIG";
/// Config file read from the working directory when neither `--config` nor the env var is set.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "worker.toml";
/// Environment variable overriding `[database] path`.
const DATABASE_PATH_ENV: &str = "APPROVAL_WORKER_DATABASE";
/// Environment variable overriding `[database] url`.
const DATABASE_URL_ENV: &str = "APPROVAL_WORKER_DATABASE_URL";
const DEFAULT_MAX_CONNECTIONS: u32 = 10;
const MAX_MAX_CONNECTIONS: u32 = 1_000;
/// Where systemd puts `LoadCredential=` files; a relative `app_secret_file` is resolved in it.
const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

const DEFAULT_DATABASE_PATH: &str = "approval-worker.db";
const DEFAULT_SECRET_ENV: &str = "DINGTALK_APP_SECRET";
const DEFAULT_API_BASE: &str = "https://api.dingtalk.com";
const DEFAULT_OAPI_BASE: &str = "https://oapi.dingtalk.com";
const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 20;
const DEFAULT_ATTACHMENT_FIELD: &str = "附件";
const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;
const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
const DEFAULT_MAX_FILE_BYTES: u64 = 500 * 1024 * 1024;
/// OSS's largest part.
const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
const DEFAULT_MAX_CONCURRENCY: u32 = 64;
const DEFAULT_POLL_INTERVAL_MS: u64 = 200;
const DEFAULT_LEASE_SECS: u64 = 60;
const DEFAULT_MAX_ATTEMPTS: u32 = 12;
const DEFAULT_BACKOFF_BASE_SECS: u64 = 5;
const DEFAULT_BACKOFF_MAX_SECS: u64 = 3600;
const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
const DEFAULT_QUEUE_NAME: &str = "default";

// Ceilings of the keys that become durations or are multiplied: far above any sensible
// setting, and far enough below the limits of `Instant`, `Duration` and i64 milliseconds
// that nothing computed from them can overflow.
/// A connect that takes longer is not going to succeed.
const MAX_CONNECT_TIMEOUT_SECS: u64 = 300;
/// One hour; twice this is the submit settle time.
const MAX_REQUEST_TIMEOUT_SECS: u64 = 3_600;
/// Beyond this the limiter's spacing between calls rounds to nothing.
const MAX_RATE_LIMIT_PER_SEC: u32 = 10_000;
const MIN_POLL_INTERVAL_MS: u64 = 10;
const MAX_POLL_INTERVAL_MS: u64 = 60_000;
const MIN_LEASE_SECS: u64 = 5;
/// A day: a crashed worker's jobs wait this long for the rescuer at most.
const MAX_LEASE_SECS: u64 = 86_400;
const MAX_BACKOFF_BASE_SECS: u64 = 86_400;
/// A week.
const MAX_BACKOFF_MAX_SECS: u64 = 604_800;
/// A day.
const MAX_SHUTDOWN_GRACE_SECS: u64 = 86_400;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[database]`
    pub database: DatabaseConfig,
    /// `[dingtalk]`
    pub dingtalk: DingTalkConfig,
    /// `[upload]`
    pub upload: UploadConfig,
    /// `[worker]`
    pub worker: WorkerConfig,
    /// `[outcome]`
    pub outcome: OutcomeConfig,
    /// `[metrics]`
    pub(crate) metrics: MetricsConfig,
    /// `[dashboard]`
    pub dashboard: DashboardConfig,
    /// `[log]`
    pub log: LogConfig,
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsConfig {
    /// Where `run` serves `/metrics` (Prometheus text) and `/healthz`; none when absent.
    pub(crate) listen: Option<std::net::SocketAddr>,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log format on stderr, unless `--log-format` says otherwise.
    pub format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// The SQLite file (created owner-only if missing). Not used when `url` is set.
    pub path: PathBuf,
    /// A PostgreSQL database, `postgres://user@host/database`, instead of the SQLite file.
    pub url: Option<String>,
    /// File holding the PostgreSQL password (when it is not in the URL or `PGPASSWORD`). A
    /// relative name is looked up in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    pub password_file: Option<PathBuf>,
    /// PostgreSQL connections this process opens at most.
    pub max_connections: u32,
    /// Whether workers `LISTEN` for new jobs on PostgreSQL (turn off behind PgBouncer in
    /// transaction mode: they then find new jobs by polling).
    pub listen: bool,
    /// Whether `path` was given (in the file or the environment), not defaulted.
    #[serde(skip)]
    path_given: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            path: PathBuf::from(DEFAULT_DATABASE_PATH),
            url: None,
            password_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            listen: true,
            path_given: false,
        }
    }
}

/// `[dingtalk]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DingTalkConfig {
    /// The internal app's Client ID (AppKey).
    pub app_key: String,
    /// Environment variable holding the app secret.
    pub(crate) app_secret_env: String,
    /// File holding the app secret; wins over the env. A relative name is looked up in
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    app_secret_file: Option<PathBuf>,
    /// The app's AgentId.
    pub agent_id: i64,
    /// Base URL of the new-style API.
    pub api_base: String,
    /// Base URL of the legacy API.
    pub oapi_base: String,
    /// Calls per second shared by all workers of this process (0 = unlimited).
    pub rate_limit_per_sec: u32,
    /// Default label of the template's DDAttachment component.
    pub(crate) attachment_field: String,
    /// TCP connect timeout.
    connect_timeout_secs: u64,
    /// Per-request timeout (for OSS: longest silence while uploading).
    request_timeout_secs: u64,
    /// Counted calls per month (China Standard Time) after which `run` stops claiming.
    pub monthly_call_budget: Option<u64>,
}

impl Default for DingTalkConfig {
    fn default() -> Self {
        DingTalkConfig {
            app_key: String::new(),
            app_secret_env: DEFAULT_SECRET_ENV.to_string(),
            app_secret_file: None,
            agent_id: 0,
            api_base: DEFAULT_API_BASE.to_string(),
            oapi_base: DEFAULT_OAPI_BASE.to_string(),
            rate_limit_per_sec: DEFAULT_RATE_LIMIT_PER_SEC,
            attachment_field: DEFAULT_ATTACHMENT_FIELD.to_string(),
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            monthly_call_budget: None,
        }
    }
}

/// `[upload]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Attachments must lie in one of these directories (symlinks resolved).
    pub allowed_dirs: Vec<PathBuf>,
    /// Largest attachment in bytes.
    pub max_file_bytes: u64,
    /// Attachments of at least this many bytes are uploaded in resumable parts.
    pub multipart_threshold_bytes: u64,
    /// The size of each part but the last (grown when a file would need more than 10 000).
    pub part_bytes: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            allowed_dirs: Vec::new(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            multipart_threshold_bytes: crate::approval::DEFAULT_MULTIPART_THRESHOLD_BYTES,
            part_bytes: crate::approval::DEFAULT_PART_BYTES,
        }
    }
}

impl UploadConfig {
    /// When a file goes in parts, and how large they are.
    pub fn part_plan(&self) -> crate::approval::PartPlan {
        crate::approval::PartPlan {
            threshold_bytes: self.multipart_threshold_bytes,
            part_bytes: self.part_bytes,
        }
    }
}

/// `[worker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Which queue this process serves.
    pub(crate) queue: String,
    /// Jobs run at once; unset, as many as the DingTalk rate limit can feed, up to
    /// `max_concurrency`.
    pub concurrency: Option<u32>,
    /// Most jobs run at once when `concurrency` is not set.
    pub max_concurrency: u32,
    /// How often an idle worker looks for due jobs.
    pub poll_interval_ms: u64,
    /// How long a claim stays valid without a heartbeat.
    pub(crate) lease_secs: u64,
    /// Attempts before a job fails (a job's own `max_attempts` wins).
    pub max_attempts: u32,
    /// First retry delay ceiling.
    pub backoff_base_secs: u64,
    /// Largest retry delay.
    pub backoff_max_secs: u64,
    /// How long `run` lets in-flight steps finish after SIGTERM.
    pub(crate) shutdown_grace_secs: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            queue: DEFAULT_QUEUE_NAME.to_string(),
            concurrency: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            lease_secs: DEFAULT_LEASE_SECS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base_secs: DEFAULT_BACKOFF_BASE_SECS,
            backoff_max_secs: DEFAULT_BACKOFF_MAX_SECS,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
        }
    }
}

/// A configuration problem; the message names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrong type.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said, with the key and line.
        message: String,
    },
    /// Values that parse but cannot work, one line each.
    #[error("config {}:\n  {}", .path.display(), .problems.join("\n  "))]
    Invalid {
        /// The file (or `<defaults>`).
        path: PathBuf,
        /// One message per bad key.
        problems: Vec<String>,
    },
    /// The app secret is not available.
    #[error("{0}")]
    Secret(String),
}

impl Config {
    /// Reads `path`, or the default file if it exists, else the defaults. An explicitly named
    /// file that is missing is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match explicit {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path)?,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        if let Some(db) = std::env::var_os(DATABASE_PATH_ENV) {
            config.database.path = PathBuf::from(db);
            config.database.path_given = true;
        }
        if let Ok(url) = std::env::var(DATABASE_URL_ENV) {
            config.database.url = Some(url);
        }
        config.validate(&path)?;
        Ok(config)
    }

    /// Parses TOML text (no validation).
    fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        // The text parsed as a config, so it parses as a table.
        let table: toml::Table = toml::from_str(text).unwrap_or_default();
        config.database.path_given = table
            .get("database")
            .and_then(|database| database.get("path"))
            .is_some();
        Ok(config)
    }

    /// Checks values that parse but cannot work; reports every problem at once.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, message: &str| {
            if !ok {
                problems.push(message.to_string());
            }
        };
        check(
            !self.database.path.as_os_str().is_empty(),
            "[database] path: must not be empty",
        );
        if let Some(url) = &self.database.url {
            check(
                !self.database.path_given,
                "[database] path and url: give one, not both (path is a SQLite file, url a \
                 PostgreSQL database; APPROVAL_WORKER_DATABASE and APPROVAL_WORKER_DATABASE_URL \
                 set them too)",
            );
            check(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                &format!(
                    "[database] url: {} is not a postgres:// URL",
                    crate::queue::redacted_url(url)
                ),
            );
        }
        check(
            (1..=MAX_MAX_CONNECTIONS).contains(&self.database.max_connections),
            &format!(
                "[database] max_connections: must be in 1..={MAX_MAX_CONNECTIONS}, not {}",
                self.database.max_connections
            ),
        );
        for (key, url) in [
            ("api_base", &self.dingtalk.api_base),
            ("oapi_base", &self.dingtalk.oapi_base),
        ] {
            check(
                url.starts_with("https://") || url.starts_with("http://"),
                &format!("[dingtalk] {key}: {url:?} is not an http(s) URL"),
            );
        }
        check(
            !self.dingtalk.attachment_field.trim().is_empty(),
            "[dingtalk] attachment_field: must not be empty",
        );
        let d = &self.dingtalk;
        let mut within = |key: &str, value: u64, lowest: u64, highest: u64, note: &str| {
            check(
                (lowest..=highest).contains(&value),
                &format!("{key}: must be in {lowest}..={highest}{note}, not {value}"),
            );
        };
        within(
            "[dingtalk] connect_timeout_secs",
            d.connect_timeout_secs,
            1,
            MAX_CONNECT_TIMEOUT_SECS,
            "",
        );
        within(
            "[dingtalk] request_timeout_secs",
            d.request_timeout_secs,
            1,
            MAX_REQUEST_TIMEOUT_SECS,
            "",
        );
        within(
            "[dingtalk] rate_limit_per_sec",
            u64::from(d.rate_limit_per_sec),
            0,
            u64::from(MAX_RATE_LIMIT_PER_SEC),
            " (0 = unlimited)",
        );
        let w = &self.worker;
        within(
            "[worker] poll_interval_ms",
            w.poll_interval_ms,
            MIN_POLL_INTERVAL_MS,
            MAX_POLL_INTERVAL_MS,
            "",
        );
        within(
            "[worker] lease_secs",
            w.lease_secs,
            MIN_LEASE_SECS,
            MAX_LEASE_SECS,
            "",
        );
        within(
            "[worker] backoff_base_secs",
            w.backoff_base_secs,
            1,
            MAX_BACKOFF_BASE_SECS,
            "",
        );
        within(
            "[worker] backoff_max_secs",
            w.backoff_max_secs,
            w.backoff_base_secs,
            MAX_BACKOFF_MAX_SECS,
            " (not below backoff_base_secs)",
        );
        within(
            "[worker] shutdown_grace_secs",
            w.shutdown_grace_secs,
            0,
            MAX_SHUTDOWN_GRACE_SECS,
            "",
        );
        check(
            self.dingtalk.monthly_call_budget != Some(0),
            "[dingtalk] monthly_call_budget: must be at least 1 (leave it out for no budget)",
        );
        check(
            self.upload.max_file_bytes > 0,
            "[upload] max_file_bytes: must be at least 1",
        );
        check(
            self.upload.multipart_threshold_bytes > 0,
            "[upload] multipart_threshold_bytes: must be at least 1",
        );
        let part = self.upload.part_bytes;
        check(
            (crate::dingtalk::MIN_PART_BYTES..=MAX_PART_BYTES).contains(&part),
            &format!(
                "[upload] part_bytes: must be in {}..={MAX_PART_BYTES} (OSS takes parts of \
                 100 KiB to 5 GiB), not {part}",
                crate::dingtalk::MIN_PART_BYTES
            ),
        );
        for dir in &self.upload.allowed_dirs {
            check(
                dir.is_absolute(),
                &format!(
                    "[upload] allowed_dirs: {} is not an absolute path",
                    dir.display()
                ),
            );
        }
        check(!w.queue.is_empty(), "[worker] queue: must not be empty");
        check(
            w.concurrency.is_none_or(|n| (1..=1024).contains(&n)),
            "[worker] concurrency: must be between 1 and 1024",
        );
        check(
            (1..=1024).contains(&w.max_concurrency),
            "[worker] max_concurrency: must be between 1 and 1024",
        );
        check(
            w.max_attempts >= 1,
            "[worker] max_attempts: must be at least 1",
        );
        problems.extend(self.outcome.problems());
        problems.extend(self.dashboard.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Checks what only `run` needs: the app key, agent id and secret.
    pub(crate) fn validate_for_run(&self) -> Result<Secret, ConfigError> {
        let mut problems = Vec::new();
        if self.dingtalk.app_key.is_empty() {
            problems.push("[dingtalk] app_key: required to run".to_string());
        }
        if self.dingtalk.agent_id <= 0 {
            problems.push("[dingtalk] agent_id: required to run (the app's AgentId)".to_string());
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: PathBuf::from("(loaded config)"),
                problems,
            });
        }
        self.app_secret()
    }

    /// Where the queue lives: the PostgreSQL database when `url` is set (its password read
    /// from `password_file` if one is named), else the SQLite file.
    pub(crate) fn queue_location(&self) -> Result<crate::queue::Location, ConfigError> {
        let database = &self.database;
        let Some(url) = &database.url else {
            return Ok(crate::queue::Location::Sqlite(database.path.clone()));
        };
        let password = match &database.password_file {
            None => None,
            Some(file) => {
                let credentials = std::env::var_os(CREDENTIALS_DIRECTORY_ENV);
                let file = resolve_credential(
                    "[database] password_file",
                    file,
                    credentials.as_deref().map(Path::new),
                )?;
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    ConfigError::Secret(format!(
                        "[database] password_file: cannot read {}: {e}",
                        file.display()
                    ))
                })?;
                // A trailing newline is the editor's, not the password's.
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
        };
        Ok(crate::queue::Location::Postgres(crate::queue::PgOptions {
            url: url.clone(),
            password,
            max_connections: database.max_connections,
            listen: database.listen,
        }))
    }

    /// The app secret, from `app_secret_file` or the `app_secret_env` variable.
    fn app_secret(&self) -> Result<Secret, ConfigError> {
        if let Some(file) = self.app_secret_path()? {
            let file = &file;
            let text = std::fs::read_to_string(file).map_err(|e| {
                ConfigError::Secret(format!(
                    "[dingtalk] app_secret_file: cannot read {}: {e}",
                    file.display()
                ))
            })?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(ConfigError::Secret(format!(
                    "[dingtalk] app_secret_file: {} is empty",
                    file.display()
                )));
            }
            return Ok(Secret::new(secret));
        }
        match std::env::var(&self.dingtalk.app_secret_env) {
            Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim())),
            _ => Err(ConfigError::Secret(format!(
                "the app secret is not set: export {} or set [dingtalk] app_secret_file",
                self.dingtalk.app_secret_env
            ))),
        }
    }

    /// Where the secret file is: `app_secret_file` as written when absolute, else inside
    /// `$CREDENTIALS_DIRECTORY`. `None` when the secret comes from the environment.
    pub(crate) fn app_secret_path(&self) -> Result<Option<PathBuf>, ConfigError> {
        let Some(file) = &self.dingtalk.app_secret_file else {
            return Ok(None);
        };
        let credentials = std::env::var_os(CREDENTIALS_DIRECTORY_ENV);
        resolve_credential(
            "[dingtalk] app_secret_file",
            file,
            credentials.as_deref().map(Path::new),
        )
        .map(Some)
    }

    /// Problems that do not stop the program but an operator should fix, one line each:
    /// a secret file open to its group or others. `check` and `run` print them.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let secret_file = self.app_secret_path().ok().flatten();
        let mut warnings: Vec<String> = secret_file
            .as_deref()
            .and_then(crate::secret::file_mode_warning)
            .map(|warning| format!("[dingtalk] app_secret_file: {warning}"))
            .into_iter()
            .collect();
        let credentials = std::env::var_os(CREDENTIALS_DIRECTORY_ENV);
        let password_file = self.database.password_file.as_deref().and_then(|file| {
            let dir = credentials.as_deref().map(Path::new);
            resolve_credential("[database] password_file", file, dir).ok()
        });
        if let Some(warning) = password_file
            .as_deref()
            .and_then(crate::secret::file_mode_warning)
        {
            warnings.push(format!("[database] password_file: {warning}"));
        }
        let token_file = self.dashboard.token_file.as_deref().and_then(|file| {
            let dir = credentials.as_deref().map(Path::new);
            resolve_credential("[dashboard] token_file", file, dir).ok()
        });
        if let Some(warning) = token_file
            .as_deref()
            .and_then(crate::secret::file_mode_warning)
        {
            warnings.push(format!("[dashboard] token_file: {warning}"));
        }
        warnings
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.dingtalk.connect_timeout_secs)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.dingtalk.request_timeout_secs)
    }
}

fn resolve_credential(
    key: &str,
    file: &Path,
    credentials: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    if file.is_absolute() {
        return Ok(file.to_path_buf());
    }
    match credentials.filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => Ok(dir.join(file)),
        None => Err(ConfigError::Secret(format!(
            "{key}: {} is relative, which names a systemd credential, \
             but ${CREDENTIALS_DIRECTORY_ENV} is not set (use LoadCredential= or an absolute path)",
            file.display()
        ))),
    }
}

#[cfg(test)]
mod tests;
