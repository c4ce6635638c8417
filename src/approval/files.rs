//! Looking at attachments before their ticket: the size DingTalk's upload pre-check wants,
//! and a small file's MD5 and content for its PUT.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use md5::{Digest, Md5};

use super::error::StepError;
use crate::oss::Snapshot;
use crate::resolved::{Expected, OpenError, open_attachment};

/// Files up to this size are read whole before their ticket: the ticket carries their MD5
/// and the PUT sends the content kept (at most this much memory per running job), with no
/// second read and no blocking hand-off. A larger file is only measured here; the PUT reads
/// and hashes it as it sends it, so it too is read once.
const SNAPSHOT_MAX_BYTES: u64 = 256 * 1024;

/// What looking at a file found.
#[derive(Debug)]
pub(crate) struct Fingerprint {
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Its modification time, where the filesystem keeps one: the PUT refuses a file
    /// written since.
    pub(crate) modified: Option<SystemTime>,
    /// The MD5 (hex) of a file of at most [`SNAPSHOT_MAX_BYTES`]; a larger file's is known
    /// once its PUT has read it.
    pub(crate) md5: Option<String>,
    /// The content of a file of at most [`SNAPSHOT_MAX_BYTES`].
    pub(crate) snapshot: Option<Snapshot>,
}

/// Files that measured at most this much when their payload was checked are read and hashed
/// on the calling task, as that check stats and opens them there. For a small file the
/// hand-off to the blocking pool (two thread wake-ups) costs more than the work (about +8 %
/// jobs/s and less CPU per job at concurrency 16 with 4 KiB files, docs/benchmarks.md); at
/// this limit the MD5 holds the runtime thread for about 0.1 ms.
const INLINE_READ_MAX_BYTES: u64 = 64 * 1024;

/// Measures the file at `path` (resolved by the payload check; no symbolic link on it is
/// followed), and reads and hashes it whole when it is small. A file that measured
/// more than [`INLINE_READ_MAX_BYTES`] when checked (`checked_bytes`) is looked at on one
/// blocking thread: reading and hashing it takes long enough to hold up every other job.
///
/// What is opened must be a regular file: anything else in its place is refused as a changed
/// file, for good.
pub(crate) async fn fingerprint(path: &Path, checked_bytes: u64) -> Result<Fingerprint, StepError> {
    let unreadable =
        |e: OpenError| StepError::permanent(format!("attachment {}: {e}", path.display()));
    if checked_bytes <= INLINE_READ_MAX_BYTES {
        return look_at(path).map_err(unreadable);
    }
    let owned: PathBuf = path.to_path_buf();
    let outcome = tokio::task::spawn_blocking(move || look_at(&owned)).await;
    match outcome {
        Ok(result) => result.map_err(unreadable),
        // Only a panic inside the blocking task gets here; treat it like an I/O failure.
        Err(e) => Err(unreadable(std::io::Error::other(e.to_string()).into())),
    }
}

fn look_at(path: &Path) -> Result<Fingerprint, OpenError> {
    // Nothing was measured yet; only the file's type is checked.
    let (mut file, metadata) = open_attachment(path, Expected::default())?;
    let streamed = |metadata: std::fs::Metadata| Fingerprint {
        size: metadata.len(),
        modified: metadata.modified().ok(),
        md5: None,
        snapshot: None,
    };
    if metadata.len() > SNAPSHOT_MAX_BYTES {
        return Ok(streamed(metadata));
    }
    // Taken before reading: a write during the read moves it, which the PUT then notices.
    let modified = metadata.modified().ok();
    // Sized to the file (plus one byte to see its end), so a snapshot is one allocation.
    let expected = usize::try_from(metadata.len()).unwrap_or(0);
    let mut head = Vec::with_capacity(expected + 1);
    (&mut file)
        .take(SNAPSHOT_MAX_BYTES + 1)
        .read_to_end(&mut head)?;
    if head.len() as u64 > SNAPSHOT_MAX_BYTES {
        // It grew past the limit since it was measured: sent as a large file.
        return Ok(streamed(file.metadata()?));
    }
    Ok(Fingerprint {
        size: head.len() as u64,
        modified,
        md5: Some(hex::encode(Md5::digest(&head))),
        snapshot: Some(Snapshot {
            bytes: Bytes::from(head),
        }),
    })
}

