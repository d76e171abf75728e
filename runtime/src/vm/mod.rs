//! What a microVM container boots: the guest kernel (and, with the agent, its initramfs).

pub mod kernel;
