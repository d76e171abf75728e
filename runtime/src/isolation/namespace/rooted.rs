//! The guest agent's per-container files set-up ([`nook_agent::guest::rootfs::GuestSetup`]),
//! run by the namespace column's init before it switches into the container's root: every
//! target path is resolved inside that root with `openat2(RESOLVE_IN_ROOT)`, so a symlink in
//! the image (`/etc/hosts -> /home/user/...`) can never point a mount or a new file outside it,
//! and the mount goes onto the opened descriptor.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nook_agent::guest::mounts::MountOps;

/// Mount operations whose absolute paths name paths inside `root`.
pub struct Rooted {
    root: OwnedFd,
}

impl Rooted {
    /// The mount operations inside the directory `root` already open.
    pub fn from_fd(root: OwnedFd) -> Rooted {
        Rooted { root }
    }

    pub fn new(root: &Path) -> io::Result<Rooted> {
        let c = cstr(root.as_os_str().as_bytes())?;
        // SAFETY: open of a NUL-terminated path; the result, when valid, is ours alone.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        let root = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Rooted { root })
    }

    /// Opens `path` (absolute, taken inside the root) with `flags`.
    pub fn open(&self, path: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        open_in_root(self.root.as_fd(), path, flags, mode)
    }
}

pub use nook_agent::copy::{fd_path, open_in_root};

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// `path` without its leading `/` ("." for the root itself).
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

impl MountOps for Rooted {
    fn read_in_root(&mut self, path: &Path) -> io::Result<Option<String>> {
        match self.open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0) {
            Ok(fd) => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)?;
                Ok(Some(text))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
        let mut at = PathBuf::from("/");
        for part in relative(path).components() {
            at.push(part);
            if self.exists(&at) {
                continue;
            }
            let parent = self.open(
                at.parent().unwrap_or(Path::new("/")),
                libc::O_PATH | libc::O_DIRECTORY,
                0,
            )?;
            let name = cstr(part.as_os_str().as_bytes())?;
            // SAFETY: mkdirat with a directory descriptor and a NUL-terminated name.
            if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()> {
        let target = self.open(target, libc::O_PATH, 0)?;
        nook_agent::guest::mounts::SysMounts.mount(source, &fd_path(&target), fstype, flags, data)
    }

    fn chdir(&mut self, _path: &Path) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "chdir before the switch into the root",
        ))
    }

    fn chroot(&mut self, _path: &Path) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "chroot before the switch into the root",
        ))
    }

    fn touch(&mut self, path: &Path) -> io::Result<bool> {
        match self.open(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o644,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn exists(&mut self, path: &Path) -> bool {
        self.open(path, libc::O_PATH, 0).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // An image's hostile links: absolute, and climbing.
        std::os::unix::fs::symlink(&outside, root.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", root.join("etc/up")).unwrap();
        let mut ops = Rooted::new(&root).unwrap();
        // Through the links: refused or made inside the root, never outside.
        let _ = ops.mkdir_all(Path::new("/etc/abs/sub"));
        let _ = ops.touch(Path::new("/etc/abs/hosts"));
        let _ = ops.touch(Path::new("/etc/up/file"));
        let _ = ops.mkdir_all(Path::new("/etc/up/dir"));
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing was made outside the root"
        );
        assert!(ops.exists(Path::new("/etc")) && !ops.exists(Path::new("/nope")));
        assert!(ops.touch(Path::new("/etc/new")).unwrap());
        assert!(!ops.touch(Path::new("/etc/new")).unwrap());
        assert!(root.join("etc/new").is_file());
    }
}
