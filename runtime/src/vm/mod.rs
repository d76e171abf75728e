//! The microVM column's host-side pieces that do not belong to the VMM itself: the guest kernel
//! it boots and the initramfs holding the agent.

pub mod initramfs;
pub mod kernel;
