//! Opening a file at the resolved path it was checked at, following no symbolic link: the
//! payload check confines attachments to `[upload] allowed_dirs` by their resolved path, so
//! every later open must reach the file that path named when it was checked, and that file
//! must still be a regular file of the size and modification time measured before.

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// Why a file whose modification time moved since it was measured is not used.
const WRITTEN_SINCE: &str = "modification time moved since its ticket: written to since";

/// What an earlier look at the attachment found, which the file opened now must still have.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expected {
    /// Its size in bytes, when it was measured.
    pub(crate) size: Option<u64>,
    /// Its modification time, when one was kept.
    pub(crate) modified: Option<SystemTime>,
}

/// Why an attachment could not be opened as the file it was checked as.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The open or the `fstat` failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// What was opened is not the file measured before: another type, size or modification
    /// time.
    #[error("file changed: {0}")]
    Changed(String),
}

/// Opens the attachment at `resolved` (see [`open_resolved`]) and checks the opened
/// descriptor, not the path, so nothing swapped in between a check and the open can pass: it
/// must be a regular file (a FIFO without a writer or a device node reads as empty and would
/// be uploaded as a 0-byte file) with what `expected` gives. Every open of an attachment goes
/// through here.
pub(crate) fn open_attachment(
    resolved: &Path,
    expected: Expected,
) -> Result<(File, Metadata), OpenError> {
    let file = open_resolved(resolved)?;
    let metadata = file.metadata()?;
    unchanged(&metadata, expected).map_err(OpenError::Changed)?;
    Ok((file, metadata))
}

/// How `metadata` differs from what `expected` says and from a regular file, if it does.
pub(crate) fn unchanged(metadata: &Metadata, expected: Expected) -> Result<(), String> {
    if !metadata.is_file() {
        return Err(format!("not a regular file (a {})", kind(metadata)));
    }
    if let Some(size) = expected.size
        && metadata.len() != size
    {
        return Err(format!("{} bytes, expected {size}", metadata.len()));
    }
    if expected.modified.is_some() && metadata.modified().ok() != expected.modified {
        return Err(WRITTEN_SINCE.to_owned());
    }
    Ok(())
}

/// What kind of file system object `metadata` describes, for a message.
fn kind(metadata: &Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        return "directory";
    }
    if file_type.is_symlink() {
        return "symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
        if file_type.is_socket() {
            return "socket";
        }
    }
    "special file"
}

/// Opens `resolved` for reading. It must be a path with every symbolic link resolved (as
/// `std::fs::canonicalize` returns), and any link met on the way is refused: a directory
/// swapped for a link after the check would otherwise lead the read outside the allowed
/// directories. Non-blocking, so a FIFO put in the file's place cannot hold the thread (reads
/// of a regular file are unaffected). Where `openat2` is missing (Linux before 5.6, a seccomp
/// filter refusing it, another system) it opens the path as `File::open` does.
#[cfg(target_os = "linux")]
fn open_resolved(resolved: &Path) -> io::Result<File> {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;

    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat2(
        CWD,
        resolved,
        flags,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    ) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::LOOP) => Err(io::Error::other(
            "a symbolic link replaced part of its path since it was checked",
        )),
        Err(Errno::NOSYS | Errno::PERM) => File::open(resolved),
        Err(e) => Err(e.into()),
    }
}

/// Opens `resolved` for reading (`openat2`, which refuses links on the way, is Linux's).
#[cfg(not(target_os = "linux"))]
fn open_resolved(resolved: &Path) -> io::Result<File> {
    File::open(resolved)
}

/// Set-up shared by the tests of the code that opens attachments.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    /// `root/spool/f` ("allowed") is resolved as a check would, then `spool` is renamed away
    /// and replaced by a link to `root/secret`, whose `f` reads "not allowed". Returns the
    /// checked path.
    #[cfg(target_os = "linux")]
    pub(crate) fn spool_swapped_for_a_link(root: &Path) -> PathBuf {
        let root = std::fs::canonicalize(root).unwrap();
        let (inside, outside) = (root.join("spool"), root.join("secret"));
        std::fs::create_dir(&inside).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(inside.join("f"), b"allowed").unwrap();
        std::fs::write(outside.join("f"), b"not allowed").unwrap();
        let checked = std::fs::canonicalize(inside.join("f")).unwrap();
        std::fs::rename(&inside, root.join("spool.old")).unwrap();
        std::os::unix::fs::symlink(&outside, &inside).unwrap();
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_resolved_path_opens_and_reads_like_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap().join("a.txt");
        std::fs::write(&path, b"hello").unwrap();
        let mut text = String::new();
        open_resolved(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_swapped_for_a_link_after_the_check_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let checked = test_support::spool_swapped_for_a_link(dir.path());

        let error = open_resolved(&checked).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        // What a plain open does with the same path: it reads the other directory's file.
        assert_eq!(std::fs::read(&checked).unwrap(), b"not allowed");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_attachment_opens_only_as_a_regular_file_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let (file, pipe) = (root.join("a.pdf"), root.join("pipe.pdf"));
        std::fs::write(&file, b"hello").unwrap();
        use rustix::fs::{CWD, FileType, Mode};
        rustix::fs::mknodat(CWD, &pipe, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
        let size = |size| Expected {
            size: Some(size),
            modified: None,
        };

        let (_, metadata) = open_attachment(&file, size(5)).unwrap();
        assert_eq!(metadata.len(), 5);
        let changed = |result: Result<(File, Metadata), OpenError>| match result {
            Err(OpenError::Changed(detail)) => detail,
            other => panic!("expected a changed file, got {other:?}"),
        };
        assert_eq!(
            changed(open_attachment(&file, size(4))),
            "5 bytes, expected 4"
        );
        assert_eq!(
            changed(open_attachment(&pipe, size(0))),
            "not a regular file (a FIFO)"
        );
        let error = open_attachment(&pipe, Expected::default()).unwrap_err();
        assert!(error.to_string().starts_with("file changed: "), "{error}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_in_the_files_place_does_not_block_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap().join("pipe");
        use rustix::fs::{CWD, FileType, Mode};
        rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
        // Opened without a writer, it would block here for ever without O_NONBLOCK.
        assert!(open_resolved(&path).is_ok());
    }
}
