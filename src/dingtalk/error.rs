//! `DingTalkError` and `ErrorClass`: what went wrong on a DingTalk call and what to do about it.

use std::time::Duration;

/// The endpoint name of the access-token call.
pub(crate) const TOKEN_ENDPOINT: &str = "oauth2/accessToken";

/// The endpoint name of the Stream mode gateway's connection opening (§5.13).
pub(crate) const STREAM_OPEN_ENDPOINT: &str = "gateway/connections/open";

/// The endpoint name of the storage commit call.
pub(crate) const COMMIT_ENDPOINT: &str = "storage/files/commit";

/// The endpoint name of the call opening a multipart upload (§5.7).
pub(crate) const MULTIPART_INIT_ENDPOINT: &str = "storage/multiPartUploadInfos/init";

/// The endpoint name of the call giving a multipart upload's part targets (§5.7).
pub(crate) const MULTIPART_QUERY_ENDPOINT: &str = "storage/multiPartUploadInfos/query";

/// Longest pause an in-call retry may wait for; anything longer goes back to the queue, because
/// workers never sleep for minutes (DESIGN §6).
pub(crate) const MAX_IN_CALL_WAIT: Duration = Duration::from_secs(2);

/// What the caller should do about a failed call. Derived from the HTTP status and DingTalk's
/// error code once (in `classify.rs`), so no call site ever matches on message strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The access token was rejected; the client already refreshed it and retried once.
    TokenInvalid,
    /// DingTalk asked us to slow down; nothing was processed. Retry after `retry_after`.
    Throttled {
        /// How long DingTalk (or our reading of its code) wants us to wait.
        retry_after: Duration,
    },
    /// The organisation's monthly API quota is used up: retrying before it resets is pointless.
    QuotaExhausted,
    /// Server-side or network trouble that may go away on its own.
    Transient,
    /// Configuration, permission or validation problem: retrying the same request cannot help.
    Permanent,
}

/// A failed DingTalk call. Messages never carry the app secret or an access token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DingTalkError {
    /// DingTalk answered with an error (HTTP 4xx/5xx, or an oapi `errcode` other than 0).
    #[error("{endpoint}: HTTP {status} {code}: {message}{}", request_id_suffix(.request_id))]
    Api {
        /// Which call failed, e.g. `workflow/processInstances/create`.
        endpoint: &'static str,
        /// HTTP status of the answer (200 for oapi errcode failures).
        status: u16,
        /// DingTalk's error code (`Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`, `33012`, or
        /// `-` when the body carried none).
        code: String,
        /// DingTalk's message (or the start of a non-JSON body).
        message: String,
        /// DingTalk's request id, from the body or the `x-acs-request-id` header.
        request_id: Option<String>,
        /// What to do about it.
        class: ErrorClass,
    },
    /// No usable answer arrived: connect error, timeout, reset.
    #[error("{endpoint}: {}: {detail}", if *.sent { "request failed after sending" } else { "request not sent" })]
    Transport {
        /// Which call failed.
        endpoint: &'static str,
        /// False only when the request provably never left this host (connect/DNS error).
        sent: bool,
        /// The HTTP client's description, without the URL (oapi URLs carry the token).
        detail: String,
    },
    /// A successful status with a body we could not read.
    #[error("{endpoint}: HTTP {status}: unexpected response body: {detail}")]
    Decode {
        /// Which call failed.
        endpoint: &'static str,
        /// HTTP status of the answer.
        status: u16,
        /// What did not parse.
        detail: String,
    },
    /// The call was not sent because DingTalk throttled this app a moment ago and the pause is
    /// longer than an in-call retry may wait; every clone of the client shares the pause.
    #[error("{endpoint}: not sent: DingTalk throttled this app, paused for another {} ms", .retry_after.as_millis())]
    Paused {
        /// Which call was held back.
        endpoint: &'static str,
        /// Time left until the pause ends.
        retry_after: Duration,
    },
    /// The client settings or a call's arguments are unusable.
    #[error("DingTalk client configuration: {0}")]
    Config(String),
}

fn request_id_suffix(request_id: &Option<String>) -> String {
    request_id
        .as_deref()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default()
}

