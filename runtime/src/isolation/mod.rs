//! Isolation backends: how a container's processes are confined.
//!
//! Both columns (`--isolation=container`, namespaces; `--isolation=vm`, a microVM) take the same
//! [`LaunchSpec`] and the same stdio, and hand back a [`Workload`] that the container's monitor
//! waits for. Everything above this trait (state, logs, the CLI) is shared.

pub mod namespace;
pub mod vm;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The process a container runs (its first process, or one started by `exec`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// argv[0] is looked up in the container's `PATH` when it holds no `/`.
    pub argv: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the container; created when missing, like docker.
    pub cwd: String,
    /// `user`, `uid`, `user:group` or `uid:gid`, resolved against the container's /etc/passwd
    /// and /etc/group. Empty means root.
    pub user: String,
    /// Give the process a terminal (its stdio is a pty set up by the caller).
    pub terminal: bool,
}

/// The container's filesystem: the image's read-only directories plus its own writable layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Image directories, bottom layer first.
    pub lower: Vec<PathBuf>,
    /// The container's writable layer (overlayfs upperdir) and overlayfs' work directory.
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the overlay is mounted (inside the container's mount namespace only).
    pub merged: PathBuf,
    /// Mount the root read-only (`--read-only`).
    pub read_only: bool,
}

/// Everything needed to start a container's first process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub process: ProcessSpec,
    pub rootfs: RootfsSpec,
    pub hostname: String,
}

/// The three standard streams handed to a container process: pipes, or a pty nook made, never
/// the caller's own descriptors.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// With a terminal, where the namespace column sends back the leader of the pty it opens
    /// inside the container (so that the container sees its terminal in its own `/dev/pts`);
    /// the process then uses that pty, sized like `stdin`, instead of the three above. The VM
    /// column makes its pty in the guest and relays the three.
    pub console: Option<OwnedFd>,
}

/// How a process of a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell-style status: the code, or 128 + the signal number.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// A started container process, owned by the caller (the monitor, or `nook exec`).
pub trait Workload {
    /// The host pid of the process (the container's init, for `start`).
    fn pid(&self) -> i32;
    /// Blocks until the process ends.
    fn wait(&mut self) -> Result<Exit, IsolationError>;
}

/// One isolation column.
pub trait Isolation {
    /// Starts the container's first process. Returns once it runs the workload's executable,
    /// or with the reason it could not.
    fn start(&self, spec: &LaunchSpec, stdio: Stdio) -> Result<Box<dyn Workload>, IsolationError>;
    /// Starts a second process in the running container whose init has host pid `init`.
    fn exec(
        &self,
        init: i32,
        process: &ProcessSpec,
        stdio: Stdio,
    ) -> Result<Box<dyn Workload>, IsolationError>;
    /// Sends `signal` to the container's init process.
    fn signal(&self, init: i32, signal: i32) -> Result<(), IsolationError>;
}

/// Errors of the isolation backends.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// The container process failed before it could run the workload; `code` follows docker's
    /// convention (125 set-up, 126 not executable, 127 not found).
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("cannot {what}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the user namespace's id mapping")]
    IdMap(#[from] namespace::idmap::IdMapError),
    #[error("cannot run the container's microVM")]
    Vm(#[from] vm::VmError),
    #[error("cannot unpack layer {layer}")]
    Unpack {
        layer: String,
        #[source]
        source: std::io::Error,
    },
}

impl IsolationError {
    pub(crate) fn os(what: impl Into<String>, source: std::io::Error) -> Self {
        IsolationError::Os {
            what: what.into(),
            source,
        }
    }

    /// The exit code `nook` should report for this error (docker's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            IsolationError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}
