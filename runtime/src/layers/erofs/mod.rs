//! Flattening an image's layers into one EROFS filesystem image, rootless and in one pass.
//!
//! Each layer's decompressed tar stream is read once, front to back. File contents go straight
//! into the output as they are read; only metadata (names, modes, owners, xattrs and the tails of
//! small files) is kept in memory. Once every layer is applied, with OCI whiteouts, the
//! directories, inodes and superblock are written after the data. Nothing is extracted to the
//! host filesystem and nothing needs root or an external mkfs.
//!
//! Data of files a later layer whites out or overwrites has already been written when that is
//! known: it stays in the image as unreferenced blocks (reported in [`BuildStats`]), never
//! reachable from any inode.

mod apply;
mod error;
mod ondisk;
mod tree;

use std::fs::File;

pub use error::RootfsError;

use ondisk::output::Output;
use tree::Tree;

pub use super::Layer;

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStats {
    /// Inodes in the image (hard links count once).
    pub inodes: u64,
    /// Size of the image in bytes.
    pub bytes: u64,
    /// Bytes of file data written for files a later layer removed or replaced.
    pub unreferenced_bytes: u64,
}

/// Caps the memory spent on small-file tails waiting to be packed after their inodes; past it,
/// tails are written as whole blocks instead (a bigger image, never a failure).
const INLINE_TAIL_BUDGET: usize = 48 << 20;

/// Reads one layer's tar stream as [`build_erofs`] does, writing nothing: an entry the build
/// would refuse (a `..` path, a whiteout that names no file, a hard link to a missing file, an
/// over-long path, ...) is refused here, named. `nook import` checks a tarball with it, so a bad
/// one is refused at once rather than when a container first unpacks it.
pub fn check_layer(layer: Layer<'_>) -> Result<(), RootfsError> {
    let mut tree = Tree::new();
    let mut output = Output::discard();
    // No tails are kept for packing: nothing is written anyway.
    let mut budget = 0;
    apply::apply(layer, 1, &mut tree, &mut output, &mut budget)
}

/// Applies `layers` in order (OCI whiteouts included) and writes one uncompressed EROFS image
/// into `out`, an empty file opened for reading and writing. Does not sync or rename `out`.
pub fn build_erofs(layers: Vec<Layer<'_>>, out: &File) -> Result<BuildStats, RootfsError> {
    let mut tree = Tree::new();
    let mut output = Output::new(out);
    let mut budget = INLINE_TAIL_BUDGET;
    for (i, layer) in layers.into_iter().enumerate() {
        let index = u32::try_from(i + 1).map_err(|_| RootfsError::ImageTooLarge)?;
        apply::apply(layer, index, &mut tree, &mut output, &mut budget)?;
    }
    let written = ondisk::image::write_image(&tree, &mut output)
        .map_err(|source| RootfsError::WriteMetadata { source })?;
    Ok(BuildStats {
        inodes: written.inodes,
        bytes: written.blocks * ondisk::format::BLOCK,
        unreferenced_bytes: written.unreferenced_bytes,
    })
}