impl DingTalkError {
    /// What the caller should do about this error.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            Self::Api { class, .. } => *class,
            Self::Transport { .. } => ErrorClass::Transient,
            // A 2xx that does not parse is most likely a proxy or a truncated body, not
            // DingTalk's considered answer, so asking again later is worthwhile; DingTalk
            // changing its wire format would show up as repeated failures, not silently.
            Self::Decode { .. } => ErrorClass::Transient,
            Self::Paused { retry_after, .. } => ErrorClass::Throttled {
                retry_after: *retry_after,
            },
            Self::Config(_) => ErrorClass::Permanent,
        }
    }

    /// True when DingTalk may have carried out the request although we saw an error, so a
    /// non-idempotent call (commit, create instance) must be reconciled, not blindly repeated.
    pub(crate) fn may_have_been_processed(&self) -> bool {
        match self {
            Self::Api { status, class, .. } => match class {
                // DingTalk rejects these before doing anything.
                ErrorClass::TokenInvalid | ErrorClass::Throttled { .. } => false,
                _ => *status >= 500,
            },
            Self::Transport { sent, .. } => *sent,
            // DingTalk said 2xx: it did the work, we just could not read the answer.
            Self::Decode { .. } => true,
            Self::Paused { .. } | Self::Config(_) => false,
        }
    }

    /// The HTTP status DingTalk answered with, when it answered.
    pub(crate) fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Decode { status, .. } => Some(*status),
            Self::Transport { .. } | Self::Paused { .. } | Self::Config(_) => None,
        }
    }

    /// True when DingTalk refused the app's credentials (wrong app key or secret): nothing
    /// will work until an operator fixes the configuration.
    pub(crate) fn is_credentials_rejected(&self) -> bool {
        match self {
            Self::Api {
                endpoint,
                status,
                code,
                class: ErrorClass::Permanent,
                ..
            } => match *endpoint {
                TOKEN_ENDPOINT => (400..500).contains(status),
                // The gateway answers wrong credentials with 401 `authFailed` (§5.13); its
                // other 4xx say nothing about them.
                STREAM_OPEN_ENDPOINT => *status == 401 || code.eq_ignore_ascii_case("authFailed"),
                _ => false,
            },
            _ => false,
        }
    }

    /// True when `commit` or a multipart part query refused the uploadKey itself (unknown,
    /// expired or already consumed): the upload must be redone with a fresh ticket. DingTalk does not document
    /// the code for this, so it is recognised here, once: a 4xx `paramError` or any code or
    /// message naming the uploadKey.
    pub(crate) fn is_upload_key_rejected(&self) -> bool {
        match self {
            Self::Api {
                endpoint,
                status,
                code,
                message,
                ..
            } if (*endpoint == COMMIT_ENDPOINT || *endpoint == MULTIPART_QUERY_ENDPOINT)
                && (400..500).contains(status) =>
            {
                code == "paramError"
                    || code.to_ascii_lowercase().contains("uploadkey")
                    || message.to_ascii_lowercase().contains("uploadkey")
            }
            _ => false,
        }
    }

    /// True when DingTalk refused the operator's right to the space (403 `permissionDenied`,
    /// or a permanent 403 without that code): for the storage calls that is what a lapsed
    /// upload grant looks like, which one spaces/infos/query renews.
    pub(crate) fn is_permission_denied(&self) -> bool {
        match self {
            Self::Api {
                status,
                code,
                class: ErrorClass::Permanent,
                ..
            } => *status == 403 || code.eq_ignore_ascii_case("permissionDenied"),
            _ => false,
        }
    }

    /// True when DingTalk says the approval instance does not exist (§5.9): it was deleted.
    pub(crate) fn instance_not_found(&self) -> bool {
        match self {
            Self::Api { code, .. } => {
                code.eq_ignore_ascii_case("processInstanceNotExist")
                    || code.eq_ignore_ascii_case("aflowProcessInstNotExist")
            }
            _ => false,
        }
    }

    /// The call that failed (`"config"` for configuration errors).
    #[cfg(test)]
    pub(crate) fn endpoint(&self) -> &'static str {
        match self {
            Self::Api { endpoint, .. }
            | Self::Transport { endpoint, .. }
            | Self::Decode { endpoint, .. }
            | Self::Paused { endpoint, .. } => endpoint,
            Self::Config(_) => "config",
        }
    }

    /// Whether the client should retry this call itself, right away or after a short pause.
    /// Non-idempotent calls are repeated only when the first attempt provably did nothing.
    pub(crate) fn retry_in_call(&self, idempotent: bool) -> bool {
        if !idempotent && self.may_have_been_processed() {
            return false;
        }
        match self.class() {
            ErrorClass::Transient => true,
            ErrorClass::Throttled { retry_after } => retry_after <= MAX_IN_CALL_WAIT,
            ErrorClass::TokenInvalid | ErrorClass::QuotaExhausted | ErrorClass::Permanent => false,
        }
    }

    /// Replaces every occurrence of the given credentials in the text fields, and any access
    /// token named as one ([`crate::secret::redact`]). Servers and proxies sometimes echo
    /// request parts (URLs, headers, bodies) in their error messages, which are logged and
    /// stored in `last_error`.
    pub(crate) fn redacted(mut self, secrets: &[&str]) -> Self {
        let scrub = |text: &mut String| *text = crate::secret::redact(text, secrets);
        match &mut self {
            Self::Api {
                code,
                message,
                request_id,
                ..
            } => {
                scrub(code);
                scrub(message);
                if let Some(id) = request_id {
                    scrub(id);
                }
            }
            Self::Transport { detail, .. } | Self::Decode { detail, .. } => scrub(detail),
            Self::Config(message) => scrub(message),
            Self::Paused { .. } => {}
        }
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn api(status: u16, class: ErrorClass) -> DingTalkError {
        DingTalkError::Api {
            endpoint: "test/endpoint",
            status,
            code: "someCode".into(),
            message: "some message".into(),
            request_id: Some("REQ-1".into()),
            class,
        }
    }

    #[test]
    fn display_follows_the_documented_shape() {
        assert_eq!(
            api(403, ErrorClass::Permanent).to_string(),
            "test/endpoint: HTTP 403 someCode: some message (request id REQ-1)"
        );
        let mut no_id = api(400, ErrorClass::Permanent);
        if let DingTalkError::Api { request_id, .. } = &mut no_id {
            *request_id = None;
        }
        assert_eq!(
            no_id.to_string(),
            "test/endpoint: HTTP 400 someCode: some message"
        );
    }

    #[test]
    fn processed_only_when_the_server_may_have_acted() {
        let throttled = ErrorClass::Throttled {
            retry_after: Duration::from_secs(1),
        };
        assert!(api(500, ErrorClass::Transient).may_have_been_processed());
        assert!(!api(503, throttled).may_have_been_processed());
        assert!(!api(400, ErrorClass::TokenInvalid).may_have_been_processed());
        assert!(!api(403, throttled).may_have_been_processed());
        assert!(!api(400, ErrorClass::Permanent).may_have_been_processed());
        let sent = |sent| DingTalkError::Transport {
            endpoint: "e",
            sent,
            detail: String::new(),
        };
        assert!(sent(true).may_have_been_processed());
        assert!(!sent(false).may_have_been_processed());
        let decode = DingTalkError::Decode {
            endpoint: "e",
            status: 200,
            detail: String::new(),
        };
        assert!(decode.may_have_been_processed());
        assert_eq!(decode.http_status(), Some(200));
        assert_eq!(sent(true).http_status(), None);
        assert_eq!(decode.class(), ErrorClass::Transient);
        assert_eq!(sent(true).class(), ErrorClass::Transient);
    }

    #[test]
    fn in_call_retries_respect_idempotency_and_pause_length() {
        let short = ErrorClass::Throttled {
            retry_after: Duration::from_secs(1),
        };
        let long = ErrorClass::Throttled {
            retry_after: Duration::from_secs(60),
        };
        assert!(api(500, ErrorClass::Transient).retry_in_call(true));
        assert!(!api(500, ErrorClass::Transient).retry_in_call(false));
        assert!(api(403, short).retry_in_call(false));
        assert!(!api(403, long).retry_in_call(true));
        assert!(!api(403, ErrorClass::QuotaExhausted).retry_in_call(true));
        assert!(!api(400, ErrorClass::Permanent).retry_in_call(true));
        let unsent = DingTalkError::Transport {
            endpoint: "e",
            sent: false,
            detail: String::new(),
        };
        assert!(unsent.retry_in_call(false));
    }

    #[test]
    fn a_permanent_403_is_a_permission_refusal_and_a_throttle_is_not() {
        let denied = |status, code: &str, class| DingTalkError::Api {
            endpoint: COMMIT_ENDPOINT,
            status,
            code: code.into(),
            message: "没有权限".into(),
            request_id: None,
            class,
        };
        assert!(denied(403, "permissionDenied", ErrorClass::Permanent).is_permission_denied());
        assert!(denied(400, "permissionDenied", ErrorClass::Permanent).is_permission_denied());
        assert!(!denied(400, "paramError", ErrorClass::Permanent).is_permission_denied());
        let throttled = ErrorClass::Throttled {
            retry_after: Duration::from_secs(1),
        };
        assert!(
            !denied(403, "Forbidden.AccessDenied.QpsLimitForApi", throttled).is_permission_denied()
        );
    }

    #[test]
    fn redaction_scrubs_every_text_field() {
        let err = DingTalkError::Api {
            endpoint: "e",
            status: 400,
            code: "TOKEN".into(),
            message: "token TOKEN and secret SECRET".into(),
            request_id: None,
            class: ErrorClass::Permanent,
        }
        .redacted(&["TOKEN", "SECRET", ""]);
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("TOKEN") && !text.contains("SECRET"),
            "{text}"
        );
    }
}
