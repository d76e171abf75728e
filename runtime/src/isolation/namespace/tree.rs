//! The image's flattened directory tree for the namespace backend: `rootfs/<chain-id>.<map>.tree`,
//! unpacked once inside a user namespace and shared read-only (as overlayfs lower layer) by every
//! container of the image. Built in `tmp/`, renamed into place under a per-tree lock.

use std::path::{Path, PathBuf};

use super::Ids;
use crate::image::digest::chain_id;
use crate::isolation::{ImageSource, IsolationError};
use crate::util::lock::{FileLock, LockMode};

/// Where the tree of the image with chain id `chain_hex` lives for the id mapping of `ids`.
pub fn tree_path(root: &Path, chain_hex: &str, ids: &Ids) -> PathBuf {
    root.join("rootfs")
        .join(format!("{chain_hex}.{}.tree", ids.map.key()))
}

/// The tree of `image`, unpacked first when it is not there yet.
pub fn ensure_tree(
    root: &Path,
    ids: &Ids,
    image: &ImageSource<'_>,
) -> Result<PathBuf, IsolationError> {
    let chain_hex = match chain_id(&image.image.diff_ids()?) {
        Some(c) => c.hex().to_string(),
        // An image without layers: an empty tree.
        None => "empty".to_string(),
    };
    let dst = tree_path(root, &chain_hex, ids);
    if dst.is_dir() {
        return Ok(dst);
    }
    let io = |what: &'static str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |source| IsolationError::os(what, source)
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
    ids.remove_all(&tmp)?;
    let layers = image.layers()?;
    if let Err(e) = ids.unpack(layers, &tmp) {
        let _ = ids.remove_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &dst).map_err(io("move into place", &dst))?;
    crate::util::atomic::sync_parent(&dst)?;
    Ok(dst)
}
