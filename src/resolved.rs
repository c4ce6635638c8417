//! Opening a file at the resolved path it was checked at, following no symbolic link: the
//! payload check confines attachments to `[upload] allowed_dirs` by their resolved path, so
//! every later open must reach the file that path named when it was checked.

use std::fs::File;
use std::io;
use std::path::Path;

/// Opens `resolved` for reading. It must be a path with every symbolic link resolved (as
/// `std::fs::canonicalize` returns), and any link met on the way is refused: a directory
/// swapped for a link after the check would otherwise lead the read outside the allowed
/// directories. Non-blocking, so a FIFO put in the file's place cannot hold the thread (reads
/// of a regular file are unaffected). Where `openat2` is missing (Linux before 5.6, a seccomp
/// filter refusing it, another system) it opens the path as `File::open` does.
#[cfg(target_os = "linux")]
pub(crate) fn open_resolved(resolved: &Path) -> io::Result<File> {
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
pub(crate) fn open_resolved(resolved: &Path) -> io::Result<File> {
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
    fn a_fifo_in_the_files_place_does_not_block_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap().join("pipe");
        use rustix::fs::{CWD, FileType, Mode};
        rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
        // Opened without a writer, it would block here for ever without O_NONBLOCK.
        assert!(open_resolved(&path).is_ok());
    }
}
