//! The PUT of a small file's snapshot: what is sent, and a file changed since its hashing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::tests::{content, fake_oss, md5_hex, oss, temp_file, ticket_headers_fixture};
use super::{OssError, SentBytes, Snapshot};

/// PUTs `snapshot` of `path`, whose content was `data` and modification time `modified`,
/// with no ticket headers.
async fn put(
    url: &str,
    path: &std::path::Path,
    snapshot: &Snapshot,
    modified: Option<SystemTime>,
    data: &[u8],
) -> Result<super::PutReceipt, OssError> {
    oss(Duration::from_secs(5))
        .put_snapshot(
            url,
            &BTreeMap::new(),
            path,
            snapshot,
            modified,
            &md5_hex(data),
            &SentBytes::default(),
        )
        .await
}

/// The snapshot of `file`, whose content is `data`, and its modification time.
fn snapshot_of(file: &std::path::Path, data: &[u8]) -> (Snapshot, Option<SystemTime>) {
    let snapshot = Snapshot {
        bytes: Bytes::copy_from_slice(data),
    };
    (snapshot, std::fs::metadata(file).unwrap().modified().ok())
}

#[tokio::test]
async fn a_snapshot_is_sent_with_the_ticket_headers_and_its_length() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(4096);
    let file = temp_file(&data);
    let (snapshot, modified) = snapshot_of(file.path(), &data);
    let receipt = oss(Duration::from_secs(5))
        .put_snapshot(
            &url,
            &ticket_headers_fixture(),
            file.path(),
            &snapshot,
            modified,
            &md5_hex(&data),
            &SentBytes::default(),
        )
        .await
        .unwrap();
    assert_eq!(receipt.bytes, 4096);
    let received = log.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body.as_ref(), data.as_slice());
    assert_eq!(received[0].headers["content-length"], "4096");
    assert_eq!(
        received[0].headers["authorization"], "OSS id:signature=",
        "the ticket's headers, verbatim"
    );
}

#[tokio::test]
async fn a_file_rewritten_since_its_snapshot_is_file_changed_and_nothing_is_sent() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(1000);
    let file = temp_file(&data);
    let (snapshot, modified) = snapshot_of(file.path(), &data);
    std::fs::write(file.path(), content(1001)).unwrap();
    let error = put(&url, file.path(), &snapshot, modified, &data)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, OssError::FileChanged { .. })
            && error.to_string().contains("1001 bytes, expected 1000"),
        "{error}"
    );
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_file_touched_since_its_snapshot_is_file_changed() {
    let (url, log) = fake_oss(200, "").await;
    let data = content(1000);
    let file = temp_file(&data);
    let (snapshot, modified) = snapshot_of(file.path(), &data);
    let earlier = modified.map(|at| at - Duration::from_secs(60));
    let error = put(&url, file.path(), &snapshot, earlier, &data)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("modification time moved"),
        "{error}"
    );
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_file_gone_since_its_snapshot_fails_with_its_path() {
    let (url, _log) = fake_oss(200, "").await;
    let data = content(10);
    let file = temp_file(&data);
    let (snapshot, modified) = snapshot_of(file.path(), &data);
    let path = file.path().to_owned();
    drop(file);
    let error = put(&url, &path, &snapshot, modified, &data)
        .await
        .unwrap_err();
    assert!(matches!(error, OssError::Io { .. }), "{error}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_empty_snapshot_whose_file_became_a_fifo_is_not_sent() {
    let (url, log) = fake_oss(200, "").await;
    let dir = tempfile::tempdir().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap().join("empty.pdf");
    std::fs::write(&path, b"").unwrap();
    let (snapshot, modified) = snapshot_of(&path, b"");
    let was = std::fs::metadata(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};
    rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
    // Given the file's modification time too, so only its type tells them apart.
    let mtime = Timespec {
        tv_sec: std::os::unix::fs::MetadataExt::mtime(&was),
        tv_nsec: std::os::unix::fs::MetadataExt::mtime_nsec(&was),
    };
    let times = Timestamps {
        last_access: mtime,
        last_modification: mtime,
    };
    rustix::fs::utimensat(CWD, &path, &times, AtFlags::empty()).unwrap();

    let error = put(&url, &path, &snapshot, modified, b"")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, OssError::FileChanged { detail, .. } if detail.contains("not a regular file")),
        "{error:?}"
    );
    assert!(log.lock().unwrap().is_empty());
}
