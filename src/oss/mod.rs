//! The OSS PUT of an attachment to the signed URL of an upload ticket (dingtalk-api.md §5.5):
//! streams it from disk, or sends a small file's [`Snapshot`], with exactly the ticket's
//! headers, and classifies OSS's answer.

mod body;
mod error;
#[cfg(test)]
mod part_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, ETAG, HeaderMap, HeaderName, HeaderValue};

use body::{Progress, Span};
pub use error::OssError;
use error::{classify, file_changed, transport_error};

/// A successful PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    /// The `ETag` OSS returned, if any.
    etag: Option<String>,
    /// Bytes sent.
    bytes: u64,
    /// Their MD5, hex.
    pub(crate) md5: String,
}

/// An attachment's content as it was read to be hashed. A small file keeps it for its PUT,
/// which then neither reads the file again nor hands off to the blocking pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub(crate) bytes: Bytes,
}

/// Bytes of one upload handed to the connection so far, readable while it runs (for progress
/// reports and metrics). Cheap to clone: clones share the count.
#[derive(Debug, Clone, Default)]
pub struct SentBytes(Arc<AtomicU64>);

impl SentBytes {
    /// A count that starts at `bytes`: what earlier parts of the same file sent.
    pub fn starting_at(bytes: u64) -> Self {
        Self(Arc::new(AtomicU64::new(bytes)))
    }

    /// Bytes sent so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Counts `bytes` as sent, for tests of what reads the count.
    #[cfg(test)]
    pub(crate) fn add_for_tests(&self, bytes: u64) {
        self.add(bytes);
    }
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

