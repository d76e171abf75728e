//! The virtio-blk configuration space, as far as the device exposes it: the capacity, and
//! seg_max (offered with VIRTIO_BLK_F_SEG_MAX). size_max stays zero (VIRTIO_BLK_F_SIZE_MAX is
//! not offered); everything after seg_max reads as zero.

use std::mem::offset_of;

use virtio_bindings::bindings::virtio_blk::virtio_blk_config;
use vm_memory::ByteValued;

/// The leading fields of `struct virtio_blk_config`, little-endian as VIRTIO_F_VERSION_1 wants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockConfig {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Largest segment (unused: VIRTIO_BLK_F_SIZE_MAX is not offered).
    pub size_max: u32,
    /// Most segments per request.
    pub seg_max: u32,
}

// SAFETY: BlockConfig is repr(C) with one u64 followed by two u32: no padding (16 bytes,
// checked below), and every bit pattern of those integers is a valid value.
unsafe impl ByteValued for BlockConfig {}

// The layout is the kernel's, field by field.
const _: () = {
    assert!(std::mem::size_of::<BlockConfig>() == 16);
    assert!(offset_of!(BlockConfig, capacity) == offset_of!(virtio_blk_config, capacity));
    assert!(offset_of!(BlockConfig, size_max) == offset_of!(virtio_blk_config, size_max));
    assert!(offset_of!(BlockConfig, seg_max) == offset_of!(virtio_blk_config, seg_max));
};

impl BlockConfig {
    /// The config of a disk of `sectors` sectors taking `seg_max` segments per request.
    pub fn new(sectors: u64, seg_max: u32) -> Self {
        Self {
            capacity: sectors.to_le(),
            size_max: 0,
            seg_max: seg_max.to_le(),
        }
    }
}
