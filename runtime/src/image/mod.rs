//! OCI images: references, digests, the on-disk store and the operations on it (import, load,
//! save, tag, remove, prune).

pub mod archive;
pub mod builtin;
pub mod config;
pub mod digest;
pub mod gc;
pub mod import;
pub mod layer;
pub mod layer_streams;
pub mod platform;
pub mod reference;
pub mod rootfs_cache;
pub mod store;

pub use digest::Digest;
pub use reference::Reference;
pub use store::{Image, Store, StoreError};
