//! The virtio-fs configuration space (virtio 1.2, 5.11.4): the tag the guest mounts, then the
//! number of request queues.

use vm_memory::ByteValued;

/// Size of the tag field; a tag of exactly this length has no NUL terminator.
pub const TAG_LEN: usize = 36;

/// `struct virtio_fs_config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed)]
pub struct FsConfigSpace {
    /// The file system's name, UTF-8, NUL-padded.
    pub tag: [u8; TAG_LEN],
    /// Request queues (little-endian); the hiprio queue comes on top.
    pub num_request_queues: u32,
}

// SAFETY: plain bytes and an integer, no padding (packed), any bit pattern is valid.
unsafe impl ByteValued for FsConfigSpace {}

impl Default for FsConfigSpace {
    fn default() -> Self {
        Self {
            tag: [0; TAG_LEN],
            num_request_queues: 0,
        }
    }
}

/// A tag the guest could not mount by name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid virtio-fs tag {0:?}: 1 to {TAG_LEN} bytes, no NUL, no whitespace, no comma")]
pub struct InvalidTag(pub String);

impl FsConfigSpace {
    /// The config space of a device called `tag` with `request_queues` request queues.
    pub fn new(tag: &str, request_queues: u32) -> Result<Self, InvalidTag> {
        check_tag(tag)?;
        let mut space = Self {
            num_request_queues: request_queues.to_le(),
            ..Self::default()
        };
        space.tag[..tag.len()].copy_from_slice(tag.as_bytes());
        Ok(space)
    }
}

/// Checks that `tag` fits the config space and is usable as a mount source in the guest (the
/// kernel compares it byte for byte; mount(8) splits options at commas and whitespace).
pub fn check_tag(tag: &str) -> Result<(), InvalidTag> {
    let bad = tag.is_empty()
        || tag.len() > TAG_LEN
        || tag
            .bytes()
            .any(|b| b == 0 || b == b',' || b.is_ascii_whitespace() || b.is_ascii_control());
    if bad {
        return Err(InvalidTag(tag.to_string()));
    }
    Ok(())
}