#[cfg(test)]
mod tests {
    use md5::Digest;

    use futures_util::FutureExt;

    use super::{INLINE_READ_MAX_BYTES, SNAPSHOT_MAX_BYTES, fingerprint};

    #[tokio::test]
    async fn the_fingerprint_is_the_size_and_hex_md5_of_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, b"a").unwrap();
        let found = fingerprint(&path, 1).await.unwrap();
        assert_eq!(
            (found.size, found.md5.as_deref()),
            (1, Some("0cc175b9c0f1b6a831c399e269772661"))
        );
        assert_eq!(found.snapshot.unwrap().bytes.as_ref(), b"a");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_file_whose_directory_became_a_link_after_the_check_is_refused_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let checked = crate::resolved::test_support::spool_swapped_for_a_link(dir.path());

        match fingerprint(&checked, 7).await {
            Err(super::StepError::Permanent(reason)) => {
                assert!(reason.message.contains("symbolic link"), "{reason:?}");
            }
            other => panic!("expected a permanent refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_file_larger_than_a_snapshot_is_only_measured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let size = usize::try_from(SNAPSHOT_MAX_BYTES).unwrap() + 1;
        std::fs::write(&path, vec![1_u8; size]).unwrap();
        let found = fingerprint(&path, size as u64).await.unwrap();
        assert_eq!(found.size, size as u64);
        assert_eq!(found.md5, None);
        assert!(found.snapshot.is_none());
    }

    #[tokio::test]
    async fn a_file_of_exactly_the_snapshot_size_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.bin");
        let data = vec![7_u8; usize::try_from(SNAPSHOT_MAX_BYTES).unwrap()];
        std::fs::write(&path, &data).unwrap();
        let found = fingerprint(&path, SNAPSHOT_MAX_BYTES).await.unwrap();
        assert_eq!(found.snapshot.unwrap().bytes.len(), data.len());
        assert_eq!(found.md5, Some(hex::encode(md5::Md5::digest(&data))));
    }

    #[tokio::test]
    async fn a_file_checked_at_most_the_inline_size_is_read_without_leaving_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.pdf");
        let data = vec![3_u8; usize::try_from(INLINE_READ_MAX_BYTES).unwrap()];
        std::fs::write(&path, &data).unwrap();
        // No hand-off to await: the whole look is done at the first poll.
        let found = fingerprint(&path, INLINE_READ_MAX_BYTES)
            .now_or_never()
            .expect("done at its first poll")
            .unwrap();
        assert_eq!(found.md5, Some(hex::encode(md5::Md5::digest(&data))));
        assert_eq!(found.snapshot.unwrap().bytes.len(), data.len());
    }

    /// `fingerprint`'s answer for a file whose place was taken by `path`'s FIFO or device.
    fn assert_refused_as_changed(found: Result<super::Fingerprint, super::StepError>) {
        match found {
            Err(super::StepError::Permanent(reason)) => {
                assert!(reason.message.contains("file changed"), "{reason:?}");
                assert!(reason.message.contains("not a regular file"), "{reason:?}");
            }
            other => panic!("expected a changed-file refusal, got {other:?}"),
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_fifo_swapped_in_after_the_check_is_refused_as_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap().join("a.pdf");
        std::fs::write(&path, b"checked").unwrap();
        let checked = std::fs::canonicalize(&path).unwrap();
        std::fs::remove_file(&checked).unwrap();
        use rustix::fs::{CWD, FileType, Mode};
        rustix::fs::mknodat(CWD, &checked, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();

        // Read without a writer, the FIFO ends at once: 0 bytes that would be uploaded.
        assert_refused_as_changed(fingerprint(&checked, 7).await);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_device_node_in_the_files_place_is_refused_as_a_changed_file() {
        // A character device that reads as empty, like a FIFO without a writer.
        assert_refused_as_changed(fingerprint(std::path::Path::new("/dev/null"), 7).await);
    }

    #[tokio::test]
    async fn a_file_that_vanished_since_its_check_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.pdf");
        let error = fingerprint(&path, 10).await.unwrap_err();
        assert!(error.to_string().contains("gone.pdf"), "{error}");
    }
}
