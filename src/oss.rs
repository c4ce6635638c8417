//! The OSS PUT of an attachment to the signed URL of an upload ticket (dingtalk-api.md §5.5):
//! streams from disk with exactly the ticket's headers and classifies OSS's answer.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use md5::{Digest, Md5};
use reqwest::header::{CONTENT_LENGTH, ETAG, HeaderMap, HeaderName, HeaderValue};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::io::ReaderStream;

/// Read size when streaming the file: large enough for throughput, small enough for memory.
const CHUNK_BYTES: usize = 64 * 1024;
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
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// True when the ticket's signature is no longer accepted: only a new upload ticket (new
    /// uploadKey) can help, so the caller goes back to asking for one.
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired { .. })
    }

    /// The HTTP status OSS answered with, when it answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Expired { status, .. } => Some(*status),
            Self::Rejected { status, .. } => (*status != 0).then_some(*status),
            Self::Transient { status, .. } => *status,
            Self::FileChanged { .. } | Self::Io { .. } => None,
        }
    }
}

/// A successful PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    /// The `ETag` OSS returned, if any.
    pub etag: Option<String>,
    /// Bytes sent.
    pub bytes: u64,
}

/// Client for the OSS PUT. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Oss {
    http: reqwest::Client,
    idle_timeout: Duration,
}

