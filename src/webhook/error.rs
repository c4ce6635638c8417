//! `WebhookError`: why a delivery failed, and whether trying the same delivery again later
//! can succeed.

/// A failed delivery. Messages never carry the secret or the URL's query (which may hold a
/// receiver's token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WebhookError {
    /// The receiver answered, but not with a 2xx.
    #[error("webhook {url} answered HTTP {status}{}: {excerpt}", location_suffix(.location))]
    Status {
        /// The URL without query or credentials.
        url: String,
        status: u16,
        /// The start of the answer's body (at most 200 characters).
        excerpt: String,
        /// Where a 3xx pointed, which is not followed.
        location: Option<String>,
    },
    /// No answer: connect error, timeout, reset.
    #[error("webhook {url} not reached ({}): {detail}", if *.sent { "request may have arrived" } else { "request not sent" })]
    Transport {
        url: String,
        /// False only when the request provably never left (connect, DNS, TLS handshake).
        sent: bool,
        detail: String,
    },
    /// The delivery cannot be sent as given (URL, delivery id, secret).
    #[error("webhook delivery unusable: {0}")]
    Invalid(String),
    /// The HTTP client would not start.
    #[error("webhook HTTP client: {0}")]
    Client(String),
}

impl WebhookError {
    /// Whether the same delivery may succeed later. No answer, 5xx, 408 and 429: yes. Other
    /// 4xx: also yes: they mean the receiver is not ready for us (route not deployed, secret
    /// not installed yet, a bug in its parser), which its owner fixes without telling us,
    /// and losing an outcome is worse than a few bounded retries (the caller caps attempts,
    /// and `show` displays the status and answer). Except 410 Gone, the one status that says
    /// "never again". A 3xx: no: redirects are not followed (the signed body would go where
    /// the receiver's answer says), so the configured URL itself must change. Invalid
    /// input and a client that cannot start: no.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => status_retryable(*status),
            Self::Transport { .. } => true,
            Self::Invalid(_) | Self::Client(_) => false,
        }
    }

    /// The receiver's HTTP status, when it answered.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn status_retryable(status: u16) -> bool {
    match status {
        300..=399 | 410 => false,
        400..=599 => true,
        // 1xx never reaches us (the HTTP client handles it), anything else is not HTTP.
        _ => false,
    }
}

fn location_suffix(location: &Option<String>) -> String {
    location
        .as_deref()
        .map(|l| format!(" (redirect to {l}, not followed)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> WebhookError {
        WebhookError::Status {
            url: "https://receiver.example/hook".into(),
            status,
            excerpt: "e".into(),
            location: None,
        }
    }

    #[test]
    fn server_errors_throttling_timeouts_and_client_errors_are_retried_but_gone_and_redirects_not()
    {
        for status in [500, 502, 503, 504, 408, 429, 400, 401, 403, 404, 422] {
            assert!(answered(status).retryable(), "{status}");
        }
        for status in [301, 302, 307, 308, 410] {
            assert!(!answered(status).retryable(), "{status}");
        }
        assert_eq!(answered(503).status(), Some(503));
        assert!(!WebhookError::Invalid("x".into()).retryable());
    }
}
