//! The transport's config window: every offset and length a driver can use, and garbage.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::{MmioTransport, CONFIG_OFFSET};
use crate::bus::BusDevice;
use crate::devices::virtio::block::io::Disk;
use crate::devices::virtio::block::request::SEG_MAX;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::console::Console;
use crate::devices::virtio::net::{Net, FEATURES as NET_FEATURES};
use crate::devices::virtio::{Interrupt, VirtioDevice};
use crate::exit::ExitSignal;
use crate::layout::VIRTIO_MMIO_SIZE;
use crate::memory::GuestMemory;

const SECTORS: u64 = 0x0102_0304;

fn transport(device: Box<dyn VirtioDevice>) -> MmioTransport {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    MmioTransport::new(
        device,
        mem,
        Arc::new(Interrupt::new(EventFd::new(0).unwrap())),
        Arc::new(ExitSignal::new().unwrap()),
        None,
    )
    .unwrap()
}

/// A block device over a sparse file of SECTORS sectors plus a partial one, not exposed.
fn block() -> (MmioTransport, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(SECTORS * 512).unwrap();
    file.seek(SeekFrom::End(0)).unwrap();
    file.write_all(b"tail").unwrap();
    let f = file.reopen().unwrap();
    let len = f.metadata().unwrap().len();
    let disk = Disk::from_file(f, len, false, "cfg");
    (transport(Box::new(Block::new("vda".into(), disk))), file)
}

fn console() -> (MmioTransport, UnixStream) {
    let (vmm_side, host_side) = UnixStream::pair().unwrap();
    let console = Console::new("console".into(), vmm_side).unwrap();
    (transport(Box::new(console)), host_side)
}

