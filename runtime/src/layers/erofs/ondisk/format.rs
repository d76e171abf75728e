//! EROFS on-disk structures, encoded by hand from the kernel's `fs/erofs/erofs_fs.h`.
//!
//! Only what an uncompressed image needs: the superblock, compact (32-byte) and extended
//! (64-byte) inodes with the flat plain/inline data layouts, inline xattrs and directory blocks.
//! All integers are little-endian.

/// Block size; the only one every kernel with EROFS supports on 4 KiB-page machines.
pub const BLOCK: u64 = 4096;
pub const BLOCK_BITS: u8 = 12;
/// Byte offset of the superblock in block 0.
pub const SUPER_OFFSET: u64 = 1024;
pub const MAGIC: u32 = 0xE0F5_E1E2;

pub const COMPACT_INODE_SIZE: usize = 32;
pub const EXTENDED_INODE_SIZE: usize = 64;
/// Inodes are addressed by `nid = byte offset in the metadata area / 32`.
pub const INODE_SLOT: u64 = 32;

pub const DIRENT_SIZE: usize = 12;
pub const XATTR_IBODY_HEADER_SIZE: usize = 12;
pub const XATTR_ENTRY_HEADER_SIZE: usize = 4;
/// `e_value_size` is 16 bits.
pub const XATTR_VALUE_MAX: usize = u16::MAX as usize;

/// `i_format` data layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataLayout {
    /// Data in whole blocks from `raw_blkaddr` on.
    FlatPlain = 0,
    /// Whole blocks from `raw_blkaddr`, the last partial block right after the inode and xattrs.
    FlatInline = 2,
}

/// Directory entry file types (the generic `FT_*` values).
pub mod file_type {
    pub const REG: u8 = 1;
    pub const DIR: u8 = 2;
    pub const CHR: u8 = 3;
    pub const BLK: u8 = 4;
    pub const FIFO: u8 = 5;
    pub const LNK: u8 = 7;
}

/// Xattr name prefix indexes, each stripping the prefix from the stored name.
pub const XATTR_PREFIXES: &[(u8, &[u8])] = &[
    (1, b"user."),
    (2, b"system.posix_acl_access"),
    (3, b"system.posix_acl_default"),
    (4, b"trusted."),
    (6, b"security."),
];

/// Splits an xattr name into its EROFS prefix index and the rest.
pub fn split_xattr_name(name: &[u8]) -> Option<(u8, &[u8])> {
    XATTR_PREFIXES.iter().find_map(|(index, prefix)| {
        let rest = name.strip_prefix(*prefix)?;
        // The ACL names are whole names, not prefixes.
        if (*index == 2 || *index == 3) && !rest.is_empty() {
            return None;
        }
        Some((*index, rest))
    })
}

/// The kernel's `new_encode_dev`, what `i_u.rdev` holds.
pub fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

pub struct SuperBlock {
    pub root_nid: u16,
    pub inos: u64,
    pub build_time: u64,
    pub build_time_nsec: u32,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    pub uuid: [u8; 16],
}

impl SuperBlock {
    pub fn encode(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        // checksum (4..8) and feature_compat (8..12) stay 0: no checksum, no optional features.
        b[12] = BLOCK_BITS;
        // sb_extslots (13) = 0.
        b[14..16].copy_from_slice(&self.root_nid.to_le_bytes());
        b[16..24].copy_from_slice(&self.inos.to_le_bytes());
        b[24..32].copy_from_slice(&self.build_time.to_le_bytes());
        b[32..36].copy_from_slice(&self.build_time_nsec.to_le_bytes());
        b[36..40].copy_from_slice(&self.blocks.to_le_bytes());
        b[40..44].copy_from_slice(&self.meta_blkaddr.to_le_bytes());
        // xattr_blkaddr (44..48) = 0: no shared xattrs.
        b[48..64].copy_from_slice(&self.uuid);
        // volume_name (64..80), feature_incompat (80..84) and the rest stay 0.
        b
    }
}

/// The fields of an on-disk inode, before choosing its compact or extended form.
pub struct InodeFields {
    pub layout: DataLayout,
    pub xattr_icount: u16,
    pub mode: u16,
    pub nlink: u32,
    pub size: u64,
    /// `raw_blkaddr` or `rdev`, by file type.
    pub u: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
}

impl InodeFields {
    /// Whether the 32-byte form can hold these fields. Compact inodes carry no time of their
    /// own: readers use the superblock's build time.
    pub fn fits_compact(&self, build_time: i64, build_nsec: u32) -> bool {
        self.uid <= u16::MAX as u32
            && self.gid <= u16::MAX as u32
            && self.nlink <= u16::MAX as u32
            && self.size <= u32::MAX as u64
            && self.mtime == build_time
            && self.mtime_nsec == build_nsec
    }

