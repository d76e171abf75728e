//! The image's flattened directory tree for the namespace backend: `rootfs/<chain-id>.<map>.tree`,
//! unpacked once inside a user namespace and shared read-only (as overlayfs lower layer) by every
//! container of the image. Built in `tmp/`, renamed into place under a per-tree lock.

use std::path::{Path, PathBuf};

use crate::container::store::ContainerError;
use crate::isolation::namespace::NamespaceBackend;
use crate::layers::unpack::LayerStream;
use crate::util::lock::{FileLock, LockMode};

/// Where the tree of the image with chain id `chain_hex` lives for `backend`'s id mapping.
pub fn tree_path(root: &Path, chain_hex: &str, backend: &NamespaceBackend) -> PathBuf {
    root.join("rootfs")
        .join(format!("{chain_hex}.{}.tree", backend.map.key()))
}

/// The tree of an image, unpacking it from `layers` (called only on a cache miss) first.
pub fn ensure_tree<'a>(
    root: &Path,
    chain_hex: &str,
    backend: &NamespaceBackend,
    layers: impl FnOnce() -> Result<Vec<LayerStream<'a>>, ContainerError>,
) -> Result<PathBuf, ContainerError> {
    let dst = tree_path(root, chain_hex, backend);
    if dst.is_dir() {
        return Ok(dst);
    }
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| ContainerError::Io { what, path, source }
    };
    for dir in ["rootfs", "tmp", "locks"] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(io("create", &d))?;
    }
    let lock_path = root.join("locks").join(format!(
        "{}.lock",
        dst.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _guard = FileLock::acquire(&lock_path, LockMode::Exclusive)?;
    if dst.is_dir() {
        return Ok(dst); // another nook built it while we waited
    }
    let tmp = root
        .join("tmp")
        .join(format!("tree-{chain_hex}-{}", std::process::id()));
    backend.remove_all(&tmp)?;
    let layers = layers()?;
    if let Err(e) = backend.unpack(layers, &tmp) {
        let _ = backend.remove_all(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, &dst).map_err(io("move into place", &dst))?;
    crate::util::atomic::sync_parent(&dst)?;
    Ok(dst)
}
