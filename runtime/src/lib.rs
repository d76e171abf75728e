//! nook: a rootless container runtime with two isolation columns behind one docker-style CLI,
//! Linux namespaces (`--isolation=container`) and one KVM microVM per container
//! (`--isolation=vm`).
//!
//! The library holds everything the `nook` binary does, so that whole-program behaviour is also
//! reachable from tests and fuzz targets.

pub mod bench;
pub mod config;
pub mod container;
pub mod errors;
pub mod host_tools;
pub mod image;
pub mod isolation;
pub mod layers;
pub mod oci;
pub mod paths;
pub mod registry;
pub mod sealed_exe;
pub mod terminal;
pub mod util;
pub mod volume;
