//! The microVM backend (`--isolation=vm`): one `nook-vmm` process per container boots the guest
//! kernel with the agent's initramfs, the image's EROFS disk (vda, read-only) and the
//! container's writable ext4 disk (vdb; absent means a tmpfs upper). nook listens on the agent
//! socket, the VMM connects to it, and the agent (the guest's PID 1) runs the container's
//! process, whose stdio and exit status come back over that channel.
//!
//! - [`settings`]: the VM's size from docker's flags; [`machine`]: what the record keeps;
//! - [`assets`], [`kernel`], [`initramfs`], [`disk`]: what a boot needs on the host;
//! - [`boot`]: the VMM process until the agent is ready; [`sockets`]: where its sockets go;
//! - [`shares`]: the container's mounts as virtio-fs shares and the agent's mount list;
//!   [`virtiofsd`]: one backend process per shared directory;
//! - [`backend`]: the [`crate::isolation::Backend`] of a VM container; [`workload`]: the
//!   processes it hands back; [`mux`] and [`control`]: the agent channel, shared by the
//!   monitor with `exec`, `kill` and `commit` through the control socket; [`layer`]: `diff`,
//!   `export` and the image's files (`--group-add` names) on the host; [`phases`]: boot
//!   timings for the bench; [`template`]: the snapshots of a booted guest that VMs start from
//!   (warm starts); [`cp`]: `nook cp`, through
//!   the agent of the running VM or of a copy-only boot; [`checkpoint`]: a VM container's
//!   checkpoints, kept and resumed.

pub mod assets;
mod backend;
mod boot;
pub mod checkpoint;
pub mod control;
mod cp;
pub mod disk;
mod error;
pub mod initramfs;
pub mod kernel;
mod layer;
pub mod machine;
pub mod mux;
pub mod phases;
pub mod security;
pub mod settings;
pub mod shares;
mod sockets;
pub mod template;
pub mod virtiofsd;
mod workload;

pub use backend::{Backend, BootedVm};
pub use cp::copy;
pub use error::VmError;
pub use layer::image_file;
pub use machine::{Disks, Machine};
pub use settings::{BootMode, VmSettings, DEFAULT_MEMORY_MIB};
pub use sockets::control_path;
