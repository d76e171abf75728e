//! Image layers turned into a container's root filesystem. The OCI layer rules (whiteouts,
//! opaque directories, replacements) live here, with their outputs: the EROFS image the VM
//! column boots ([`erofs`], cached per image by [`cache`]), the directory tree the namespace
//! column overlays ([`unpack`]), and the flattened tar view the VM column's `diff` and
//! `export` read ([`flatten`]). [`changes`] goes the other way: a writable layer back to an
//! OCI layer.

pub mod cache;
pub mod changes;
pub mod erofs;
pub mod flatten;
pub mod rules;
pub mod unpack;
