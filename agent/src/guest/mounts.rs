//! The mounts PID 1 makes, behind a small trait so the order and options are unit-tested without
//! root ([`Recorder`]), and made for real by [`SysMounts`].

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Mount flags we use (the `MS_*` bits).
pub const RDONLY: u64 = libc::MS_RDONLY;
pub const NOSUID: u64 = libc::MS_NOSUID;
pub const NODEV: u64 = libc::MS_NODEV;
pub const NOEXEC: u64 = libc::MS_NOEXEC;
pub const BIND: u64 = libc::MS_BIND;
pub const MOVE: u64 = libc::MS_MOVE;
pub const REMOUNT: u64 = libc::MS_REMOUNT;

/// The OS calls the boot sequence needs.
pub trait MountOps {
    fn mkdir_all(&mut self, path: &Path) -> io::Result<()>;
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()>;
    fn chdir(&mut self, path: &Path) -> io::Result<()>;
    fn chroot(&mut self, path: &Path) -> io::Result<()>;
    /// Creates an empty file when nothing exists at `path` (a bind-mount target); true when
    /// this call created it.
    fn touch(&mut self, path: &Path) -> io::Result<bool>;
    /// Whether something exists at `path` (a device node, a mount target's parent directory).
    fn exists(&mut self, path: &Path) -> bool;
    /// Makes the directory `path` (and its missing parents) inside the current root, resolving
    /// every symlink on the way as if the root were `/` and refusing /proc's magic links, and
    /// returns what to mount on: the directory so found, held open until the mount is made.
    /// Only the guest's mounts need it; other implementations refuse.
    fn dir_in_root(&mut self, _path: &Path) -> io::Result<MountPoint> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Makes the file `path` inside the current root when nothing is there (its missing parent
    /// directories as [`MountOps::dir_in_root`] does), resolving every symlink inside the root,
    /// and returns what to bind a file on, held open, and whether this call created the file.
    /// Only the guest's mounts need it; other implementations refuse.
    fn file_in_root(&mut self, _path: &Path) -> io::Result<(MountPoint, bool)> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// The text of the file `path` inside the current root, every symlink resolved inside it;
    /// none when it does not exist. Only the guest's and the namespace column's set-ups need
    /// it; other implementations refuse.
    fn read_in_root(&mut self, _path: &Path) -> io::Result<Option<String>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// A directory found by [`MountOps::dir_in_root`]: a path naming exactly it (through its open
/// descriptor), valid as long as this value lives.
pub struct MountPoint {
    pub path: PathBuf,
    _fd: Option<std::os::fd::OwnedFd>,
}

/// `openat2(root, path, O_PATH | O_DIRECTORY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: the
/// copy engine's resolution, one implementation for every path taken inside a container.
fn open_in_root(root: &std::os::fd::OwnedFd, path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    crate::copy::open_in_root(root.as_fd(), path, libc::O_PATH | libc::O_DIRECTORY, 0)
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create the directory {}", path.display())]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount {source_name} ({fstype}) on {} with options `{data}`", target.display())]
    Mount {
        source_name: String,
        target: PathBuf,
        fstype: String,
        data: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot {what} {}", path.display())]
    Other {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `mount` with the error naming everything that was asked.
pub fn mount(
    ops: &mut dyn MountOps,
    source: &str,
    target: &Path,
    fstype: &str,
    flags: u64,
    data: &str,
) -> Result<(), MountError> {
    ops.mount(source, target, fstype, flags, data)
        .map_err(|e| MountError::Mount {
            source_name: source.to_owned(),
            target: target.to_owned(),
            fstype: fstype.to_owned(),
            data: data.to_owned(),
            source: e,
        })
}

pub fn mkdir_all(ops: &mut dyn MountOps, path: &Path) -> Result<(), MountError> {
    ops.mkdir_all(path).map_err(|source| MountError::Mkdir {
        path: path.to_owned(),
        source,
    })
}

/// cgroup2's options: `favordynmods` keeps the rwsem that guards moving a process between
/// cgroups out of its fast mode, so that a write to `cgroup.procs` or `cgroup.subtree_control`
/// waits for no RCU grace period. Without it, the pids limit's controller and the container
/// process's move into its cgroup took 0.7 s of a 1.1 s `nook run` in the rig's emulated
/// guest; forks pay a little more instead.
const CGROUP2_OPTIONS: &str = "favordynmods";

/// The kernel filesystems every Linux userland expects, mounted in the initramfs root (they
/// are moved into the container root later, with their submounts). A failure of an optional
/// one (cgroup2: a kernel built without cgroups) is returned in the list, not as an error.
pub fn mount_early(ops: &mut dyn MountOps) -> Result<Vec<MountError>, MountError> {
    let steps: [(&str, &str, &str, u64, &str, bool); 6] = [
        ("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC, "", true),
        ("sysfs", "/sys", "sysfs", NOSUID | NODEV | NOEXEC, "", true),
        ("devtmpfs", "/dev", "devtmpfs", NOSUID, "mode=0755", true),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            NOSUID | NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
            true,
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            NOSUID | NODEV,
            "mode=1777",
            true,
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            NOSUID | NODEV | NOEXEC,
            CGROUP2_OPTIONS,
            false,
        ),
    ];
    let mut skipped = Vec::new();
    for (source, target, fstype, flags, data, required) in steps {
        let target = Path::new(target);
        let mut result =
            mkdir_all(ops, target).and_then(|()| mount(ops, source, target, fstype, flags, data));
        if result.is_err() && data == CGROUP2_OPTIONS {
            // A kernel before 6.0 knows no favordynmods: the pids limit still works, slower.
            result = mount(ops, source, target, fstype, flags, "");
        }
        match result {
            Ok(()) => {}
            Err(e) if !required => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok(skipped)
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The real system calls.
pub struct SysMounts;

impl MountOps for SysMounts {
    fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn read_in_root(&mut self, path: &Path) -> io::Result<Option<String>> {
        crate::user::read_in_root(Path::new("/"), path)
    }

    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()> {
        let c_source = CString::new(source)?;
        let c_target = cstr(target)?;
        let c_fstype = CString::new(fstype)?;
        let c_data = CString::new(data)?;
        // SAFETY: every pointer is a NUL-terminated string that outlives the call; an empty
        // fstype or data string is passed as NULL, as mount(2) expects for moves and binds.
        let ret = unsafe {
            libc::mount(
                c_source.as_ptr(),
                c_target.as_ptr(),
                if fstype.is_empty() {
                    std::ptr::null()
                } else {
                    c_fstype.as_ptr()
                },
                flags as libc::c_ulong,
                if data.is_empty() {
                    std::ptr::null()
                } else {
                    c_data.as_ptr().cast()
                },
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn chdir(&mut self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn chroot(&mut self, path: &Path) -> io::Result<()> {
        std::os::unix::fs::chroot(path)
    }

    fn touch(&mut self, path: &Path) -> io::Result<bool> {
        // O_EXCL: whether the file was ours to create is settled by the same call that creates
        // it, and an existing file (or a symlink, even a dangling one) is left alone.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn exists(&mut self, path: &Path) -> bool {
        path.exists()
    }

    fn dir_in_root(&mut self, path: &Path) -> io::Result<MountPoint> {
        use std::os::fd::AsRawFd;
        let root: std::os::fd::OwnedFd = std::fs::File::open("/")?.into();
        let mut dir = open_in_root(&root, Path::new("/"))?;
        let mut sofar = PathBuf::from("/");
        for part in path.components() {
            let std::path::Component::Normal(name) = part else {
                continue;
            };
            sofar.push(name);
            dir = match open_in_root(&root, &sofar) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let c_name = CString::new(name.as_bytes())?;
                    // SAFETY: a NUL-terminated name in a directory we hold open.
                    let ret = unsafe { libc::mkdirat(dir.as_raw_fd(), c_name.as_ptr(), 0o755) };
                    if ret != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    open_in_root(&root, &sofar)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(MountPoint {
            path: PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())),
            _fd: Some(dir),
        })
    }

    fn file_in_root(&mut self, path: &Path) -> io::Result<(MountPoint, bool)> {
        use std::os::fd::{AsFd, AsRawFd};
        if let Some(parent) = path.parent() {
            self.dir_in_root(parent)?;
        }
        let root: std::os::fd::OwnedFd = std::fs::File::open("/")?.into();
        let open = |flags, mode| crate::copy::open_in_root(root.as_fd(), path, flags, mode);
        // O_EXCL: an existing entry (a symlink too, even a dangling one) is not created over,
        // and is then opened with its symlinks resolved inside the root.
        let (fd, created) = match open(
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o644,
        ) {
            Ok(fd) => (fd, true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => (open(libc::O_PATH, 0)?, false),
            Err(e) => return Err(e),
        };
        let point = MountPoint {
            path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            _fd: Some(fd),
        };
        Ok((point, created))
    }
}

/// Records every call as a line, for tests; fails the calls whose target is in `fail`; only
/// the paths in `existing` exist.
#[derive(Default)]
pub struct Recorder {
    pub calls: Vec<String>,
    pub fail: Vec<PathBuf>,
    pub existing: Vec<PathBuf>,
}

impl Recorder {
    fn check(&self, path: &Path) -> io::Result<()> {
        if self.fail.iter().any(|f| f == path) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok(())
    }
}

impl MountOps for Recorder {
    fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
        self.calls.push(format!("mkdir {}", path.display()));
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
        self.check(target)?;
        let mut names = Vec::new();
        for (bit, name) in [
            (RDONLY, "ro"),
            (NOSUID, "nosuid"),
            (NODEV, "nodev"),
            (NOEXEC, "noexec"),
            (BIND, "bind"),
            (MOVE, "move"),
            (REMOUNT, "remount"),
        ] {
            if flags & bit != 0 {
                names.push(name);
            }
        }
        self.calls.push(
            format!(
                "mount {source} {} {fstype} [{}] {data}",
                target.display(),
                names.join(",")
            )
            .trim_end()
            .to_owned(),
        );
        Ok(())
    }

    fn chdir(&mut self, path: &Path) -> io::Result<()> {
        self.calls.push(format!("chdir {}", path.display()));
        Ok(())
    }

    fn chroot(&mut self, path: &Path) -> io::Result<()> {
        self.calls.push(format!("chroot {}", path.display()));
        Ok(())
    }

    fn touch(&mut self, path: &Path) -> io::Result<bool> {
        self.calls.push(format!("touch {}", path.display()));
        Ok(!self.existing.iter().any(|p| p == path))
    }

    fn exists(&mut self, path: &Path) -> bool {
        self.existing.iter().any(|p| p == path)
    }

    fn dir_in_root(&mut self, path: &Path) -> io::Result<MountPoint> {
        self.calls.push(format!("mkdir-in-root {}", path.display()));
        Ok(MountPoint {
            path: path.to_owned(),
            _fd: None,
        })
    }

    fn file_in_root(&mut self, path: &Path) -> io::Result<(MountPoint, bool)> {
        self.calls.push(format!("file-in-root {}", path.display()));
        let point = MountPoint {
            path: path.to_owned(),
            _fd: None,
        };
        Ok((point, !self.existing.iter().any(|p| p == path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the agent made a mount target is what `touch` answers: only a file it created
    /// counts, never one that was there (a symlink, even a dangling one, included).
    #[test]
    fn touch_says_whether_it_created_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        assert!(SysMounts.touch(&path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(!SysMounts.touch(&path).unwrap());
        std::fs::write(&path, b"from the image").unwrap();
        assert!(!SysMounts.touch(&path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"from the image");
        let link = dir.path().join("resolv.conf");
        std::os::unix::fs::symlink("/nonexistent/resolv.conf", &link).unwrap();
        assert!(!SysMounts.touch(&link).unwrap());
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        let err = SysMounts
            .touch(&dir.path().join("no/such/dir"))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn early_mounts_come_in_dependency_order() {
        let mut r = Recorder::default();
        mount_early(&mut r).unwrap();
        let mounts: Vec<&str> = r
            .calls
            .iter()
            .filter(|c| c.starts_with("mount"))
            .map(String::as_str)
            .collect();
        assert_eq!(
            mounts,
            [
                "mount proc /proc proc [nosuid,nodev,noexec]",
                "mount sysfs /sys sysfs [nosuid,nodev,noexec]",
                "mount devtmpfs /dev devtmpfs [nosuid] mode=0755",
                "mount devpts /dev/pts devpts [nosuid,noexec] newinstance,ptmxmode=0666,mode=0620,gid=5",
                "mount shm /dev/shm tmpfs [nosuid,nodev] mode=1777",
                "mount cgroup2 /sys/fs/cgroup cgroup2 [nosuid,nodev,noexec] favordynmods",
            ]
        );
    }

    #[test]
    fn a_failed_mount_names_source_target_and_type() {
        let mut r = Recorder {
            fail: vec!["/dev/pts".into()],
            ..Default::default()
        };
        let err = mount_early(&mut r).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("devpts") && msg.contains("/dev/pts"), "{msg}");
    }

    #[test]
    fn cgroup2_is_optional() {
        let mut r = Recorder {
            fail: vec!["/sys/fs/cgroup".into()],
            ..Default::default()
        };
        let skipped = mount_early(&mut r).unwrap();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].to_string().contains("cgroup2"));
    }

    /// A kernel before 6.0 refuses favordynmods: cgroup2 is mounted without it.
    #[test]
    fn cgroup2_is_mounted_without_favordynmods_where_the_kernel_lacks_it() {
        struct OldKernel(Recorder);
        impl MountOps for OldKernel {
            fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
                self.0.mkdir_all(path)
            }
            fn mount(&mut self, s: &str, t: &Path, f: &str, fl: u64, d: &str) -> io::Result<()> {
                if d.contains("favordynmods") {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                self.0.mount(s, t, f, fl, d)
            }
            fn chdir(&mut self, path: &Path) -> io::Result<()> {
                self.0.chdir(path)
            }
            fn chroot(&mut self, path: &Path) -> io::Result<()> {
                self.0.chroot(path)
            }
            fn touch(&mut self, path: &Path) -> io::Result<bool> {
                self.0.touch(path)
            }
            fn exists(&mut self, path: &Path) -> bool {
                self.0.exists(path)
            }
        }
        let mut old = OldKernel(Recorder::default());
        assert!(mount_early(&mut old).unwrap().is_empty());
        assert_eq!(
            old.0.calls.last().unwrap(),
            "mount cgroup2 /sys/fs/cgroup cgroup2 [nosuid,nodev,noexec]"
        );
    }
}
