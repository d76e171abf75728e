//! nook-vmm: the KVM microVM monitor that runs one container per VM.
//!
//! The VMM is built on the rust-vmm crates (kvm-ioctls, vm-memory, virtio-queue, linux-loader,
//! vmm-sys-util). It boots an ELF `vmlinux` through its PVH entry with an initramfs that holds the
//! guest agent, a read-only virtio-blk disk with the image's EROFS root, a writable virtio-blk disk
//! with the container's upper layer, and the agent channel (virtio-console bridged to a host Unix
//! socket).
//!
//! This crate never depends on the runtime or on the agent.

pub mod arch;
pub mod boot;
pub mod bus;
pub mod config;
pub mod devices;
pub mod error;
pub mod exit;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod host;
pub mod kvm;
pub mod layout;
pub mod machine;
pub mod memory;
pub mod seccomp;
pub mod snapshot;
pub mod thread;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tiny_guests;

pub use config::{DiskConfig, FsConfig, NetConfig, SerialOutput, SnapshotTo, VmConfig};
pub use error::VmmError;
pub use exit::VmExit;

/// Boots the VM described by `config` and runs it until the guest resets, halts, fails or the
/// timeout expires. Refuses at once on a host whose KVM cannot boot a standard guest.
pub fn run(config: &VmConfig) -> Result<VmExit, VmmError> {
    machine::validate(config)?;
    host::check()?;
    machine::run(config, machine::Caller::Free)
}

/// [`run`] for the `nook-vmm` process: once the VM is built the calling thread, which then
/// only starts the vCPUs, waits and tears down, goes under the same seccomp filter as every
/// other VMM thread, for good (a guest that took over one thread must not find an unfiltered
/// one). A library caller that goes on afterwards wants [`run`].
pub fn run_confined(config: &VmConfig) -> Result<VmExit, VmmError> {
    machine::validate(config)?;
    host::check()?;
    machine::run(config, machine::Caller::Confined)
}
