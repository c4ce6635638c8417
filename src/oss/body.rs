//! The PUT's body: one blocking task opens, checks, reads and hashes the attachment into a
//! short channel, so an upload costs one hand-off to the blocking pool (`tokio::fs` takes one
//! per call and per chunk), the file is read once, and memory stays at a few chunks whatever
//! its size. A small file's content kept from its hashing ([`Snapshot`](super::Snapshot)) is
//! only checked against the file.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt, stream};
use md5::{Digest, Md5};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::SentBytes;
use super::error::{OssError, file_changed};
use crate::resolved::{Expected, OpenError, open_attachment, unchanged};

/// Read size: large enough for throughput, small enough for memory.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks read ahead of the socket, so the next read overlaps the send.
const READ_AHEAD_CHUNKS: usize = 4;

/// The bytes of the file a body carries: all of it, or one part of a multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    /// Where the body starts in the file.
    pub(super) offset: u64,
    /// How many bytes it carries.
    pub(super) len: u64,
}

impl Span {
    /// All of a file of `size` bytes.
    pub(super) fn whole(size: u64) -> Self {
        Self {
            offset: 0,
            len: size,
        }
    }
}

/// What the upload has done so far, shared by the reader, the body and the stall watchdog.
pub(super) struct Progress {
    bytes: SentBytes,
    /// The count before this body: a part's counter starts at its earlier parts' bytes.
    start: u64,
    /// Why the file is not the one the ticket was issued for, once the reader found out.
    changed: Mutex<Option<String>>,
    /// The hex MD5 of the whole body, known before its last chunk is handed over.
    md5: OnceLock<String>,
    last_progress: Mutex<Instant>,
}

impl Progress {
    /// Counts into `sent`, which the caller may read while the upload runs.
    pub(super) fn new(sent: SentBytes) -> Self {
        Self {
            start: sent.get(),
            bytes: sent,
            changed: Mutex::new(None),
            md5: OnceLock::new(),
            last_progress: Mutex::new(Instant::now()),
        }
    }