    pub fn encode_compact(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + COMPACT_INODE_SIZE, 0);
        let b = &mut out[start..];
        b[0..2].copy_from_slice(&((self.layout as u16) << 1).to_le_bytes());
        b[2..4].copy_from_slice(&self.xattr_icount.to_le_bytes());
        b[4..6].copy_from_slice(&self.mode.to_le_bytes());
        b[6..8].copy_from_slice(&(self.nlink as u16).to_le_bytes());
        b[8..12].copy_from_slice(&(self.size as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.u.to_le_bytes());
        b[20..24].copy_from_slice(&self.ino.to_le_bytes());
        b[24..26].copy_from_slice(&(self.uid as u16).to_le_bytes());
        b[26..28].copy_from_slice(&(self.gid as u16).to_le_bytes());
    }

    pub fn encode_extended(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + EXTENDED_INODE_SIZE, 0);
        let b = &mut out[start..];
        b[0..2].copy_from_slice(&(((self.layout as u16) << 1) | 1).to_le_bytes());
        b[2..4].copy_from_slice(&self.xattr_icount.to_le_bytes());
        b[4..6].copy_from_slice(&self.mode.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.u.to_le_bytes());
        b[20..24].copy_from_slice(&self.ino.to_le_bytes());
        b[24..28].copy_from_slice(&self.uid.to_le_bytes());
        b[28..32].copy_from_slice(&self.gid.to_le_bytes());
        b[32..40].copy_from_slice(&self.mtime.to_le_bytes());
        b[40..44].copy_from_slice(&self.mtime_nsec.to_le_bytes());
        b[44..48].copy_from_slice(&self.nlink.to_le_bytes());
    }
}

/// Bytes the inline xattr body of these `(index, suffix, value)` entries takes (0 without any).
pub fn xattr_ibody_size<'a>(xattrs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> usize {
    let mut size = 0;
    let mut any = false;
    for (suffix, value) in xattrs {
        any = true;
        size += (XATTR_ENTRY_HEADER_SIZE + suffix.len() + value.len()).next_multiple_of(4);
    }
    if any {
        size + XATTR_IBODY_HEADER_SIZE
    } else {
        0
    }
}

/// `i_xattr_icount` for an inline xattr body of `size` bytes.
pub fn xattr_icount(size: usize) -> Option<u16> {
    if size == 0 {
        return Some(0);
    }
    u16::try_from((size - XATTR_IBODY_HEADER_SIZE) / 4 + 1).ok()
}

/// Appends an inline xattr body: the header (no shared xattrs, no name filter) then the entries.
pub fn encode_xattrs<'a>(
    out: &mut Vec<u8>,
    xattrs: impl Iterator<Item = (u8, &'a [u8], &'a [u8])>,
) {
    let mut xattrs = xattrs.peekable();
    if xattrs.peek().is_none() {
        return;
    }
    out.extend_from_slice(&[0u8; XATTR_IBODY_HEADER_SIZE]);
    for (index, suffix, value) in xattrs {
        let start = out.len();
        out.push(suffix.len() as u8);
        out.push(index);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(suffix);
        out.extend_from_slice(value);
        let len = out.len() - start;
        out.resize(start + len.next_multiple_of(4), 0);
    }
}

/// Appends one directory block: the dirents, then the names they point to.
pub fn encode_dir_block(out: &mut Vec<u8>, entries: &[(&[u8], u64, u8)]) {
    let start = out.len();
    let mut nameoff = entries.len() * DIRENT_SIZE;
    for (name, nid, ftype) in entries {
        out.extend_from_slice(&nid.to_le_bytes());
        out.extend_from_slice(&(nameoff as u16).to_le_bytes());
        out.push(*ftype);
        out.push(0);
        nameoff += name.len();
    }
    for (name, _, _) in entries {
        out.extend_from_slice(name);
    }
    debug_assert_eq!(out.len() - start, nameoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_encoding_matches_the_kernel() {
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(8, 0x1234), 0x34 | (8 << 8) | (0x1200 << 12));
    }

    #[test]
    fn xattr_sizes_agree_with_the_encoder() {
        let xs: Vec<(u8, &[u8], &[u8])> = vec![(6, b"capability", b"12345"), (1, b"a", b"")];
        let mut out = Vec::new();
        encode_xattrs(&mut out, xs.iter().copied());
        let size = xattr_ibody_size(xs.iter().map(|(_, n, v)| (*n, *v)));
        assert_eq!(out.len(), size);
        assert_eq!(size, 12 + 20 + 8);
        assert_eq!(xattr_icount(size), Some(1 + (size as u16 - 12) / 4));
    }

    #[test]
    fn xattr_names_map_to_prefix_indexes() {
        assert_eq!(
            split_xattr_name(b"security.capability"),
            Some((6, &b"capability"[..]))
        );
        assert_eq!(split_xattr_name(b"user.x"), Some((1, &b"x"[..])));
        assert_eq!(
            split_xattr_name(b"system.posix_acl_access"),
            Some((2, &b""[..]))
        );
        assert_eq!(split_xattr_name(b"system.posix_acl_accessX"), None);
        assert_eq!(split_xattr_name(b"other.x"), None);
    }
}
