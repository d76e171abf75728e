//! The errors of the microVM backend.

use std::io;
use std::path::PathBuf;

use nook_agent::client::ClientError;

use super::boot::CONNECT_TIMEOUT;
use super::control;
use super::initramfs::InitramfsError;
use super::kernel::KernelError;

/// Errors of the microVM backend.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} is missing at {}: {hint}", path.display())]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("the agent {} is not a static binary (build it with agent/build-static.sh)", path.display())]
    AgentNotStatic { path: PathBuf },
    #[error("cannot make the empty ext4 template {}: {message}", path.display())]
    Mkfs { path: PathBuf, message: String },
    #[error("invalid VM size: {0}")]
    Size(String),
    /// Boxed: the VM's cgroup error carries paths and is rare.
    #[error("cannot place the VMM and its helpers in the container's cgroup")]
    Cgroup(#[source] Box<crate::isolation::limits::cgroup::CgroupError>),
    #[error("the container has no image disk (lower layer) to boot")]
    NoImageDisk,
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    #[error("the VMM {} failed ({status}): {message}", vmm.display())]
    Vmm {
        vmm: PathBuf,
        status: String,
        message: String,
    },
    #[error("the VMM did not connect to the agent socket {} within {:?}", path.display(), CONNECT_TIMEOUT)]
    NoConnect { path: PathBuf },
    #[error("the guest agent did not come up")]
    Agent(#[source] ClientError),
    #[error("cannot stream the writable layer from the guest")]
    Layer(#[source] ClientError),
    #[error("the container's control channel failed")]
    Control(#[source] control::ControlError),
    #[error(transparent)]
    Network(#[from] crate::isolation::stack::StackError),
    #[error("the container has no writable disk at {}", path.display())]
    NoDisk { path: PathBuf },
    #[error("cannot share {} at {target} with a VM: only directories and regular files can be shared", path.display())]
    ShareNotDir { path: PathBuf, target: String },
    #[error("cannot share the file {} at {target} with a VM: {why}", path.display())]
    ShareFile {
        path: PathBuf,
        target: String,
        why: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the warm start of the guest failed")]
    Warm(#[source] nook_agent::guest::warm::WarmError),
    #[error("cannot build the warm-start template ({status}): {message}")]
    Template { status: String, message: String },
    #[error("checkpoint {name}: {why}")]
    Checkpoint { name: String, why: String },
    #[error("virtiofsd for {} failed: {message}", socket.display())]
    Virtiofsd { socket: PathBuf, message: String },
}
