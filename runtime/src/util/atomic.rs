//! Crash-safe file replacement: write a temp file in the same filesystem, fsync it, rename it
//! over the target, fsync the directory. A reader sees the old file or the new one, never a part.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A failed step of an atomic write, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    #[error("cannot create temp file {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot rename {from} to {to}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A temp file that is removed on drop unless it was renamed into place.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates a new, empty temp file in `dir` whose name starts with `prefix`.
    pub fn new_in(dir: &Path, prefix: &str) -> Result<TempFile, AtomicError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let path = dir.join(format!("{prefix}{}-{n}-{nanos:x}", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(AtomicError::Create { path, source }),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        self.file.as_ref().expect("file is present until persist")
    }

    pub fn file_mut(&mut self) -> &mut File {
        self.file.as_mut().expect("file is present until persist")
    }

    /// fsyncs the data, renames the file to `target` and fsyncs the target's directory.
    pub fn persist(mut self, target: &Path) -> Result<(), AtomicError> {
        let file = self.file.take().expect("file is present until persist");
        file.sync_all().map_err(|source| AtomicError::Write {
            path: self.path.clone(),
            source,
        })?;
        drop(file);
        fs::rename(&self.path, target).map_err(|source| AtomicError::Rename {
            from: self.path.clone(),
            to: target.to_path_buf(),
            source,
        })?;
        // The rename happened: nothing is left to clean up.
        self.path = PathBuf::new();
        sync_parent(target)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// fsyncs the directory holding `path`, so a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> Result<(), AtomicError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| AtomicError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// The process that made the temp file `name` of [`TempFile::new_in`] with `prefix`: its
/// names are `<prefix><pid>-<n>-<nanos>`.
pub fn temp_file_owner(name: &str, prefix: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?;
    rest.split('-').next()?.parse().ok().filter(|&p| p > 0)
}

/// Whether no process `pid` exists any more (a pid of another user's process exists).
pub fn process_gone(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists; it touches no memory.
    let rc = unsafe { libc::kill(pid, 0) };
    rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Replaces `target` with `data` atomically, staging in `tmp_dir` (same filesystem).
pub fn write_file(tmp_dir: &Path, target: &Path, data: &[u8]) -> Result<(), AtomicError> {
    let mut tmp = TempFile::new_in(tmp_dir, "write-")?;
    tmp.file_mut()
        .write_all(data)
        .map_err(|source| AtomicError::Write {
            path: tmp.path().to_path_buf(),
            source,
        })?;
    tmp.persist(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        write_file(dir.path(), &target, b"one").unwrap();
        write_file(dir.path(), &target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_temp_file_names_the_process_that_made_it() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = TempFile::new_in(dir.path(), "layer-").unwrap();
        let name = tmp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let me = std::process::id() as i32;
        assert_eq!(temp_file_owner(&name, "layer-"), Some(me));
        assert_eq!(temp_file_owner(&name, "write-"), None);
        assert!(!process_gone(me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(process_gone(pid));
    }

    #[test]
    fn dropped_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = TempFile::new_in(dir.path(), "x-").unwrap();
        let path = tmp.path().to_path_buf();
        assert!(path.exists());
        drop(tmp);
        assert!(!path.exists());
    }
}
