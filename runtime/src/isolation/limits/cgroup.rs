//! One container's cgroup v2: made in the delegated place before the container's first process
//! runs its entrypoint, given the container's limits, read by `stats` and `update`, checked for
//! OOM kills when the container ends, and removed with it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::delegation::{Delegation, Parent, CGROUP_ROOT};
use super::{CgroupFile, Limits};

/// The prefix of every cgroup nook makes (`nook-<id>`, or systemd's `nook-<id>.scope`).
pub const PREFIX: &str = "nook-";

/// Why a container's cgroup could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot create the container's cgroup {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {value:?} to {}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot move process {pid} into the cgroup {}", path.display())]
    Move {
        pid: i32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the {controller} controller, which {file} needs, is not delegated to {}: its \
         cgroup.controllers lists {available:?}",
        parent.display()
    )]
    ControllerMissing {
        controller: &'static str,
        file: &'static str,
        parent: PathBuf,
        available: Vec<String>,
    },
    #[error("{0}")]
    Systemd(String),
}

/// A container's cgroup directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

/// The controllers nook enables for its cgroups, when the parent has them.
const CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

impl Cgroup {
    /// The cgroup at `path` (a directory under /sys/fs/cgroup).
    pub fn at(path: &Path) -> Cgroup {
        Cgroup {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes container `id`'s cgroup in `delegation` with `limits`, and moves `pid` (its first
    /// process, not yet running the entrypoint) into it.
    pub fn create(
        delegation: &Delegation,
        id: &str,
        pid: i32,
        limits: &Limits,
    ) -> Result<Cgroup, CgroupError> {
        let files = limits.cgroup_files(None);
        match &delegation.parent {
            Parent::Directory(parent) => {
                let cgroup = Self::make(delegation, parent, id, &files)?;
                if let Err(e) = cgroup.add(pid) {
                    cgroup.remove();
                    return Err(e);
                }
                Ok(cgroup)
            }
            Parent::Systemd => {
                let path = super::systemd::start_scope(id, pid).map_err(CgroupError::Systemd)?;
                let cgroup = Cgroup { path };
                cgroup.write_all(&files)?;
                Ok(cgroup)
            }
        }
    }

    /// Makes container `id`'s cgroup in the delegated directory `parent` with `files` written,
    /// and no process yet.
    pub fn make(
        delegation: &Delegation,
        parent: &Path,
        id: &str,
        files: &[CgroupFile],
    ) -> Result<Cgroup, CgroupError> {
        for file in files {
            if !delegation.controllers.iter().any(|c| c == file.controller) {
                return Err(CgroupError::ControllerMissing {
                    controller: file.controller,
                    file: file.file,
                    parent: parent.to_path_buf(),
                    available: delegation.controllers.clone(),
                });
            }
        }
        enable_controllers(parent, &delegation.controllers);
        let path = parent.join(format!("{PREFIX}{id}"));
        if let Err(source) = std::fs::create_dir(&path) {
            // A leftover of a monitor killed by hand: empty, it is taken over.
            if source.kind() != io::ErrorKind::AlreadyExists {
                return Err(CgroupError::Create { path, source });
            }
        }
        let cgroup = Cgroup { path };
        if let Err(e) = cgroup.write_all(files) {
            cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// Makes the program `command` starts enter this cgroup before it runs (and so every
    /// process it makes): its allocations are charged here from its first page.
    pub fn enter_on_exec(&self, command: &mut std::process::Command) -> Result<(), CgroupError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let path = self.path.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| CgroupError::Move {
                pid: 0,
                path: self.path.clone(),
                source,
            })?;
        // SAFETY: write(2) is async-signal-safe; `procs` is open until the closure (owned by
        // `command`) is dropped, after the fork that runs it.
        unsafe {
            command.pre_exec(move || {
                if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Writes `files`; a file the cgroup lacks means its controller is not delegated.
    pub fn write_all(&self, files: &[CgroupFile]) -> Result<(), CgroupError> {
        for f in files {
            let path = self.path.join(f.file);
            if !path.exists() {
                let parent = self.path.parent().unwrap_or(&self.path);
                return Err(CgroupError::ControllerMissing {
                    controller: f.controller,
                    file: f.file,
                    parent: parent.to_path_buf(),
                    available: read_words(&parent.join("cgroup.subtree_control")),
                });
            }
            std::fs::write(&path, &f.value).map_err(|source| CgroupError::Write {
                path,
                value: f.value.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Moves process `pid` into this cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string()).map_err(|source| {
            CgroupError::Move {
                pid,
                path: self.path.clone(),
                source,
            }
        })
    }

    /// How many processes the kernel's OOM killer ended in this cgroup (`memory.events`).
    pub fn oom_kills(&self) -> u64 {
        self.key_value("memory.events", "oom_kill").unwrap_or(0)
    }

    /// The value of `key` in a flat-keyed interface file (`memory.events`, `cpu.stat`).
    pub fn key_value(&self, file: &str, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.path.join(file)).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// A single-value interface file (`memory.current`, `pids.current`); `max` is None.
    pub fn value(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.path.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The text of an interface file.
    pub fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.path.join(file)).ok()
    }

    /// Removes the cgroup once its last process is gone (the kernel ends a pid namespace's
    /// processes when its first one dies, but not at once). A scope systemd collects itself.
    pub fn remove(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return,
            }
        }
    }

    /// The cgroup nook made for the container whose first process is `pid`, if it has one.
    pub fn of_process(pid: i32) -> Option<Cgroup> {
        let path = process_cgroup(pid)?;
        path.file_name()?
            .to_str()?
            .starts_with(PREFIX)
            .then_some(Cgroup { path })
    }
}

/// The cgroup v2 directory of process `pid` (the `0::` line of /proc/PID/cgroup), on a host
/// that runs cgroup v2 alone.
pub fn process_cgroup(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_proc_cgroup(&text).map(|rel| Path::new(CGROUP_ROOT).join(rel))
}

fn parse_proc_cgroup(text: &str) -> Option<&str> {
    // On a hybrid host the `0::` line names the controller-less v2 hierarchy: no limits there.
    if text.lines().any(|l| !l.starts_with("0::")) {
        return None;
    }
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(rel.trim().trim_start_matches('/'))
}

/// Enables nook's controllers in `parent`'s `cgroup.subtree_control`, those it has, one at a
/// time (a controller already enabled or refused leaves the others).
fn enable_controllers(parent: &Path, available: &[String]) {
    let enabled = read_words(&parent.join("cgroup.subtree_control"));
    for c in CONTROLLERS {
        if available.iter().any(|a| a == c) && !enabled.iter().any(|e| e == c) {
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pure_v2_membership_counts() {
        assert_eq!(
            parse_proc_cgroup("0::/user.slice/nook-abc\n"),
            Some("user.slice/nook-abc")
        );
        let hybrid = "4:memory:/x\n0::/\n";
        assert_eq!(parse_proc_cgroup(hybrid), None);
    }

    #[test]
    fn files_are_read_and_missing_controllers_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cg = Cgroup::at(&dir.path().join("nook-1"));
        std::fs::create_dir(cg.path()).unwrap();
        std::fs::write(
            cg.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(cg.path().join("pids.current"), "7\n").unwrap();
        std::fs::write(cg.path().join("memory.max"), "max\n").unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "memory pids\n").unwrap();
        assert_eq!(cg.oom_kills(), 1);
        assert_eq!(cg.value("pids.current"), Some(7));
        assert_eq!(cg.value("memory.max"), None);
        let limits = Limits {
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            ..Limits::default()
        };
        let err = cg.write_all(&limits.cgroup_files(None)).unwrap_err();
        // memory.max exists (written); memory.swap.max does not: its controller is named.
        assert!(matches!(
            err,
            CgroupError::ControllerMissing {
                controller: "memory",
                file: "memory.swap.max",
                ..
            }
        ));
        assert_eq!(
            std::fs::read_to_string(cg.path().join("memory.max")).unwrap(),
            "67108864"
        );
    }
}