impl Oss {
    /// `request_timeout` bounds each stall (no body progress, or waiting for the answer), not
    /// the whole upload: a 1 GiB file may take far longer than any sensible per-call limit.
    ///
    /// reqwest 0.12's `read_timeout` cannot be used for this: until the response headers
    /// arrive it is a deadline from the start of the request, so it would cut long uploads.
    /// The stall watchdog lives in [`Oss::put_file`] instead.
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Result<Self, OssError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(connect_timeout)
            // A redirect cannot replay a streamed body, and OSS does not redirect signed PUTs.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OssError::Transient {
                status: None,
                detail: format!("cannot build HTTP client: {e}"),
                sent: false,
            })?;
        Ok(Self {
            http,
            idle_timeout: request_timeout,
        })
    }

    /// PUTs `path` to `url` with exactly `headers`, streaming it from disk. The file must still
    /// be `expected_size` bytes with MD5 `expected_md5_hex`, else [`OssError::FileChanged`].
    pub async fn put_file(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        path: &Path,
        expected_size: u64,
        expected_md5_hex: &str,
    ) -> Result<PutReceipt, OssError> {
        let io_error = |source| OssError::Io {
            path: path.to_owned(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(io_error)?;
        let actual_size = file.metadata().await.map_err(io_error)?.len();
        if actual_size != expected_size {
            return Err(file_changed(
                path,
                format!("{actual_size} bytes, expected {expected_size}"),
            ));
        }
        let header_map = ticket_headers(headers, expected_size)?;

        let progress = Arc::new(Progress::new());
        let body = reqwest::Body::wrap_stream(body_stream(file, expected_size, &progress));
        let send = self.http.put(url).headers(header_map).body(body).send();
        let response = tokio::select! {
            result = send => result,
            () = progress.stalled(self.idle_timeout) => {
                return Err(OssError::Transient {
                    status: None,
                    detail: format!("no progress for {} ms", self.idle_timeout.as_millis()),
                    sent: true,
                });
            }
        };
        let short_file = progress.short.load(Ordering::Acquire);
        let sent_bytes = progress.bytes.load(Ordering::Acquire);
        if short_file {
            return Err(file_changed(
                path,
                format!("ended after {sent_bytes} of {expected_size} bytes while uploading"),
            ));
        }
        let response = response.map_err(transport_error)?;
        // Compare only a complete stream: OSS may answer an error before reading it all.
        if sent_bytes == expected_size {
            let sent_md5 = progress.md5_hex();
            if !sent_md5.eq_ignore_ascii_case(expected_md5_hex) {
                return Err(file_changed(
                    path,
                    format!("sent MD5 {sent_md5}, expected {expected_md5_hex}"),
                ));
            }
        }

        let status = response.status();
        let etag = header_text(response.headers(), ETAG);
        let request_id = header_text(
            response.headers(),
            HeaderName::from_static("x-oss-request-id"),
        );
        let body = tokio::time::timeout(self.idle_timeout, response.bytes())
            .await
            .map_err(|_| OssError::Transient {
                status: Some(status.as_u16()),
                detail: "timed out reading the answer".to_owned(),
                sent: true,
            })?
            .map_err(transport_error)?;
        tracing::debug!(
            status = status.as_u16(),
            bytes = sent_bytes,
            "OSS PUT answered"
        );
        if status.is_success() && sent_bytes != expected_size {
            return Err(OssError::Transient {
                status: Some(status.as_u16()),
                detail: format!("answered after {sent_bytes} of {expected_size} bytes"),
                sent: true,
            });
        }
        if status.is_success() {
            return Ok(PutReceipt {
                etag,
                bytes: sent_bytes,
            });
        }
        Err(classify(
            status.as_u16(),
            &String::from_utf8_lossy(&body),
            request_id,
        ))
    }
}

/// What the upload stream has done so far, shared with the stall watchdog.
struct Progress {
    md5: Mutex<Md5>,
    bytes: AtomicU64,
    /// Set when the file ended before `expected_size` bytes.
    short: AtomicBool,
    last_progress: Mutex<Instant>,
}

impl Progress {
    fn new() -> Self {
        Self {
            md5: Mutex::new(Md5::new()),
            bytes: AtomicU64::new(0),
            short: AtomicBool::new(false),
            last_progress: Mutex::new(Instant::now()),
        }
    }

    fn record(&self, chunk: &[u8]) {
        self.md5
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update(chunk);
        self.bytes.fetch_add(chunk.len() as u64, Ordering::AcqRel);
        *self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn md5_hex(&self) -> String {
        let md5 = self.md5.lock().unwrap_or_else(PoisonError::into_inner);
        hex::encode(md5.clone().finalize())
    }

    /// Completes once nothing has happened for `idle`: hyper pulls the next chunk only when
    /// the socket takes data, so a stuck upload shows as a silent stream; after the last chunk
    /// it measures the wait for OSS's answer.
    async fn stalled(&self, idle: Duration) {
        loop {
            let last = *self
                .last_progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The file as a stream of chunks, hashed as they go out; a file that ends early turns into a
/// stream error so the request is aborted instead of sending a short body.
fn body_stream(
    file: tokio::fs::File,
    expected_size: u64,
    progress: &Arc<Progress>,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send + 'static {
    // `take` keeps a file that grew from overrunning Content-Length; the MD5 check catches it.
    let chunks = ReaderStream::with_capacity(file.take(expected_size), CHUNK_BYTES);
    let recorder = Arc::clone(progress);
    let finisher = Arc::clone(progress);
    chunks
        .inspect_ok(move |chunk| recorder.record(chunk))
        .chain(stream::once(async move {
            if finisher.bytes.load(Ordering::Acquire) < expected_size {
                finisher.short.store(true, Ordering::Release);
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"))
            } else {
                Ok(bytes::Bytes::new())
            }
        }))
        .try_filter(|chunk| futures_util::future::ready(!chunk.is_empty()))
}

/// The ticket's headers, verbatim, plus an explicit Content-Length so the body is not chunked
/// (OSS's V1 signature covers what we send; nothing of our own is added).
fn ticket_headers(headers: &BTreeMap<String, String>, size: u64) -> Result<HeaderMap, OssError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let invalid = |what: &str| OssError::Rejected {
            status: 0,
            code: "InvalidTicketHeader".to_owned(),
            message: format!("upload ticket header {name:?} has an invalid {what}"),
            request_id: None,
        };
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid("name"))?;
        let header_value = HeaderValue::from_str(value).map_err(|_| invalid("value"))?;
        map.insert(header_name, header_value);
    }
    if !map.contains_key(CONTENT_LENGTH) {
        map.insert(CONTENT_LENGTH, HeaderValue::from(size));
    }
    Ok(map)
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn file_changed(path: &Path, detail: String) -> OssError {
    OssError::FileChanged {
        path: path.to_owned(),
        detail,
    }
}

fn transport_error(error: reqwest::Error) -> OssError {
    // The signed URL carries credentials in its query: never print it.
    let sent = !error.is_connect();
    let error = error.without_url();
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    OssError::Transient {
        status: None,
        detail,
        sent,
    }
}

/// Classifies an OSS error answer (`<Error><Code>…</Code><Message>…</Message>…</Error>`).
fn classify(status: u16, body: &str, header_request_id: Option<String>) -> OssError {
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
fn xml_text(xml: &str, tag: &str) -> Option<String> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap as AxumHeaders, StatusCode};
    use axum::response::IntoResponse;
    use std::collections::BTreeSet;

    const SIGNED_QUERY: &str = "Signature=SIG-SECRET-123";

    /// What the fake OSS received.
    #[derive(Clone)]
    struct Received {
        headers: AxumHeaders,
        body: Bytes,
    }

    type Log = Arc<Mutex<Vec<Received>>>;

    /// A fake OSS answering every PUT with `status` and `body` after recording it.
    async fn fake_oss(status: u16, body: &'static str) -> (String, Log) {
        let log: Log = Arc::default();
        let recorder = Arc::clone(&log);
        let app = Router::new().fallback(move |headers: AxumHeaders, body_bytes: Bytes| {
            let recorder = Arc::clone(&recorder);
            async move {
                recorder.lock().unwrap().push(Received {
                    headers,
                    body: body_bytes,
                });
                let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                response.headers_mut().insert(
                    "etag",
                    HeaderValue::from_static("\"5EB63BBBE01EEED093CB22BB8F5ACDC3\""),
                );
                response
                    .headers_mut()
                    .insert("x-oss-request-id", HeaderValue::from_static("HDR-REQ"));
                response
            }
        });
        (serve(app).await, log)
    }

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/bucket/object.pdf?{SIGNED_QUERY}")
    }

    fn ticket_headers_fixture() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("Authorization".to_owned(), "OSS id:signature=".to_owned()),
            (
                "x-oss-date".to_owned(),
                "Tue, 01 Sep 2026 00:00:00 GMT".to_owned(),
            ),
        ])
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file
    }

    fn md5_hex(bytes: &[u8]) -> String {
        hex::encode(Md5::digest(bytes))
    }

    fn oss(request_timeout: Duration) -> Oss {
        Oss::new(Duration::from_secs(2), request_timeout).unwrap()
    }

    #[tokio::test]
    async fn sends_exactly_the_ticket_headers_and_the_bytes() {
        let (url, log) = fake_oss(200, "").await;
        let data = content(200 * 1024 + 7);
        let file = temp_file(&data);
        let receipt = oss(Duration::from_secs(5))
            .put_file(
                &url,
                &ticket_headers_fixture(),
                file.path(),
                data.len() as u64,
                &md5_hex(&data).to_uppercase(),
            )
            .await
            .unwrap();
        assert_eq!(
            receipt,
            PutReceipt {
                etag: Some("\"5EB63BBBE01EEED093CB22BB8F5ACDC3\"".into()),
                bytes: data.len() as u64,
            }
        );

        let received = log.lock().unwrap().clone();
        assert_eq!(received.len(), 1);
        let headers = &received[0].headers;
        let names: BTreeSet<&str> = headers.keys().map(|k| k.as_str()).collect();
        // Host and Content-Length are transport; Accept is added by reqwest and not signed.
        assert_eq!(
            names,
            BTreeSet::from([
                "accept",
                "authorization",
                "content-length",
                "host",
                "x-oss-date"
            ])
        );
        assert_eq!(headers["authorization"], "OSS id:signature=");
        assert_eq!(headers["x-oss-date"], "Tue, 01 Sep 2026 00:00:00 GMT");
        assert_eq!(headers["accept"], "*/*");
        assert_eq!(headers["content-length"], data.len().to_string().as_str());
        assert!(
            headers.get("transfer-encoding").is_none(),
            "must not be chunked"
        );
        assert!(headers.get("content-type").is_none());
        assert_eq!(received[0].body.as_ref(), data.as_slice());
    }

    #[tokio::test]
    async fn empty_file_is_sent_with_zero_length() {
        let (url, log) = fake_oss(200, "").await;
        let file = temp_file(b"");
        let receipt = oss(Duration::from_secs(5))
            .put_file(&url, &BTreeMap::new(), file.path(), 0, &md5_hex(b""))
            .await
            .unwrap();
        assert_eq!(receipt.bytes, 0);
        let received = log.lock().unwrap().clone();
        assert_eq!(received[0].headers["content-length"], "0");
    }

    #[tokio::test]
    async fn a_file_of_the_wrong_size_is_not_sent() {
        let (url, log) = fake_oss(200, "").await;
        let file = temp_file(&content(100));
        let err = oss(Duration::from_secs(5))
            .put_file(&url, &ticket_headers_fixture(), file.path(), 101, "00")
            .await
            .unwrap_err();
        assert!(matches!(err, OssError::FileChanged { .. }), "{err:?}");
        assert!(!err.is_retryable());
        assert!(log.lock().unwrap().is_empty());

        let missing = oss(Duration::from_secs(5))
            .put_file(
                &url,
                &BTreeMap::new(),
                Path::new("/nonexistent/x.pdf"),
                1,
                "00",
            )
            .await
            .unwrap_err();
        assert!(matches!(missing, OssError::Io { .. }), "{missing:?}");
    }

    #[tokio::test]
    async fn content_that_differs_from_the_expected_md5_is_file_changed() {
        let (url, log) = fake_oss(200, "").await;
        let data = content(1000);
        let file = temp_file(&data);
        let err = oss(Duration::from_secs(5))
            .put_file(
                &url,
                &ticket_headers_fixture(),
                file.path(),
                1000,
                &md5_hex(b"something else"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OssError::FileChanged { detail, .. } if detail.contains("MD5")),
            "{err:?}"
        );
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    async fn put_against(status: u16, body: &'static str) -> OssError {
        let (url, _log) = fake_oss(status, body).await;
        let data = content(10);
        let file = temp_file(&data);
        oss(Duration::from_secs(5))
            .put_file(
                &url,
                &ticket_headers_fixture(),
                file.path(),
                10,
                &md5_hex(&data),
            )
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn expired_signature_is_recognised() {
        let err = put_against(
            403,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>AccessDenied</Code>
  <Message>Request has expired.</Message>
  <RequestId>5C3D9175B6FC201293AD****</RequestId>
  <HostId>bucket.oss-cn-zhangjiakou.aliyuncs.com</HostId>
  <Expires>2026-09-01T00:15:00.000Z</Expires>
</Error>"#,
        )
        .await;
        assert!(
            matches!(&err, OssError::Expired { status: 403, code, message }
                if code == "AccessDenied" && message == "Request has expired."),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        assert!(err.is_expired());
        assert_eq!(err.http_status(), Some(403));

        let skewed = put_against(
            403,
            "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>",
        )
        .await;
        assert!(matches!(skewed, OssError::Expired { .. }), "{skewed:?}");
    }

    #[tokio::test]
    async fn other_4xx_are_rejected_with_code_and_request_id() {
        let err = put_against(
            403,
            "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><RequestId>REQ-1</RequestId></Error>",
        )
        .await;
        assert_eq!(
            err.to_string(),
            "OSS PUT: HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided. (request id REQ-1)"
        );
        assert!(!err.is_retryable());

        let denied = put_against(
            403,
            "<Error><Code>AccessDenied</Code><Message>You have no right to access this object.</Message></Error>",
        )
        .await;
        assert!(
            matches!(&denied, OssError::Rejected { request_id: Some(id), .. } if id == "HDR-REQ"),
            "{denied:?}"
        );
    }

    #[tokio::test]
    async fn server_errors_are_transient() {
        let err = put_against(
            503,
            "<Error><Code>ServiceUnavailable</Code><Message>busy</Message></Error>",
        )
        .await;
        assert!(
            matches!(
                &err,
                OssError::Transient {
                    status: Some(503),
                    sent: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        let html = put_against(502, "<html>Bad Gateway</html>").await;
        assert!(html.is_retryable());
    }

    #[tokio::test]
    async fn a_silent_server_times_out_as_transient() {
        let app = Router::new().fallback(|body: Bytes| async move {
            drop(body);
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK
        });
        let url = serve(app).await;
        let data = content(10);
        let file = temp_file(&data);
        let started = std::time::Instant::now();
        let err = oss(Duration::from_millis(300))
            .put_file(&url, &BTreeMap::new(), file.path(), 10, &md5_hex(&data))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                OssError::Transient {
                    status: None,
                    sent: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_slow_upload_outlives_the_request_timeout() {
        // The server stops reading three times for 250 ms: every stall is shorter than the
        // 600 ms timeout but the whole upload takes longer.
        let app = Router::new().fallback(|body: Body| async move {
            let mut stream = body.into_data_stream();
            let mut total = 0usize;
            let mut next_pause = 8 << 20;
            while let Some(chunk) = stream.next().await {
                total += chunk.unwrap().len();
                if total >= next_pause {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    next_pause += 8 << 20;
                }
            }
            (StatusCode::OK, total.to_string())
        });
        let url = serve(app).await;
        let data = content(32 << 20);
        let file = temp_file(&data);
        let started = std::time::Instant::now();
        let receipt = oss(Duration::from_millis(600))
            .put_file(
                &url,
                &BTreeMap::new(),
                file.path(),
                data.len() as u64,
                &md5_hex(&data),
            )
            .await
            .unwrap();
        assert_eq!(receipt.bytes, 32 << 20);
        assert!(
            started.elapsed() > Duration::from_millis(600),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_file_that_shrinks_while_streaming_is_file_changed() {
        let data = content(16 << 20);
        let file = temp_file(&data);
        let victim = file.path().to_owned();
        // The server truncates the file as soon as the upload starts.
        let app = Router::new().fallback(move |body: Body| {
            let victim = victim.clone();
            async move {
                let mut stream = body.into_data_stream();
                let mut truncated = false;
                while let Some(Ok(_)) = stream.next().await {
                    if !truncated {
                        std::fs::OpenOptions::new()
                            .write(true)
                            .open(&victim)
                            .unwrap()
                            .set_len(1 << 20)
                            .unwrap();
                        truncated = true;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                StatusCode::OK
            }
        });
        let url = serve(app).await;
        let err = oss(Duration::from_secs(5))
            .put_file(
                &url,
                &BTreeMap::new(),
                file.path(),
                data.len() as u64,
                &md5_hex(&data),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OssError::FileChanged { detail, .. } if detail.contains("while uploading")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn connect_errors_are_not_sent_and_hide_the_signed_url() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let data = content(10);
        let file = temp_file(&data);
        let err = oss(Duration::from_secs(2))
            .put_file(
                &format!("http://{closed}/o?{SIGNED_QUERY}"),
                &BTreeMap::new(),
                file.path(),
                10,
                &md5_hex(&data),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, OssError::Transient { sent: false, .. }),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("SIG-SECRET"));
    }

    #[test]
    fn bad_ticket_headers_are_rejected_before_sending() {
        let headers = BTreeMap::from([("bad header".to_owned(), "v".to_owned())]);
        assert!(matches!(
            ticket_headers(&headers, 1),
            Err(OssError::Rejected { status: 0, .. })
        ));
    }

    #[test]
    fn xml_fields_are_extracted_and_unescaped() {
        let xml = "<Error><Code>X</Code><Message> a &lt;b&gt; &amp; c </Message></Error>";
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("X"));
        assert_eq!(xml_text(xml, "Message").as_deref(), Some("a <b> & c"));
        assert_eq!(xml_text(xml, "RequestId"), None);
        assert_eq!(xml_text("<Code>unterminated", "Code"), None);
    }
}
