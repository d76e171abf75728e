//! The limits the guest applies to the container's processes (`--pids-limit`, `--ulimit`): a
//! cgroup of the guest's cgroup v2 that every process of the container enters before it runs,
//! with `pids.max`, and the setrlimit calls, made in each process between fork and exec (after
//! the container's main process has started, `exec`'d processes get the same).
//!
//! The agent stays in the root cgroup; the container's cgroup is its child. The container sees
//! the cgroup file system read-only (its mount namespace's copy of it), so it cannot raise its
//! own `pids.max` without CAP_SYS_ADMIN to remount it.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::protocol::{GuestLimits, Rlimit};

/// The container's cgroup, under the guest's cgroup v2 root.
pub const CGROUP: &str = "nook-container";

/// The limits of the running container, prepared once at `Start`.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    /// The container cgroup's `cgroup.procs`, open for writing.
    procs: Option<OwnedFd>,
    rlimits: Vec<(u32, libc::rlimit)>,
}

/// Why the limits could not be set up; the container does not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the container's pids limit: {what} {}", path.display())]
pub struct LimitsError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// One limit as setrlimit takes it.
fn setrlimit_args(r: &Rlimit) -> (u32, libc::rlimit) {
    (
        r.resource,
        libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        },
    )
}

fn write_file(what: &'static str, path: PathBuf, value: &str) -> Result<(), LimitsError> {
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| LimitsError { what, path, source })
}

impl Limits {
    /// Makes the cgroup under `cgroup_root` (the guest's cgroup v2 mount) when a pids limit is
    /// asked for, and keeps the rlimits.
    pub(crate) fn prepare(cgroup_root: &Path, limits: &GuestLimits) -> Result<Limits, LimitsError> {
        let rlimits = limits.rlimits.iter().map(setrlimit_args).collect();
        let Some(max) = limits.pids_max else {
            return Ok(Limits {
                procs: None,
                rlimits,
            });
        };
        write_file(
            "enable the pids controller in",
            cgroup_root.join("cgroup.subtree_control"),
            "+pids",
        )?;
        let dir = cgroup_root.join(CGROUP);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(LimitsError {
                    what: "make",
                    path: dir,
                    source,
                })
            }
        }
        write_file("write", dir.join("pids.max"), &max.to_string())?;
        let procs_path = dir.join("cgroup.procs");
        let procs = OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .map_err(|source| LimitsError {
                what: "open",
                path: procs_path,
                source,
            })?;
        Ok(Limits {
            procs: Some(procs.into()),
            rlimits,
        })
    }

    /// What a child applies to itself; valid while `self` lives.
    pub(crate) fn child_side(&self) -> ChildLimits {
        ChildLimits {
            procs: self.procs.as_ref().map(AsRawFd::as_raw_fd),
            rlimits: self.rlimits.clone(),
        }
    }
}

/// The limits as a forked child applies them: only system calls on data prepared before.
pub(crate) struct ChildLimits {
    procs: Option<RawFd>,
    rlimits: Vec<(u32, libc::rlimit)>,
}

/// Which of the limits failed in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildFailure {
    Cgroup,
    Rlimit,
}

impl ChildLimits {
    /// Adds one process's own setrlimit calls, made after the container's.
    pub(crate) fn with_rlimits(mut self, rlimits: &[Rlimit]) -> ChildLimits {
        self.rlimits.extend(rlimits.iter().map(setrlimit_args));
        self
    }

    /// Whether the child enters the container's cgroup.
    pub(crate) fn joins_cgroup(&self) -> bool {
        self.procs.is_some()
    }

    /// In the forked child, before it drops privileges: joins the cgroup (writing `0`, the
    /// calling process, to its `cgroup.procs`) and sets the rlimits. Async-signal-safe.
    pub(crate) fn apply(&self) -> Result<(), (ChildFailure, io::Error)> {
        if let Some(fd) = self.procs {
            // SAFETY: writes one byte from a static buffer to a descriptor the parent keeps
            // open for the child's lifetime up to exec.
            if unsafe { libc::write(fd, c"0".as_ptr().cast(), 1) } < 0 {
                return Err((ChildFailure::Cgroup, io::Error::last_os_error()));
            }
        }
        for (resource, limit) in &self.rlimits {
            // SAFETY: setrlimit reads a valid struct; `resource` is below RLIM_NLIMITS (the
            // protocol checks it).
            if unsafe { libc::setrlimit(*resource as _, limit) } < 0 {
                return Err((ChildFailure::Rlimit, io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Rlimit;

    #[test]
    fn a_pids_limit_makes_the_cgroup_and_writes_pids_max() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        // What the kernel would make with the directory.
        std::fs::create_dir(root.path().join(CGROUP)).unwrap();
        for f in ["pids.max", "cgroup.procs"] {
            std::fs::write(root.path().join(CGROUP).join(f), "").unwrap();
        }
        let limits = Limits::prepare(
            root.path(),
            &GuestLimits {
                pids_max: Some(64),
                rlimits: vec![Rlimit {
                    resource: libc::RLIMIT_NOFILE,
                    soft: 100,
                    hard: 200,
                }],
            },
        )
        .unwrap();
        assert!(limits.child_side().joins_cgroup());
        let read = |f: &str| std::fs::read_to_string(root.path().join(f)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+pids");
        assert_eq!(read(&format!("{CGROUP}/pids.max")), "64");
        assert_eq!(limits.child_side().rlimits.len(), 1);
    }

    #[test]
    fn no_cgroup_without_a_pids_limit_and_a_missing_one_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let limits = Limits::prepare(root.path(), &GuestLimits::default()).unwrap();
        assert!(!limits.child_side().joins_cgroup());
        let missing = root.path().join("no-cgroup2");
        let err = Limits::prepare(
            &missing,
            &GuestLimits {
                pids_max: Some(8),
                rlimits: Vec::new(),
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("pids controller"), "{err}");
    }
}
