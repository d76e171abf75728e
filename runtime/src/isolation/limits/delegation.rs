//! Where a rootless user may make cgroups: rootless podman's two ways.
//!
//! - A directory the administrator delegated (the user owns it, its `cgroup.procs` and its
//!   `cgroup.subtree_control`, as systemd's `Delegate=yes` leaves it), named by `cgroup_parent`
//!   in nook's `config.toml`. nook makes one cgroup a container in it and moves the container's
//!   first process there itself, which the kernel allows when the user's own processes live in
//!   the same delegated subtree (the common ancestor's `cgroup.procs` is the user's).
//! - The user's systemd manager: a transient scope a container (`StartTransientUnit` with the
//!   process and `Delegate=yes`), systemd moving the process.
//!
//! Neither exists on cgroup v1 or hybrid hosts (v2 holds no controllers there), nor without a
//! manager or a configured directory: then limits cannot be enforced, and [`Unavailable`] says
//! why, for `create`'s warning and `nook info`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::paths::Env;

/// Where cgroup v2 is mounted on a host that runs it alone (the unified hierarchy).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// How the host mounts cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2 alone at /sys/fs/cgroup.
    V2,
    /// cgroup v1 controllers, with a v2 hierarchy (holding no controllers) at `unified`.
    Hybrid,
    /// cgroup v1 only.
    V1,
    /// No cgroup file system at /sys/fs/cgroup.
    None,
}

impl Hierarchy {
    /// The host's, from the file system types under /sys/fs/cgroup.
    pub fn detect() -> Hierarchy {
        let root = Path::new(CGROUP_ROOT);
        if is_cgroup2(root) {
            Hierarchy::V2
        } else if is_cgroup2(&root.join("unified")) {
            Hierarchy::Hybrid
        } else if root.join("memory").is_dir() || root.join("cpu").is_dir() {
            Hierarchy::V1
        } else {
            Hierarchy::None
        }
    }

    /// What `nook info` calls it.
    pub fn describe(&self) -> &'static str {
        match self {
            Hierarchy::V2 => "v2 (unified)",
            Hierarchy::Hybrid => "v1 (hybrid: v2 at /sys/fs/cgroup/unified holds no controllers)",
            Hierarchy::V1 => "v1",
            Hierarchy::None => "none mounted at /sys/fs/cgroup",
        }
    }
}

fn is_cgroup2(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs reads the NUL-terminated path and fills the zeroed struct it is given.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; both pointers are valid for the call.
    (unsafe { libc::statfs(c.as_ptr(), &mut fs) } == 0) && fs.f_type as i64 == CGROUP2_SUPER_MAGIC
}

/// Who makes a container's cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parent {
    /// A directory delegated to the user (`cgroup_parent` in config.toml).
    Directory(PathBuf),
    /// The user's systemd manager, a transient scope per container.
    Systemd,
}

/// A delegated place for the containers' cgroups, with the controllers it gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delegation {
    pub parent: Parent,
    /// The controllers a container's cgroup can have (`cgroup.controllers` of the parent).
    pub controllers: Vec<String>,
}

/// Why limits cannot be enforced here: a sentence for a warning and `nook info`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

impl Delegation {
    /// The delegation of the calling user: `cgroup_parent` from config.toml, else the user's
    /// systemd manager.
    pub fn detect(env: &dyn Env) -> Result<Delegation, Unavailable> {
        let config = Config::load(env).map_err(|e| Unavailable(crate::errors::chain(&e)))?;
        let hierarchy = Hierarchy::detect();
        if let Some(dir) = config.cgroup_parent {
            return Self::directory(&dir, &hierarchy);
        }
        if hierarchy != Hierarchy::V2 {
            return Err(Unavailable(format!(
                "the host runs cgroup {}, and rootless limits need cgroup v2 with a delegated \
                 subtree",
                hierarchy.describe()
            )));
        }
        if super::systemd::manager_running(env) {
            return Ok(Delegation {
                parent: Parent::Systemd,
                controllers: super::systemd::user_controllers(env.uid()),
            });
        }
        Err(Unavailable(format!(
            "cgroup v2 but no delegated subtree: no systemd user manager runs, and {} names no \
             cgroup_parent",
            Config::path(env).display()
        )))
    }

    fn directory(dir: &Path, hierarchy: &Hierarchy) -> Result<Delegation, Unavailable> {
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            Path::new(CGROUP_ROOT).join(dir)
        };
        if *hierarchy != Hierarchy::V2 || !is_cgroup2(&dir) {
            return Err(Unavailable(format!(
                "cgroup_parent {} is not in a cgroup v2 hierarchy (the host runs cgroup {})",
                dir.display(),
                hierarchy.describe()
            )));
        }
        for file in ["cgroup.procs", "cgroup.subtree_control"] {
            if !writable(&dir.join(file)) {
                return Err(Unavailable(format!(
                    "cgroup_parent {} is not delegated to this user: {file} is not writable \
                     (the administrator chowns the directory, its cgroup.procs and its \
                     cgroup.subtree_control to the user)",
                    dir.display()
                )));
            }
        }
        let controllers = std::fs::read_to_string(dir.join("cgroup.controllers"))
            .map(|s| s.split_whitespace().map(String::from).collect())
            .map_err(|e| {
                Unavailable(format!(
                    "cannot read the controllers of cgroup_parent {}: {e}",
                    dir.display()
                ))
            })?;
        Ok(Delegation {
            parent: Parent::Directory(dir),
            controllers,
        })
    }

    /// What `nook info` says of it.
    pub fn describe(&self) -> String {
        let place = match &self.parent {
            Parent::Directory(d) => format!("{} (cgroup_parent in config.toml)", d.display()),
            Parent::Systemd => "transient scopes of the user's systemd manager".into(),
        };
        format!("{place}, controllers: {}", self.controllers.join(" "))
    }
}

fn writable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path and nothing else.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}