    /// Bytes of this body handed to the connection so far.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.get().saturating_sub(self.start)
    }

    /// How the file changed during the upload, if it did.
    pub(super) fn changed(&self) -> Option<String> {
        self.changed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The hex MD5 of the body, once all of it has been read.
    pub(super) fn md5(&self) -> Option<&str> {
        self.md5.get().map(String::as_str)
    }

    /// Records the body's MD5; the first value stays.
    pub(super) fn set_md5(&self, md5_hex: String) {
        let _ = self.md5.set(md5_hex);
    }

    fn set_changed(&self, detail: String) {
        *self.changed.lock().unwrap_or_else(PoisonError::into_inner) = Some(detail);
    }

    /// Counts `chunk` as handed to the connection.
    pub(super) fn record(&self, chunk: &Bytes) {
        self.bytes.add(chunk.len() as u64);
        *self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// Completes once nothing has happened for `idle`: hyper pulls the next chunk only when
    /// the socket takes data, so a stuck upload shows as a silent stream; after the last chunk
    /// it measures the wait for OSS's answer.
    pub(super) async fn stalled(&self, idle: Duration) {
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

/// Opens `path` and streams the `span` of it (all of it, or one part of a multipart upload).
/// What is opened must be a regular file of `expected_size` bytes, modified at `expected_modified` when given, else
/// [`OssError::FileChanged`] before anything is sent. A file that ends early, or is written to
/// while it is read, records why in `progress` and ends the stream with an error, so the
/// request is aborted instead of finishing with other bytes.
pub(super) async fn open(
    path: &Path,
    expected_size: u64,
    expected_modified: Option<SystemTime>,
    span: Span,
    progress: &Arc<Progress>,
) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static, OssError> {
    let (opened_tx, opened_rx) = oneshot::channel();
    let (chunks_tx, chunks_rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    let reader = Reader {
        path: path.to_owned(),
        expected: Expected {
            size: Some(expected_size),
            modified: expected_modified,
        },
        span,
        progress: Arc::clone(progress),
        chunks: chunks_tx,
    };
    // Not awaited: the reader ends when the file is read or the request drops the receiver.
    drop(tokio::task::spawn_blocking(move || reader.run(opened_tx)));
    let io_error = |source| OssError::Io {
        path: path.to_owned(),
        source,
    };
    let opened = opened_rx
        .await
        .map_err(|_| io_error(io::Error::other("the file reader stopped")))?;
    match opened {
        Ok(()) => {}
        Err(OpenError::Io(source)) => return Err(io_error(source)),
        Err(OpenError::Changed(detail)) => return Err(file_changed(path, detail)),
    }
    let recorder = Arc::clone(progress);
    let chunks = stream::unfold(chunks_rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok(chunks.inspect_ok(move |chunk| recorder.record(chunk)))
}

/// The blocking side of [`open`].
struct Reader {
    path: PathBuf,
    /// What the ticket was issued for; the size is always given.
    expected: Expected,
    /// What of the file to send.
    span: Span,
    progress: Arc<Progress>,
    chunks: mpsc::Sender<io::Result<Bytes>>,
}

impl Reader {
    /// Reports through `opened` whether the file is the one the ticket was issued for, then
    /// reads it unless it is not or `open` stopped listening.
    fn run(self, opened: oneshot::Sender<Result<(), OpenError>>) {
        let (mut file, before) = match open_attachment(&self.path, self.expected) {
            Ok(found) => found,
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        };
        // The ticket's size: `open_attachment` refused any other.
        let file_size = before.len();
        let Some(end) = self
            .span
            .offset
            .checked_add(self.span.len)
            .filter(|end| *end <= file_size)
        else {
            let _ = opened.send(Err(OpenError::Changed(format!(
                "{file_size} bytes, too short for bytes {} to {} of it",
                self.span.offset,
                self.span.offset.saturating_add(self.span.len)
            ))));
            return;
        };
        if self.span.offset > 0
            && let Err(e) = file.seek(SeekFrom::Start(self.span.offset))
        {
            let _ = opened.send(Err(OpenError::Io(e)));
            return;
        }
        let expected_size = end - self.span.offset;
        let mut hasher = Md5::new();
        if expected_size == 0 {
            // No chunk will carry it, so it is known before `open` can send the request.
            self.progress
                .set_md5(hex::encode(std::mem::take(&mut hasher).finalize()));
        }
        if opened.send(Ok(())).is_err() {
            return;
        }
        let mut left = expected_size;
        while left > 0 {
            let want = usize::try_from(left).map_or(CHUNK_BYTES, |left| left.min(CHUNK_BYTES));
            let mut buffer = Vec::with_capacity(want);
            // Read into the spare capacity, so the chunk is not zeroed first only to be
            // overwritten.
            let read = match (&mut file).take(want as u64).read_to_end(&mut buffer) {
                Ok(0) => {
                    let sent = expected_size - left;
                    return self.fail(format!(
                        "ended after {sent} of {expected_size} bytes while uploading"
                    ));
                }
                Ok(read) => read,
                Err(e) => {
                    let _ = self.chunks.blocking_send(Err(e));
                    return;
                }
            };
            hasher.update(&buffer);
            left -= read as u64;
            // Checked before the last chunk leaves: once it has, the body is complete and
            // nothing after it would be read.
            if left == 0 {
                if let Some(detail) = modified(&file, &before) {
                    return self.fail(detail);
                }
                self.progress
                    .set_md5(hex::encode(std::mem::take(&mut hasher).finalize()));
            }
            if self.chunks.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                return;
            }
        }
    }

    fn fail(&self, detail: String) {
        self.progress.set_changed(detail.clone());
        let _ = self
            .chunks
            .blocking_send(Err(io::Error::new(io::ErrorKind::InvalidData, detail)));
    }
}

/// Whether the file at `path` is still a regular file with the `size` and `modified` time
/// it was read with. One `stat`, no open: nothing is read from it.
pub(super) fn unchanged_since(
    path: &Path,
    size: u64,
    modified: Option<SystemTime>,
) -> Result<(), OssError> {
    let now = std::fs::metadata(path).map_err(|source| OssError::Io {
        path: path.to_owned(),
        source,
    })?;
    let expected = Expected {
        size: Some(size),
        modified,
    };
    unchanged(&now, expected).map_err(|detail| file_changed(path, detail))
}

/// How the open file's size or modification time moved since `before`, if they did: a
/// write while it was read.
fn modified(file: &File, before: &Metadata) -> Option<String> {
    let after = match file.metadata() {
        Ok(after) => after,
        Err(e) => return Some(format!("cannot stat it again after reading: {e}")),
    };
    if after.len() != before.len() {
        return Some(format!(
            "{} bytes after reading, {} before: written to while uploading",
            after.len(),
            before.len()
        ));
    }
    match (before.modified(), after.modified()) {
        (Ok(was), Ok(now)) if was != now => {
            Some("modification time moved: written to while uploading".to_owned())
        }
        _ => None,
    }
}
