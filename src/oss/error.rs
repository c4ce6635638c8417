//! What a failed OSS PUT means for the caller: the error type and the classification of
//! OSS's answers and of transport failures.

use std::io;
use std::path::{Path, PathBuf};

/// OSS error bodies are quoted in messages only this far.
const MAX_MESSAGE_CHARS: usize = 300;

/// A failed PUT, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum OssError {
    /// The signature expired (or our clock is off): get a new upload ticket.
    #[error("OSS PUT: HTTP {status} {code}: {message} (upload ticket expired)")]
    Expired {
        /// HTTP status (403).
        status: u16,
        /// OSS error code, e.g. `AccessDenied`, `RequestTimeTooSkewed`.
        code: String,
        /// OSS message.
        message: String,
    },
    /// OSS refused the request for good, e.g. `SignatureDoesNotMatch`.
    #[error("OSS PUT: HTTP {status} {code}: {message}{}", request_id.as_deref().map(|id| format!(" (request id {id})")).unwrap_or_default())]
    Rejected {
        /// HTTP status (0 when the ticket itself was unusable and nothing was sent).
        status: u16,
        /// OSS error code.
        code: String,
        /// OSS message.
        message: String,
        /// OSS request id, from the body or the `x-oss-request-id` header.
        request_id: Option<String>,
    },
    /// Server error, timeout or network trouble: the same PUT may succeed later.
    #[error("OSS PUT: {}{detail}", status.map(|s| format!("HTTP {s}: ")).unwrap_or_default())]
    Transient {
        /// HTTP status when OSS answered.
        status: Option<u16>,
        /// What happened (never the signed URL).
        detail: String,
        /// False only when the request provably never left (connect error).
        sent: bool,
    },
    /// The file is not the one the ticket was issued for (size or content changed).
    #[error("{}: file changed: {detail}", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// How it differs.
        detail: String,
    },
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl OssError {
    /// True when repeating the same PUT with the same ticket may succeed. `Expired` is not: it
    /// needs a new ticket; `FileChanged` and `Io` need a new look at the file.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// True when the ticket's signature is no longer accepted: only a new upload ticket (new
    /// uploadKey) can help, so the caller goes back to asking for one.
    pub(crate) fn is_expired(&self) -> bool {
        matches!(self, Self::Expired { .. })
    }

    /// The HTTP status OSS answered with, when it answered.
    pub(crate) fn http_status(&self) -> Option<u16> {
        match self {
            Self::Expired { status, .. } => Some(*status),
            Self::Rejected { status, .. } => (*status != 0).then_some(*status),
            Self::Transient { status, .. } => *status,
            Self::FileChanged { .. } | Self::Io { .. } => None,
        }
    }
}

pub(super) fn file_changed(path: &Path, detail: String) -> OssError {
    OssError::FileChanged {
        path: path.to_owned(),
        detail,
    }
}

pub(super) fn transport_error(error: reqwest::Error) -> OssError {
    // The signed URL carries credentials in its query: never print it.
    let sent = !error.is_connect();
    OssError::Transient {
        status: None,
        detail: crate::net::describe(error),
        sent,
    }
}

/// Classifies an OSS error answer (`<Error><Code>…</Code><Message>…</Message>…</Error>`).
pub(super) fn classify(status: u16, body: &str, header_request_id: Option<String>) -> OssError {
    let code = xml_text(body, "Code").unwrap_or_default();
    let message = xml_text(body, "Message").unwrap_or_else(|| excerpt(body));
    let request_id = xml_text(body, "RequestId").or(header_request_id);
    let expired = status == 403
        && ((code == "AccessDenied" && message.to_ascii_lowercase().contains("expired"))
            || code == "RequestTimeTooSkewed");
    if expired {
        OssError::Expired {
            status,
            code,
            message,
        }
    } else if status >= 500 || status == 408 || status == 429 || code == "RequestTimeout" {
        // 408/429 and OSS's RequestTimeout (a 400 for a slow body) are about timing, not the
        // request itself: the same signed PUT can succeed on a later try.
        let code = if code.is_empty() {
            "-".to_owned()
        } else {
            code
        };
        OssError::Transient {
            status: Some(status),
            detail: format!("{code}: {message}"),
            sent: true,
        }
    } else {
        OssError::Rejected {
            status,
            code: if code.is_empty() {
                "-".to_owned()
            } else {
                code
            },
            message,
            request_id,
        }
    }
}

/// Text of the first `<tag>…</tag>` in `xml`, with the five predefined entities decoded.
pub(super) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let text = xml[start..start + len]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    Some(text.trim().to_owned())
}

fn excerpt(body: &str) -> String {
    let text = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text,
    }
}
