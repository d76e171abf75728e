//! The EROFS writer: on-disk structures ([`format`]), the streaming output ([`output`]) and the
//! final metadata layout ([`image`]).
//!
//! Image layout, in block order:
//! 1. block 0: the superblock at byte 1024;
//! 2. file data, streamed while the layers are read: each regular file's whole blocks, and its
//!    last partial block too when that cannot be packed after its inode;
//! 3. directory and long-symlink blocks, written once every layer is applied;
//! 4. the metadata area: inodes (root first, so its nid fits the superblock's 16 bits), each
//!    followed by its inline xattrs and its packed tail.

pub mod format;
pub mod image;
pub mod output;
