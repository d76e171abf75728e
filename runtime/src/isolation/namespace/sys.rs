//! The OS calls the namespace backend makes to build a container's filesystem, behind a trait so
//! the sequence is unit-tested without root (the real calls only work inside a fresh user and
//! mount namespace).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A step of the mount sequence that failed, with the path it was working on.
#[derive(Debug, thiserror::Error)]
#[error("cannot {step} {}", path.display())]
pub struct MountError {
    pub step: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Mount flags (`MS_*`) as the kernel takes them.
pub type MountFlags = libc::c_ulong;

pub trait Sys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn umount_detach(&self, target: &Path) -> io::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> io::Result<()>;
    fn mkdir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates an empty file (a bind-mount target) unless something is already there.
    fn touch(&self, path: &Path) -> io::Result<()>;
    /// Creates a symlink, replacing whatever was at `link`.
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
}

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The real system calls.
pub struct LinuxSys;

impl Sys for LinuxSys {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let source = cstring(source.as_bytes())?;
        let target = cstring(target.as_os_str().as_bytes())?;
        let fstype = fstype.map(|f| cstring(f.as_bytes())).transpose()?;
        let data = data.map(|d| cstring(d.as_bytes())).transpose()?;
        // SAFETY: every pointer is a valid NUL-terminated string or null, alive for the call.
        check(unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                flags,
                data.as_ref()
                    .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            )
        })
    }

    fn umount_detach(&self, target: &Path) -> io::Result<()> {
        let target = cstring(target.as_os_str().as_bytes())?;
        // SAFETY: target is a valid NUL-terminated string alive for the call.
        check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        let new_root = cstring(new_root.as_os_str().as_bytes())?;
        let put_old = cstring(put_old.as_os_str().as_bytes())?;
        // SAFETY: both are valid NUL-terminated strings alive for the call.
        let ret =
            unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
        check(ret as libc::c_int)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn mkdir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn touch(&self, path: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::File::create(path).map(drop),
            Err(e) => Err(e),
        }
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(link) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(link)?,
            Ok(_) => std::fs::remove_file(link)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(target, link)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        // SAFETY: the pointer and length describe `name`'s bytes, alive for the call.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }
}

#[cfg(test)]
pub(crate) mod recording {
    //! A `Sys` that records each call as a line, and fails the calls a test asks it to.
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    pub struct RecordingSys {
        pub calls: RefCell<Vec<String>>,
        /// Calls whose line starts with one of these fail, with `fail_errno` (EPERM if unset).
        pub fail: Vec<String>,
        pub fail_errno: Option<i32>,
    }

    impl RecordingSys {
        fn record(&self, line: String) -> io::Result<()> {
            let failed = self.fail.iter().any(|f| line.starts_with(f.as_str()));
            self.calls.borrow_mut().push(line);
            if failed {
                Err(io::Error::from_raw_os_error(
                    self.fail_errno.unwrap_or(libc::EPERM),
                ))
            } else {
                Ok(())
            }
        }
        pub fn lines(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl Sys for RecordingSys {
        fn mount(
            &self,
            source: &str,
            target: &Path,
            fstype: Option<&str>,
            flags: MountFlags,
            data: Option<&str>,
        ) -> io::Result<()> {
            self.record(format!(
                "mount {source} {} {} {flags:#x} {}",
                target.display(),
                fstype.unwrap_or("-"),
                data.unwrap_or("-")
            ))
        }
        fn umount_detach(&self, target: &Path) -> io::Result<()> {
            self.record(format!("umount {}", target.display()))
        }
        fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
            self.record(format!(
                "pivot_root {} {}",
                new_root.display(),
                put_old.display()
            ))
        }
        fn chdir(&self, path: &Path) -> io::Result<()> {
            self.record(format!("chdir {}", path.display()))
        }
        fn mkdir_all(&self, path: &Path) -> io::Result<()> {
            self.record(format!("mkdir {}", path.display()))
        }
        fn touch(&self, path: &Path) -> io::Result<()> {
            self.record(format!("touch {}", path.display()))
        }
        fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
            self.record(format!("symlink {target} {}", link.display()))
        }
        fn sethostname(&self, name: &str) -> io::Result<()> {
            self.record(format!("sethostname {name}"))
        }
    }
}
