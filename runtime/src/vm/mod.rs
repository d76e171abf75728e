//! What a microVM container boots, on the host side: the guest kernel and the agent's initramfs.

pub mod initramfs;
pub mod kernel;
