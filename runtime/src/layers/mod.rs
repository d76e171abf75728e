//! Image layers turned into a container's root filesystem.
//!
//! [`rules`] owns the OCI layer rules, and nothing else spells them out: what a tar entry means
//! from its path (an entry, a `.wh.` whiteout, a `.wh..wh..opq` opaque marker, aufs bookkeeping
//! to skip, or a name no layer may hold), how entry paths are normalized, and the order in
//! which a layer changes the ones below it (tar order; whiteouts delete, opaque markers hide
//! the lower contents of a directory, an entry replaces what is at its path unless both are
//! directories, which merge). The whiteout names are the agent crate's
//! ([`nook_agent::layer::whiteout`]), whose layer writer produces them.
//!
//! The rules drive three outputs, each an [`rules::Output`]:
//! - [`erofs`]: the EROFS image the VM column boots (cached per image by
//!   [`crate::image::rootfs_cache`]);
//! - [`unpack`]: the directory tree the namespace column overlays;
//! - [`flatten`]: the flattened tar view the VM column's `diff` and `export` read.
//!
//! [`changes`] goes the other way: a writable layer back to an OCI layer, through the agent's
//! layer writer.

pub mod changes;
pub mod erofs;
pub mod flatten;
pub mod rules;
pub mod unpack;

use std::io::Read;

/// One layer as every output reads it: its name for errors (e.g. "sha256:abcd...") and its
/// decompressed tar stream, read once, front to back.
pub struct Layer<'a> {
    pub name: String,
    pub tar: Box<dyn Read + 'a>,
}
