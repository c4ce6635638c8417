//! HTTP client for api.dingtalk.com and oapi.dingtalk.com: settings, the shared client handle
//! and the public types of the approval-with-attachment flow (dingtalk-api.md); reading
//! decisions back (§5.9) and the Stream mode client that pushes them (`stream`, §5.13).
//!
//! Knows nothing of jobs or queues. One [`DingTalk`] per app; clones share the token cache,
//! the rate limiter, the throttle pause and the unionId cache.

mod attachment;
mod call;
mod classify;
mod counter;
mod error;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod fake;
mod instance;
mod isotime;
mod limiter;
mod multipart;
mod pacing;
mod storage;
mod stream;
mod template;
mod token;
mod user;
mod wire;
mod workflow;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};

pub use attachment::dd_attachment_file_ids;
pub(crate) use attachment::dd_attachment_value;
pub(crate) use counter::CallCount;
pub use error::{DingTalkError, ErrorClass};
pub(crate) use instance::{InstanceInfo, InstanceOutcome};
pub(crate) use isotime::parse_time_ms;
pub use multipart::{MAX_PARTS, MAX_PARTS_PER_QUERY, MIN_PART_BYTES, PartTicket};
pub use storage::{Dentry, UploadInfoRequest, UploadTicket};
pub(crate) use stream::{Ack, Delivery, Stream, StreamState, StreamStatus};
pub use template::{FormField, FormSchema};
pub(crate) use workflow::{Approver, CreateInstance, FormValue};

use crate::secret::Secret;
use counter::CallCounter;
use limiter::Limiter;
pub use limiter::SharedPace;
pub(crate) use pacing::{Pacing, measured};
use token::TokenCache;

/// How to reach DingTalk and as which app.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL of the new-style API, normally `https://api.dingtalk.com`.
    pub api_base: String,
    /// Base URL of the legacy API, normally `https://oapi.dingtalk.com`.
    pub oapi_base: String,
    /// The internal app's Client ID (AppKey).
    pub app_key: String,
    /// The app's Client Secret.
    pub app_secret: Secret,
    /// The app's AgentId, sent with the space query and as `microappAgentId`.
    pub agent_id: i64,
    /// Calls per second across all clones of the client; 0 means unlimited.
    pub rate_limit_per_sec: u32,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for a whole call (request and response).
    pub request_timeout: Duration,
}

/// A DingTalk client for one app. Cheap to clone; clones share all state.
#[derive(Clone)]
pub struct DingTalk {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClientSettings,
    http: reqwest::Client,
    tokens: TokenCache,
    limiter: Limiter,
    /// userId → unionId; the mapping never changes, and the directory bounds its size.
    union_ids: Mutex<HashMap<String, String>>,
    /// One lookup at a time, so concurrent jobs of a new originator share one call.
    union_lookup: tokio::sync::Mutex<()>,
    token_fetches: AtomicU64,
    calls: CallCounter,
}

impl DingTalk {
    /// Builds the client; fails on unusable base URLs or an HTTP stack that cannot start.
    pub fn new(settings: ClientSettings) -> Result<Self, DingTalkError> {
        for (name, base) in [
            ("api_base", &settings.api_base),
            ("oapi_base", &settings.oapi_base),
        ] {
            let url = reqwest::Url::parse(base)
                .map_err(|e| DingTalkError::Config(format!("{name} {base:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
                return Err(DingTalkError::Config(format!(
                    "{name} {base:?}: expected an http(s) URL without query"
                )));
            }
        }
        if settings.app_key.is_empty() || settings.app_secret.expose().is_empty() {
            return Err(DingTalkError::Config(
                "app_key and app_secret must not be empty".to_owned(),
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("approval-worker/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            // A redirect would carry the access-token header to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DingTalkError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: Limiter::new(settings.rate_limit_per_sec),
                settings,
                http,
                tokens: TokenCache::new(),
                union_ids: Mutex::new(HashMap::new()),
                union_lookup: tokio::sync::Mutex::new(()),
                token_fetches: AtomicU64::new(0),
                calls: CallCounter::default(),
            }),
        })
    }

    /// Paces this client's calls through slots shared with other processes calling as the
    /// same app, instead of on its own (see [`SharedPace`]). Affects every clone; only the
    /// first pace given counts, and only when the client has a rate limit.
    pub fn share_pace(&self, pace: Arc<dyn SharedPace>) {
        self.inner.limiter.share(pace);
    }

    /// The configured calls per second per API; 0 means unlimited.
    pub fn rate_limit_per_sec(&self) -> u32 {
        self.inner.settings.rate_limit_per_sec
    }

    /// How many requests went to the token endpoint.
    #[cfg(test)]
    fn token_fetches(&self) -> u64 {
        self.inner
            .token_fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every call sent so far, tallied per endpoint and result (for metrics and the quota).
    pub(crate) fn call_counts(&self) -> Vec<CallCount> {
        self.inner.calls.snapshot()
    }

    /// Fetches an access token now (or uses the cached one): proves the app key and secret.
    pub(crate) async fn check_token(&self) -> Result<(), DingTalkError> {
        self.token().await.map(|_| ())
    }

    fn agent_id(&self) -> i64 {
        self.inner.settings.agent_id
    }
}

impl fmt::Debug for DingTalk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.inner.settings;
        f.debug_struct("DingTalk")
            .field("api_base", &settings.api_base)
            .field("oapi_base", &settings.oapi_base)
            .field("app_key", &settings.app_key)
            .field("agent_id", &settings.agent_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