    /// PUTs `path` to `url` with exactly `headers`, streaming it from disk and hashing what
    /// it sends, so the file is read once. `path` must be resolved (no symbolic link on it is
    /// followed: the file checked at that path is the file sent). It must be `expected_size` bytes, before sending
    /// and all the while it is read, else [`OssError::FileChanged`]; so must its modification
    /// time be `expected_modified`, and its MD5 `expected_md5_hex`, when they are given.
    /// What OSS stored is checked against what was sent through the MD5 OSS reports (the
    /// ETag of a simple PUT). `sent` counts the bytes as they go.
    // The ticket's target, the file and what it must be, and the counter: grouping them in a
    // struct would only move the same list into every caller.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_file(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        path: &Path,
        expected_size: u64,
        expected_modified: Option<SystemTime>,
        expected_md5_hex: Option<&str>,
        sent: &SentBytes,
    ) -> Result<PutReceipt, OssError> {
        let header_map = ticket_headers(headers, expected_size)?;
        let progress = Arc::new(Progress::new(sent.clone()));
        let span = Span::whole(expected_size);
        let chunks = body::open(path, expected_size, expected_modified, span, &progress).await?;
        let request = self
            .http
            .put(url)
            .headers(header_map)
            .body(reqwest::Body::wrap_stream(chunks));
        self.send(request, &progress, path, expected_size, expected_md5_hex)
            .await
    }

    /// PUTs one part of a multipart upload (dingtalk-api.md §5.7): `len` bytes of `path` from
    /// `offset`, streamed and hashed like [`Oss::put_file`]'s body. The file must still be
    /// `file_size` bytes, modified at `modified` when given. OSS's ETag of a part is the MD5
    /// of its bytes, so what it stored is checked against what was sent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn put_part(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        path: &Path,
        file_size: u64,
        modified: Option<SystemTime>,
        offset: u64,
        len: u64,
        sent: &SentBytes,
    ) -> Result<PutReceipt, OssError> {
        let header_map = ticket_headers(headers, len)?;
        let progress = Arc::new(Progress::new(sent.clone()));
        let span = Span { offset, len };
        let chunks = body::open(path, file_size, modified, span, &progress).await?;
        let request = self
            .http
            .put(url)
            .headers(header_map)
            .body(reqwest::Body::wrap_stream(chunks));
        self.send(request, &progress, path, len, None).await
    }

    /// Like [`Oss::put_file`], but sends `snapshot`, the content read when the file was
    /// hashed to `md5_hex`, its modification time then `modified`. One `stat` first (on this
    /// thread, as the payload check does): a file whose size or modification time moved since
    /// is [`OssError::FileChanged`], as it would be had it been read again.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn put_snapshot(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        path: &Path,
        snapshot: &Snapshot,
        modified: Option<SystemTime>,
        md5_hex: &str,
        sent: &SentBytes,
    ) -> Result<PutReceipt, OssError> {
        let size = snapshot.bytes.len() as u64;
        let header_map = ticket_headers(headers, size)?;
        body::unchanged_since(path, size, modified)?;
        let progress = Arc::new(Progress::new(sent.clone()));
        progress.set_md5(md5_hex.to_owned());
        progress.record(&snapshot.bytes);
        let request = self
            .http
            .put(url)
            .headers(header_map)
            .body(snapshot.bytes.clone());
        self.send(request, &progress, path, size, Some(md5_hex))
            .await
    }

    /// Sends the PUT under the stall watchdog and checks OSS's answer against the file and
    /// against `expected_md5_hex`, the MD5 the ticket was asked with, if any.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        progress: &Progress,
        path: &Path,
        expected_size: u64,
        expected_md5_hex: Option<&str>,
    ) -> Result<PutReceipt, OssError> {
        let send = request.send();
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
        if let Some(detail) = progress.changed() {
            return Err(file_changed(path, detail));
        }
        let sent_bytes = progress.bytes();
        let response = response.map_err(transport_error)?;

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
            // Set before the body's last chunk left, so every complete body has one.
            let Some(sent_md5) = progress.md5() else {
                return Err(OssError::Transient {
                    status: Some(status.as_u16()),
                    detail: "answered before the whole body was read".to_owned(),
                    sent: true,
                });
            };
            if let Some(expected) = expected_md5_hex
                && !sent_md5.eq_ignore_ascii_case(expected)
            {
                return Err(file_changed(
                    path,
                    format!("read with MD5 {sent_md5}, hashed as {expected}"),
                ));
            }
            if let Some(stored) = etag.as_deref().and_then(etag_md5)
                && !stored.eq_ignore_ascii_case(sent_md5)
            {
                // The file was read whole and unchanged; the bytes were damaged on the way.
                return Err(OssError::Transient {
                    status: Some(status.as_u16()),
                    detail: format!("OSS stored MD5 {stored}, sent {sent_md5}"),
                    sent: true,
                });
            }
            return Ok(PutReceipt {
                etag,
                bytes: sent_bytes,
                md5: sent_md5.to_owned(),
            });
        }
        match classify(status.as_u16(), &String::from_utf8_lossy(&body), request_id) {
            // OSS's answer when the body does not match the MD5 the ticket was asked with:
            // other content when what was read differs from it, else damage on the way.
            OssError::Rejected { code, message, .. } if code == "InvalidDigest" => {
                let detail = format!("OSS {code}: {message}");
                match (progress.md5(), expected_md5_hex) {
                    (Some(sent), Some(expected)) if sent.eq_ignore_ascii_case(expected) => {
                        Err(OssError::Transient {
                            status: Some(status.as_u16()),
                            detail,
                            sent: true,
                        })
                    }
                    _ => Err(file_changed(path, detail)),
                }
            }
            other => Err(other),
        }
    }
}

/// The MD5 in an ETag (`"5EB63BBB…"`, maybe weak), when it is one: OSS gives a simple PUT's
/// object the MD5 of its content as ETag; multipart and other ETags are not MD5s.
fn etag_md5(etag: &str) -> Option<&str> {
    let bare = etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"');
    (bare.len() == 32 && bare.bytes().all(|b| b.is_ascii_hexdigit())).then_some(bare)
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
