//! Starting one process: identity, environment, working directory, stdio (pipes or a pty), and
//! the docker-style exit codes for everything that can go wrong on the way.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::limits::{ChildFailure, ChildLimits};
use super::namespace::{ChildSide, ForkInto, PidNamespace};
use super::security::Security;
use super::{pty, sys};
use crate::process_env;
use crate::protocol::{ExitStatus, ProcessSpec};
use crate::user::{resolve_user, UserError};

pub use crate::process_env::DEFAULT_PATH;

/// A running child and the supervisor's ends of its stdio.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: Option<OwnedFd>,
    pub(crate) stderr: Option<OwnedFd>,
    /// The pty master, for resizes (the same terminal as `stdout`).
    pub(crate) pty: Option<OwnedFd>,
    /// `CLOCK_BOOTTIME` ns right after the exec succeeded.
    pub(crate) exec_ns: u64,
}

/// Why a process did not start, with the code docker would exit with.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("cannot create the working directory {}", path.display())]
    WorkingDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up stdio for the process")]
    Stdio(#[source] io::Error),
    #[error("cannot set up the container's PID and mount namespaces for the process")]
    Namespace(#[source] io::Error),
    #[error("cannot join the container's cgroup (--pids-limit)")]
    Cgroup(#[source] io::Error),
    #[error("cannot set a resource limit (--ulimit)")]
    Rlimit(#[source] io::Error),
    #[error("cannot apply the container's capabilities, no_new_privs or seccomp profile")]
    Security(#[source] io::Error),
    #[error("the container's main process has exited")]
    MainExited,
    #[error("exec: \"{program}\": executable file not found in $PATH")]
    NotFound { program: String },
    #[error("exec: \"{program}\" cannot be executed")]
    NotExecutable {
        program: String,
        #[source]
        source: io::Error,
    },
}

impl SpawnError {
    /// 127 for a command not found, 126 for one that cannot run, 125 when the container setup
    /// failed before the command was tried.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::NotExecutable { .. } => 126,
            SpawnError::User(_)
            | SpawnError::WorkingDir { .. }
            | SpawnError::Stdio(_)
            | SpawnError::Namespace(_)
            | SpawnError::Cgroup(_)
            | SpawnError::Rlimit(_)
            | SpawnError::Security(_)
            | SpawnError::MainExited => 125,
        }
    }
}

/// Converts a raw `waitpid` status.
pub(crate) fn exit_status(raw: libc::c_int) -> ExitStatus {
    if libc::WIFSIGNALED(raw) {
        let sig = libc::WTERMSIG(raw);
        ExitStatus {
            code: 128 + sig,
            signal: Some(sig),
        }
    } else {
        ExitStatus {
            code: libc::WEXITSTATUS(raw),
            signal: None,
        }
    }
}

/// The process's environment as `(key, value)` pairs for `Command`. The hostname is the
/// kernel's: the container's, set before the main process starts.
fn build_env(spec: &ProcessSpec, home: &str) -> Vec<(String, String)> {
    let hostname = process_env::kernel_hostname();
    let defaults = process_env::Defaults {
        home,
        hostname: &hostname,
        terminal: spec.terminal,
    };
    process_env::build(&spec.env, defaults)
        .into_iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Which step between fork and exec failed, told to the parent over a pipe (the error itself
/// comes back through `Command`, as an errno only).
const STAGE_NAMESPACE: u8 = 1;
const STAGE_WORKING_DIR: u8 = 2;
const STAGE_CGROUP: u8 = 3;
const STAGE_RLIMIT: u8 = 4;
const STAGE_SECURITY: u8 = 5;

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is valid storage for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned these two descriptors; nobody else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What a container's process runs under, besides its namespaces.
pub(crate) struct Confinement {
    pub(crate) limits: ChildLimits,
    pub(crate) security: Security,
}

/// Starts `spec` in `ns` under `confinement`. `root` is where the container's /etc/passwd and
/// /etc/group are read.
pub(crate) fn spawn(
    spec: &ProcessSpec,
    root: &Path,
    ns: PidNamespace,
    confinement: Confinement,
) -> Result<Spawned, SpawnError> {
    let Confinement { limits, security } = confinement;
    let limits = limits.with_rlimits(&spec.rlimits);
    let mut user = resolve_user(root, &spec.user)?;
    for g in &spec.groups {
        if !user.groups.contains(g) {
            user.groups.push(*g);
        }
    }
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    std::fs::create_dir_all(cwd).map_err(|source| SpawnError::WorkingDir {
        path: cwd.into(),
        source,
    })?;
    let working_dir_error = |source| SpawnError::WorkingDir {
        path: cwd.into(),
        source,
    };
    // Changed into in the child, after it entered the container's mount namespace (joining
    // one moves the working directory to its root).
    let cwd_c = CString::new(cwd)
        .map_err(|e| working_dir_error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let child_side = ChildSide::new(ns, limits.joins_cgroup()).map_err(SpawnError::Namespace)?;
    let (stage_read, stage_write) = cloexec_pipe().map_err(SpawnError::Stdio)?;
    let stage_fd = stage_write.as_raw_fd();

    let program = &spec.argv[0];
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(build_env(spec, &user.home));

    let mut pty_master = None;
    if spec.terminal {
        let pty = pty::open(spec.rows, spec.cols).map_err(SpawnError::Stdio)?;
        let out = pty.slave.try_clone().map_err(SpawnError::Stdio)?;
        let err = pty.slave.try_clone().map_err(SpawnError::Stdio)?;
        cmd.stdin(Stdio::from(pty.slave))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        pty_master = Some(pty.master);
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }

    // Changing identity needs root; an unprivileged supervisor (host tests) can only run
    // processes as itself, and asking for anyone else fails in the child with EPERM.
    // SAFETY: geteuid/getegid cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let change_identity = euid == 0 || user.uid != euid || user.gid != egid;
    let terminal = spec.terminal;
    let groups: Vec<libc::gid_t> = user.groups.clone();
    let (uid, gid) = (user.uid, user.gid);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls on memory captured before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let tell = |stage: u8| {
                libc::write(stage_fd, [stage].as_ptr().cast(), 1);
            };
            if let Err(e) = child_side.apply() {
                tell(STAGE_NAMESPACE);
                return Err(e);
            }
            // Before anything of the process's own, and while still root: raising a hard
            // limit needs CAP_SYS_RESOURCE.
            if let Err((failure, e)) = limits.apply() {
                tell(match failure {
                    ChildFailure::Cgroup => STAGE_CGROUP,
                    ChildFailure::Rlimit => STAGE_RLIMIT,
                });
                return Err(e);
            }
            if libc::chdir(cwd_c.as_ptr()) < 0 {
                let e = io::Error::last_os_error();
                tell(STAGE_WORKING_DIR);
                return Err(e);
            }
            // Its own session: the process leads its group (signals reach its children too
            // when sent to the group) and can take the pty as its controlling terminal.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Err(e) = security.before_identity() {
                tell(STAGE_SECURITY);
                return Err(e);
            }
            if change_identity {
                if euid == 0 && libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgid(gid) < 0 || libc::setuid(uid) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Err(e) = security.after_identity(uid == 0) {
                tell(STAGE_SECURITY);
                return Err(e);
            }
            Ok(())
        });
    }

    let fork_into = ForkInto::enter(ns).map_err(SpawnError::Namespace)?;
    let spawned = cmd.spawn();
    if let Err(e) = fork_into.restore() {
        // Later children would land in the container's namespace: refuse this one outright.
        if let Ok(mut child) = spawned {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(SpawnError::Namespace(e));
    }
    drop(stage_write);
    let mut child = spawned.map_err(|source| {
        let mut stage = [0u8; 1];
        let _ = sys::set_nonblocking(stage_read.as_fd());
        match sys::read(stage_read.as_fd(), &mut stage) {
            Ok(Some(1)) if stage[0] == STAGE_NAMESPACE => return SpawnError::Namespace(source),
            Ok(Some(1)) if stage[0] == STAGE_WORKING_DIR => return working_dir_error(source),
            Ok(Some(1)) if stage[0] == STAGE_CGROUP => return SpawnError::Cgroup(source),
            Ok(Some(1)) if stage[0] == STAGE_RLIMIT => return SpawnError::Rlimit(source),
            Ok(Some(1)) if stage[0] == STAGE_SECURITY => return SpawnError::Security(source),
            _ => {}
        }
        if matches!(
            source.raw_os_error(),
            Some(libc::ENOENT) | Some(libc::ENOTDIR)
        ) {
            SpawnError::NotFound {
                program: program.clone(),
            }
        } else {
            SpawnError::NotExecutable {
                program: program.clone(),
                source,
            }
        }
    })?;
    let exec_ns = sys::boottime_ns();
    // The parent's copies of the pty slave live in `cmd`; drop them so the master sees a
    // hangup once the child and its descendants are gone.
    drop(cmd);
    let pid = child.id();
    let pidfd = sys::pidfd_open(pid).map_err(SpawnError::Stdio)?;

    let (stdin, stdout, stderr, pty) = match pty_master {
        Some(master) => {
            let input = master.try_clone().map_err(SpawnError::Stdio)?;
            let resize = master.try_clone().map_err(SpawnError::Stdio)?;
            (Some(input), Some(master), None, Some(resize))
        }
        None => (
            child.stdin.take().map(OwnedFd::from),
            child.stdout.take().map(OwnedFd::from),
            child.stderr.take().map(OwnedFd::from),
            None,
        ),
    };
    for fd in [&stdin, &stdout, &stderr].into_iter().flatten() {
        sys::set_nonblocking(fd.as_fd()).map_err(SpawnError::Stdio)?;
    }
    Ok(Spawned {
        pid,
        pidfd,
        stdin,
        stdout,
        stderr,
        pty,
        exec_ns,
    })
}