/// What the config window must read as: `config` and then zeros, whatever the offset.
fn check_every_read(t: &mut MmioTransport, config: &[u8]) {
    let window = VIRTIO_MMIO_SIZE - CONFIG_OFFSET;
    for offset in 0..window + 16 {
        for len in [1usize, 2, 3, 4, 8, 64] {
            let mut data = vec![0xaa; len];
            t.read(CONFIG_OFFSET + offset, &mut data);
            let expected: Vec<u8> = (0..len as u64)
                .map(|i| {
                    usize::try_from(offset + i)
                        .ok()
                        .and_then(|at| config.get(at))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            assert_eq!(data, expected, "offset {offset:#x}, length {len}");
        }
    }
    for offset in [u64::MAX, u64::MAX - 3, CONFIG_OFFSET + (1 << 40)] {
        let mut data = [0xaa; 8];
        t.read(offset, &mut data);
        assert_eq!(data, [0; 8], "offset {offset:#x}");
    }
    let mut empty = [];
    t.read(CONFIG_OFFSET, &mut empty);
}

/// Garbage written anywhere in (and past) the window changes nothing a driver can read.
fn check_writes_ignored(t: &mut MmioTransport, config: &[u8]) {
    let window = VIRTIO_MMIO_SIZE - CONFIG_OFFSET;
    for offset in (0..window + 16).chain([u64::MAX - CONFIG_OFFSET, 1 << 40]) {
        for len in [1usize, 2, 4, 8, 300] {
            t.write(CONFIG_OFFSET + offset, &vec![0x5a; len]);
        }
    }
    t.write(u64::MAX, &[0xff; 8]);
    let mut data = vec![0xaa; config.len()];
    t.read(CONFIG_OFFSET, &mut data);
    assert_eq!(data, config);
}

#[test]
fn block_config_reads_at_every_offset() {
    let (mut t, _file) = block();
    // capacity (le64), size_max (le32, unused), seg_max (le32); written out by hand.
    let mut config = SECTORS.to_le_bytes().to_vec();
    config.extend_from_slice(&0u32.to_le_bytes());
    config.extend_from_slice(&SEG_MAX.to_le_bytes());
    check_every_read(&mut t, &config);
    check_writes_ignored(&mut t, &config);
}

#[test]
fn console_config_reads_at_every_offset() {
    let (mut t, _host) = console();
    // cols, rows (le16, unused), max_nr_ports (le32: one port), emerg_wr (le32, unused).
    let config = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    check_every_read(&mut t, &config);
    check_writes_ignored(&mut t, &config);
}

fn net() -> (MmioTransport, UnixStream) {
    let (vmm_side, host_side) = UnixStream::pair().unwrap();
    let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    let net = Net::new("net0".into(), vmm_side, mac, 65520).unwrap();
    (transport(Box::new(net)), host_side)
}

#[test]
fn net_config_reads_at_every_offset() {
    let (mut t, _host) = net();
    // mac, status (LINK_UP, le16), max_virtqueue_pairs (le16), mtu (le16); by hand.
    let mut config = vec![0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    config.extend_from_slice(&1u16.to_le_bytes());
    config.extend_from_slice(&1u16.to_le_bytes());
    config.extend_from_slice(&65520u16.to_le_bytes());
    check_every_read(&mut t, &config);
    check_writes_ignored(&mut t, &config);
}

fn reg(t: &mut MmioTransport, offset: u32) -> u32 {
    let mut data = [0u8; 4];
    t.read(u64::from(offset), &mut data);
    u32::from_le_bytes(data)
}

fn set(t: &mut MmioTransport, offset: u32, value: u32) {
    t.write(u64::from(offset), &value.to_le_bytes());
}

/// Offers the driver `features` and returns whether FEATURES_OK stuck.
fn negotiate(t: &mut MmioTransport, features: u64) -> bool {
    use virtio_bindings::bindings::virtio_config::*;
    use virtio_bindings::bindings::virtio_mmio::*;
    set(t, VIRTIO_MMIO_STATUS, 0);
    set(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    set(t, VIRTIO_MMIO_STATUS, s);
    for sel in 0..2 {
        set(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
        set(
            t,
            VIRTIO_MMIO_DRIVER_FEATURES,
            (features >> (32 * sel)) as u32,
        );
    }
    set(t, VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
    reg(t, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK != 0
}

#[test]
fn net_offers_exactly_its_features_and_no_offloads() {
    use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
    use virtio_bindings::bindings::virtio_mmio::*;
    use virtio_bindings::bindings::virtio_net::*;
    let (mut t, _host) = net();
    assert_eq!(reg(&mut t, VIRTIO_MMIO_DEVICE_ID), 1);
    let mut offered = 0u64;
    for sel in 0..2 {
        set(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
        offered |= u64::from(reg(&mut t, VIRTIO_MMIO_DEVICE_FEATURES)) << (32 * sel);
    }
    let bit = |b: u32| 1u64 << b;
    let expected = bit(VIRTIO_F_VERSION_1)
        | bit(virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX)
        | bit(VIRTIO_NET_F_MAC)
        | bit(VIRTIO_NET_F_MTU)
        | bit(VIRTIO_NET_F_MRG_RXBUF)
        | bit(VIRTIO_NET_F_STATUS);
    assert_eq!(offered, expected);
    assert_eq!(NET_FEATURES, expected);
    // Offloads are refused, as is a driver without VERSION_1; any subset with it is taken.
    for refused in [
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_MQ,
        VIRTIO_NET_F_CTRL_VQ,
    ] {
        assert!(!negotiate(&mut t, expected | bit(refused)), "bit {refused}");
    }
    assert!(!negotiate(&mut t, expected & !bit(VIRTIO_F_VERSION_1)));
    assert!(negotiate(&mut t, expected));
    assert!(negotiate(
        &mut t,
        bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_NET_F_MAC)
    ));
}

#[test]
fn register_reads_of_odd_sizes_or_offsets_are_zero() {
    let (mut t, _file) = block();
    let mut magic = [0u8; 4];
    t.read(0, &mut magic);
    assert_eq!(&magic, b"virt");
    let mut id = [0u8; 4];
    t.read(8, &mut id);
    assert_eq!(u32::from_le_bytes(id), 2);
    for (offset, len) in [(0, 2), (0, 8), (1, 4), (0xfe, 4), (0x70, 1)] {
        let mut data = vec![0xaa; len];
        t.read(offset, &mut data);
        assert!(
            data.iter().all(|b| *b == 0),
            "offset {offset:#x}, length {len}"
        );
    }
}
