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
fn console_config_reads_as_zeros() {
    let (mut t, _host) = console();
    check_every_read(&mut t, &[0; 12]);
    check_writes_ignored(&mut t, &[0; 12]);
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
