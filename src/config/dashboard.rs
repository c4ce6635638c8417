//! `[dashboard]`: the operators' web dashboard, served by `run` (or by the `dashboard`
//! command) when `listen` is set.
//!
//! Who may do what:
//! - A listener on a loopback address needs nothing more; one on any other address is
//!   refused unless `allow_remote = true`, and then only with a token.
//! - With a token configured, every page and API answer needs it: a browser logs in with it
//!   once (a session cookie), an API client sends `Authorization: Bearer TOKEN`. Payloads
//!   hold business data, so reads are guarded as well as actions.
//! - With no token (possible on loopback only), everyone who can reach the port may read
//!   and act: the same people who could run the command line on that host.
//! - `read_only` refuses every action whoever asks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CREDENTIALS_DIRECTORY_ENV, ConfigError, resolve_credential};
use crate::secret::Secret;

/// The variable that holds the dashboard token by default.
const DEFAULT_TOKEN_ENV: &str = "APPROVAL_WORKER_DASHBOARD_TOKEN";
/// Shorter tokens are refused: a token guards a listener others can reach, where it can be
/// guessed at the speed of the network.
const MIN_TOKEN_CHARS: usize = 16;
/// Where the `dashboard` command listens when neither `--listen` nor `listen` says.
pub(crate) const DEFAULT_DASHBOARD_LISTEN: &str = "127.0.0.1:9188";

/// `[dashboard]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Where `run` serves the dashboard; none (off) when absent.
    #[serde(deserialize_with = "socket_address")]
    pub listen: Option<SocketAddr>,
    /// Whether `listen` may be an address other hosts reach (needs a token).
    pub allow_remote: bool,
    /// File holding the token; wins over the env. A relative name is looked up in
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token.
    pub token_env: String,
    /// Refuse every action (retry, cancel, bulk); pages and the API only read.
    pub read_only: bool,
    /// Mark the session cookie `Secure`: set it when browsers reach the dashboard over https
    /// (a TLS-terminating proxy), as the dashboard itself cannot tell.
    pub secure_cookie: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            listen: None,
            allow_remote: false,
            token_file: None,
            token_env: DEFAULT_TOKEN_ENV.to_owned(),
            read_only: false,
            secure_cookie: false,
        }
    }
}

impl DashboardConfig {
    /// One message per value that cannot work.
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(listen) = self.listen
            && let Err(problem) = self.check_listen(listen)
        {
            problems.push(format!("[dashboard] listen: {problem}"));
        }
        if self.token_env.trim().is_empty() {
            problems.push("[dashboard] token_env: must not be empty".to_owned());
        }
        problems
    }

    /// Why the dashboard may not listen on `addr`, if it may not: an address other hosts
    /// can reach needs `allow_remote = true`.
    pub(crate) fn check_listen(&self, addr: SocketAddr) -> Result<(), String> {
        if addr.ip().is_loopback() || self.allow_remote {
            return Ok(());
        }
        Err(format!(
            "{addr} is reachable from other hosts; listen on 127.0.0.1 (or [::1]), or set \
             allow_remote = true with a token (token_file or ${}) to serve other hosts",
            self.token_env
        ))
    }

    /// The token, if one is configured: from `token_file`, else the `token_env` variable.
    /// A named file that cannot be read, a token shorter than [`MIN_TOKEN_CHARS`], or no
    /// token at all with `allow_remote` is an error.
    pub(crate) fn token(&self) -> Result<Option<Secret>, ConfigError> {
        let token = match &self.token_file {
            Some(file) => Some(read_token_file(file)?),
            None => std::env::var(&self.token_env)
                .ok()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty()),
        };
        match token {
            Some(token) if token.chars().count() < MIN_TOKEN_CHARS => {
                Err(ConfigError::Secret(format!(
                    "[dashboard] the token (from {}) is shorter than {MIN_TOKEN_CHARS} \
                     characters; make a long random one, e.g. `openssl rand -hex 32`",
                    self.token_source()
                )))
            }
            Some(token) => Ok(Some(Secret::new(token))),
            None if self.allow_remote => Err(ConfigError::Secret(format!(
                "[dashboard] allow_remote = true needs a token: set token_file or export {}",
                self.token_env
            ))),
            None => Ok(None),
        }
    }

    /// Where the token comes from, for messages.
    fn token_source(&self) -> String {
        match &self.token_file {
            Some(file) => format!("token_file {}", file.display()),
            None => format!("${}", self.token_env),
        }
    }
}

/// `listen` as an IP address and port, with a message that says so (the standard one,
/// "invalid socket address syntax", leaves a user who wrote `localhost:9188` guessing).
fn socket_address<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP address and port such as \"127.0.0.1:9188\" or \"[::1]:9188\" \
             (a host name such as localhost is not accepted)"
        ))
    })
}

fn read_token_file(file: &Path) -> Result<String, ConfigError> {
    let credentials = std::env::var_os(CREDENTIALS_DIRECTORY_ENV);
    let file = resolve_credential(
        "[dashboard] token_file",
        file,
        credentials.as_deref().map(Path::new),
    )?;
    let text = std::fs::read_to_string(&file).map_err(|e| {
        ConfigError::Secret(format!(
            "[dashboard] token_file: cannot read {}: {e}",
            file.display()
        ))
    })?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(ConfigError::Secret(format!(
            "[dashboard] token_file: {} is empty",
            file.display()
        )));
    }
    Ok(token)
}
