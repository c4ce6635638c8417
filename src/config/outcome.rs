//! `[outcome]`: following each created approval to its decision and telling the producer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{CREDENTIALS_DIRECTORY_ENV, ConfigError, resolve_credential};
use crate::secret::Secret;

/// The variable that holds the webhook signing secret by default.
const DEFAULT_WEBHOOK_SECRET_ENV: &str = "APPROVAL_WORKER_WEBHOOK_SECRET";
/// Longest time between two reads of a pending instance when no Stream is listened to.
const POLL_MAX_INTERVAL_SECS_POLLING: u64 = 3_600;
/// The same with the Stream on: reads only cover what a disconnection may have missed.
const POLL_MAX_INTERVAL_SECS_STREAMING: u64 = 6 * 3_600;

/// `[outcome]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutcomeConfig {
    /// Follow each created instance until it is decided.
    pub follow: bool,
    /// Learn decisions from DingTalk Stream mode events as they happen.
    pub stream: bool,
    /// The first read of an undecided instance, this long after it was created.
    pub poll_first_secs: u64,
    /// Longest time between reads (they double from `poll_first_secs`); by default an hour
    /// without the Stream and six hours with it.
    pub poll_max_interval_secs: Option<u64>,
    /// After this many days undecided, the outcome becomes `unknown` and reads stop.
    pub give_up_after_days: u64,
    /// The share of the instance-read API's rate limit that reads may use (0 < share ≤ 1).
    pub poll_share: f64,
    /// Read the instance once more after a Stream decision, for the approvers' records.
    pub fetch_records: bool,
    /// Where decisions are POSTed for jobs that name no `callback_url`.
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook signing secret.
    pub(crate) webhook_secret_env: String,
    /// File holding the webhook signing secret; wins over the env. A relative name is looked
    /// up in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    pub(crate) webhook_secret_file: Option<PathBuf>,
    /// A notification not accepted after this many hours is given up (`failed`).
    pub webhook_give_up_after_hours: u64,
    /// The first wait before a notification is sent again; waits double up to an hour.
    pub webhook_retry_first_secs: u64,
    /// How long one send may take, connecting included.
    pub webhook_timeout_secs: u64,
}

impl Default for OutcomeConfig {
    fn default() -> Self {
        OutcomeConfig {
            follow: true,
            stream: true,
            poll_first_secs: 60,
            poll_max_interval_secs: None,
            give_up_after_days: 30,
            poll_share: 0.25,
            fetch_records: true,
            webhook_url: None,
            webhook_secret_env: DEFAULT_WEBHOOK_SECRET_ENV.to_owned(),
            webhook_secret_file: None,
            webhook_give_up_after_hours: 72,
            webhook_retry_first_secs: 10,
            webhook_timeout_secs: 15,
        }
    }
}

impl OutcomeConfig {
    /// One message per value that cannot work.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.poll_first_secs == 0 {
            problems.push("[outcome] poll_first_secs: must be at least 1".to_owned());
        }
        if self.poll_max_interval_secs == Some(0) {
            problems.push("[outcome] poll_max_interval_secs: must be at least 1".to_owned());
        }
        if self.give_up_after_days == 0 {
            problems.push("[outcome] give_up_after_days: must be at least 1".to_owned());
        }
        if !(self.poll_share > 0.0 && self.poll_share <= 1.0) {
            problems.push("[outcome] poll_share: must be above 0 and at most 1".to_owned());
        }
        if self.webhook_give_up_after_hours == 0 {
            problems.push("[outcome] webhook_give_up_after_hours: must be at least 1".to_owned());
        }
        if !(1..=3600).contains(&self.webhook_retry_first_secs) {
            problems
                .push("[outcome] webhook_retry_first_secs: must be between 1 and 3600".to_owned());
        }
        if !(1..=300).contains(&self.webhook_timeout_secs) {
            problems.push("[outcome] webhook_timeout_secs: must be between 1 and 300".to_owned());
        }
        if let Some(url) = &self.webhook_url
            && let Err(reason) = check_webhook_url(url)
        {
            problems.push(format!("[outcome] webhook_url: {reason}"));
        }
        problems
    }

    /// Longest time between reads of a pending instance.
    pub(crate) fn poll_max_interval(&self) -> Duration {
        Duration::from_secs(self.poll_max_interval_secs.unwrap_or(if self.stream {
            POLL_MAX_INTERVAL_SECS_STREAMING
        } else {
            POLL_MAX_INTERVAL_SECS_POLLING
        }))
    }

    /// The webhook signing secret, if one is configured: from `webhook_secret_file`, else
    /// the `webhook_secret_env` variable. A named file that cannot be read is an error.
    pub(crate) fn webhook_secret(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(file) = &self.webhook_secret_file {
            let credentials = std::env::var_os(CREDENTIALS_DIRECTORY_ENV);
            let file = resolve_credential(
                "[outcome] webhook_secret_file",
                file,
                credentials.as_deref().map(Path::new),
            )?;
            let text = std::fs::read_to_string(&file).map_err(|e| {
                ConfigError::Secret(format!(
                    "[outcome] webhook_secret_file: cannot read {}: {e}",
                    file.display()
                ))
            })?;
            let secret = text.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                return Err(ConfigError::Secret(format!(
                    "[outcome] webhook_secret_file: {} is empty",
                    file.display()
                )));
            }
            return Ok(Some(Secret::new(secret.to_owned())));
        }
        Ok(std::env::var(&self.webhook_secret_env)
            .ok()
            .filter(|secret| !secret.is_empty())
            .map(Secret::new))
    }
}

/// Why `url` cannot receive notifications, if it cannot: it must be an absolute http or
/// https URL with a host.
pub(crate) fn check_webhook_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?}: only http and https URLs are supported"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: has no host"));
    }
    Ok(())
}
