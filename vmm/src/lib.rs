//! nook-vmm: the KVM microVM monitor that runs one container per VM.
//!
//! The VMM is built on the rust-vmm crates (kvm-ioctls, vm-memory, virtio-queue, linux-loader,
//! vmm-sys-util). It boots an ELF `vmlinux` through its PVH entry with an initramfs that holds the
//! guest agent, a read-only virtio-blk disk with the image's EROFS root, a writable virtio-blk disk
//! with the container's upper layer, and the agent channel.
//!
//! This crate never depends on the runtime or on the agent.

pub mod arch;
pub mod boot;
pub mod bus;
pub mod config;
pub mod devices;
pub mod exit;
pub mod kvm;
pub mod layout;
pub mod memory;
pub mod thread;

#[cfg(test)]
mod tiny_guests;

pub use config::{DiskConfig, SerialOutput, VmConfig};
pub use exit::VmExit;
