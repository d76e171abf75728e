//! The virtio-net configuration space the device exposes: the MAC address, the link status,
//! one queue pair and the MTU. The fields after `mtu` (speed, duplex, RSS) belong to features
//! that are not offered and read as zero.

use std::mem::offset_of;

use virtio_bindings::bindings::virtio_net::{virtio_net_config, VIRTIO_NET_S_LINK_UP};
use vm_memory::ByteValued;

/// The leading fields of `struct virtio_net_config`, little-endian as VIRTIO_F_VERSION_1 wants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetConfigSpace {
    /// The guest's MAC address (VIRTIO_NET_F_MAC).
    pub mac: [u8; 6],
    /// VIRTIO_NET_S_LINK_UP while the link is up (VIRTIO_NET_F_STATUS).
    pub status: u16,
    /// Queue pairs (only meaningful with VIRTIO_NET_F_MQ, which is not offered): one.
    pub max_virtqueue_pairs: u16,
    /// The MTU the driver should use (VIRTIO_NET_F_MTU).
    pub mtu: u16,
}

// SAFETY: NetConfigSpace is repr(C) with six bytes then three u16 at even offsets: no padding
// (12 bytes, checked below), and every bit pattern of those integers is a valid value.
unsafe impl ByteValued for NetConfigSpace {}

// The layout is the kernel's, field by field.
const _: () = {
    assert!(std::mem::size_of::<NetConfigSpace>() == 12);
    assert!(offset_of!(NetConfigSpace, mac) == offset_of!(virtio_net_config, mac));
    assert!(offset_of!(NetConfigSpace, status) == offset_of!(virtio_net_config, status));
    assert!(
        offset_of!(NetConfigSpace, max_virtqueue_pairs)
            == offset_of!(virtio_net_config, max_virtqueue_pairs)
    );
    assert!(offset_of!(NetConfigSpace, mtu) == offset_of!(virtio_net_config, mtu));
};

/// The link-up status value.
pub const LINK_UP: u16 = VIRTIO_NET_S_LINK_UP as u16;

impl NetConfigSpace {
    /// The config of an interface with address `mac` and MTU `mtu`, link up.
    pub fn new(mac: [u8; 6], mtu: u16) -> Self {
        Self {
            mac,
            status: LINK_UP.to_le(),
            max_virtqueue_pairs: 1u16.to_le(),
            mtu: mtu.to_le(),
        }
    }
}
