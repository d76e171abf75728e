//! The error of [`crate::run`]: one variant per stage, each carrying its cause.

use std::path::PathBuf;

/// Why a VM could not be started or ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The host cannot run standard guests.
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// The configuration is invalid.
    #[error("invalid VM configuration: {0}")]
    Config(String),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
    /// KVM.
    #[error(transparent)]
    Kvm(#[from] crate::kvm::KvmError),
    /// Loading the guest.
    #[error(transparent)]
    Boot(#[from] crate::boot::BootError),
    /// vCPU setup.
    #[error(transparent)]
    Arch(#[from] crate::arch::x86_64::ArchError),
    /// Device wiring.
    #[error(transparent)]
    Wiring(#[from] crate::devices::virtio::wiring::WiringError),
    /// A disk image.
    #[error(transparent)]
    Disk(#[from] crate::devices::virtio::block::io::DiskError),
    /// The agent socket.
    #[error("cannot connect to the agent socket {path} (the host side must listen before the VM starts)")]
    AgentSocket {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The passt socket of the network interface.
    #[error(
        "cannot connect to the passt socket {path} (passt must listen on it before the VM starts)"
    )]
    NetSocket {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A shared directory's virtio-fs device or its virtiofsd.
    #[error(transparent)]
    Fs(#[from] crate::devices::virtio::fs::FsError),
    /// A virtio-fs tag.
    #[error(transparent)]
    Tag(#[from] crate::devices::virtio::fs::config::InvalidTag),
    /// The network interface's MAC address.
    #[error(transparent)]
    Mac(#[from] crate::config::InvalidMac),
    /// The serial output file.
    #[error("cannot open the serial output file {path}")]
    Serial {
        /// File path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel command line.
    #[error("invalid kernel command line")]
    Cmdline(#[source] linux_loader::cmdline::Error),
    /// An eventfd.
    #[error("cannot create the {what} eventfd")]
    EventFd {
        /// Which one.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The exit signal.
    #[error(transparent)]
    ExitSignal(#[from] crate::exit::ExitSignalError),
    /// The seccomp filter.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// The snapshot trigger socket.
    #[error("cannot connect to the snapshot trigger socket {path} (the caller must listen before the VM starts)")]
    SnapshotTrigger {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot could not be written or restored.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// A thread could not start.
    #[error(transparent)]
    Spawn(#[from] crate::thread::SpawnError),
    /// A VMM thread failed while the VM ran.
    #[error(transparent)]
    Failed(std::sync::Arc<crate::exit::ThreadError>),
}
