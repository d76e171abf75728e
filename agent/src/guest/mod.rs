//! The guest-only pieces of PID 1: kernel parameters, mounts, the container root, the channel
//! device and the power-off. Kept in the library so their logic is unit-tested on the host (the
//! OS calls go through [`mounts::MountOps`]).

pub mod cmdline;
pub mod console;
pub mod mounts;
pub mod net;
pub mod power;
pub mod rootfs;
pub mod warm;
