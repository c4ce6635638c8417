//! The database file and its WAL as files: watched for other processes' commits (an idle
//! worker wakes on them) and for being deleted or replaced under this process's connection.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The database file and its WAL.
#[derive(Debug)]
pub(super) struct DbFiles {
    database: PathBuf,
    wal: PathBuf,
    /// The same two as absolute paths with links resolved, as `/proc/self/fd` names them.
    resolved: [PathBuf; 2],
}

impl DbFiles {
    /// The files of the database at `path` (which exists).
    pub(super) fn new(path: &Path) -> DbFiles {
        let database = path.to_owned();
        let wal = with_suffix(path, "-wal");
        let resolved_db = std::fs::canonicalize(path).unwrap_or_else(|_| database.clone());
        let resolved_wal = with_suffix(&resolved_db, "-wal");
        DbFiles {
            database,
            wal,
            resolved: [resolved_db, resolved_wal],
        }
    }

    /// The database file, as given.
    pub(super) fn path(&self) -> &Path {
        &self.database
    }

    /// Why a file this process has open as the database or its WAL is no longer the one at
    /// that path, if one is not: deleted, or replaced by another file. What this process
    /// commits then lands in a file nobody else reads. The open files are those
    /// `/proc/self/fd` lists, so a WAL that SQLite itself deleted and created anew (when the
    /// pool closed its last connection and opened another) is the new one, not a false alarm.
    /// `None` where `/proc` is not there.
    pub(super) fn replaced(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let fds = std::fs::read_dir("/proc/self/fd").ok()?;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let Some(path) = self.resolved.iter().find(|path| {
                let path = path.to_string_lossy();
                target == path || target.strip_suffix(" (deleted)") == Some(&*path)
            }) else {
                continue;
            };
            // Following the fd's link reaches the open file even when no path names it.
            let Ok(open) = std::fs::metadata(fd.path()) else {
                continue;
            };
            match std::fs::metadata(path) {
                Ok(now) if (now.dev(), now.ino()) == (open.dev(), open.ino()) => {}
                Ok(_) => return Some(format!("{} was replaced by another file", path.display())),
                Err(_) => return Some(format!("{} was deleted", path.display())),
            }
        }
        None
    }

    /// Sizes and mtimes: every commit appends to (or rewrites) the WAL, and checkpoints
    /// write the database file.
    pub(super) fn fingerprint(&self) -> [Option<(u64, SystemTime)>; 2] {
        let stat = |path: &Path| {
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        };
        [stat(&self.wal), stat(&self.database)]
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_file_deleted_or_replaced_is_reported_and_one_no_longer_open_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("q.db");
        std::fs::write(&db, b"db").unwrap();
        let wal = with_suffix(&db, "-wal");
        std::fs::write(&wal, b"wal").unwrap();
        let files = DbFiles::new(&db);
        let held = std::fs::File::open(&wal).unwrap();
        assert_eq!(files.replaced(), None);

        std::fs::remove_file(&wal).unwrap();
        assert!(
            files
                .replaced()
                .is_some_and(|why| why.ends_with("q.db-wal was deleted")),
            "{:?}",
            files.replaced()
        );
        std::fs::write(&wal, b"another").unwrap();
        assert!(
            files
                .replaced()
                .is_some_and(|why| why.ends_with("was replaced by another file")),
            "{:?}",
            files.replaced()
        );
        // The old file is closed (as when the pool closes its connection and opens another):
        // a WAL created anew is not a replacement of anything this process writes.
        drop(held);
        let _reopened = std::fs::File::open(&wal).unwrap();
        assert_eq!(files.replaced(), None);
    }
}

#[cfg(test)]
mod queue_tests {
    use crate::queue::sqlite::test_support::job;
    use crate::queue::{Queue, now_ms};

    #[tokio::test]
    async fn a_wal_the_pool_itself_deletes_and_creates_anew_is_not_a_lost_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let queue = Queue::open(&path).await.unwrap();
        queue.enqueue(&job(), now_ms()).await.unwrap();
        let wal = super::with_suffix(&path, "-wal");
        assert!(wal.exists());
        // The pool's only connection closes, as it does at the end of its lifetime: SQLite,
        // closing the last connection, checkpoints and deletes the WAL.
        let conn = queue
            .sqlite()
            .unwrap()
            .pool
            .acquire()
            .await
            .unwrap()
            .detach();
        sqlx::Connection::close(conn).await.unwrap();
        assert!(!wal.exists(), "closing the last connection deletes the WAL");
        queue.enqueue(&job(), now_ms()).await.unwrap();
        assert!(wal.exists(), "the next connection creates it anew");
        assert_eq!(queue.files_replaced(), None);
        let filter = crate::queue::JobFilter {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(queue.list(&filter).await.unwrap().len(), 2);
    }
}
