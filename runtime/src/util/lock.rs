//! Advisory whole-file locks (`flock`), released when the guard drops or the process dies, so a
//! killed writer never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("cannot lock {path}")]
pub struct LockError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Shared (many holders) or exclusive (one holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A held lock; dropping it (or closing the file) releases it.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Opens (creating) `path` and blocks until the lock is granted.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<FileLock, LockError> {
        let err = |source| LockError {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        let op = match mode {
            LockMode::Shared => libc::LOCK_SH,
            LockMode::Exclusive => libc::LOCK_EX,
        };
        loop {
            // SAFETY: flock on a file descriptor we own; it touches no memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_lock(path: &Path, op: i32) -> bool {
        let f = File::open(path).unwrap();
        // SAFETY: flock on a file descriptor we own.
        unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) == 0 }
    }

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let ex = FileLock::acquire(&path, LockMode::Exclusive).unwrap();
        assert!(!try_lock(&path, libc::LOCK_SH));
        drop(ex);
        let _sh = FileLock::acquire(&path, LockMode::Shared).unwrap();
        assert!(try_lock(&path, libc::LOCK_SH));
        assert!(!try_lock(&path, libc::LOCK_EX));
    }
}
