//! virtio-blk against mock queues: valid requests and hostile chains.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::io::{Disk, S_IOERR, S_OK, S_UNSUPP};
use super::request::SEG_MAX;
use super::{QueueBroken, Worker};
use crate::devices::virtio::Interrupt;
use crate::memory::GuestMemory;

const MEM_SIZE: usize = 1 << 20;
const HDR: u64 = 0x1_0000;
const DATA: u64 = 0x2_0000;
const STATUS: u64 = 0x3_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;
const R: u16 = 0;
const SECTORS: u64 = 64;

struct Rig {
    mem: GuestMemory,
    file: tempfile::NamedTempFile,
    next_desc: std::cell::Cell<u16>,
}

impl Rig {
    fn new() -> Self {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let pattern: Vec<u8> = (0..SECTORS * 512).map(|i| (i / 512) as u8).collect();
        file.write_all(&pattern).unwrap();
        Self {
            mem,
            file,
            next_desc: std::cell::Cell::new(0),
        }
    }

    fn worker(&self, vq: &MockSplitQueue<'_, GuestMemory>, read_only: bool) -> Worker {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.file.path())
            .unwrap();
        let len = f.metadata().unwrap().len();
        self.worker_on(vq, Disk::from_file(f, len, read_only, "nook-test-disk"))
    }

    fn worker_on(&self, vq: &MockSplitQueue<'_, GuestMemory>, disk: Disk) -> Worker {
        Worker {
            queue: vq.create_queue::<Queue>().unwrap(),
            mem: self.mem.clone(),
            disk,
            interrupt: Arc::new(Interrupt::new(EventFd::new(0).unwrap())),
        }
    }

    fn header(&self, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
    }

    /// Puts one chain of (addr, len, flags) on the avail ring, NEXT links added.
    fn submit(&self, vq: &MockSplitQueue<'_, GuestMemory>, descs: &[(u64, u32, u16)]) {
        let start = self.next_desc.get();
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, flags))| {
                let last = i == descs.len() - 1;
                let flags = if last {
                    flags
                } else {
                    flags | VRING_DESC_F_NEXT as u16
                };
                RawDescriptor::from(Descriptor::new(addr, len, flags, start + i as u16 + 1))
            })
            .collect();
        vq.add_desc_chains(&raw, start).unwrap();
        self.next_desc.set(start + descs.len() as u16);
    }

    fn status(&self) -> u8 {
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }
}

fn used(vq: &MockSplitQueue<'_, GuestMemory>, i: u16) -> (u32, u32) {
    let e = vq.used().ring().ref_at(i as usize).unwrap().load();
    (e.id(), e.len())
}

#[test]
fn read_write_flush_get_id() {
    let rig = Rig::new();
    let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 16);
    let mut w = rig.worker(&vq, false);

    rig.header(0, 3);
    rig.submit(
        &vq,
        &[
            (HDR, 16, R),
            (DATA, 512, W),
            (DATA + 512, 512, W),
            (STATUS, 1, W),
        ],
    );
    assert_eq!(w.process_queue(), Ok(true));
    assert_eq!(rig.status(), S_OK);
    assert_eq!(used(&vq, 0), (0, 1025));
    let mut buf = [0u8; 1024];
    rig.mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap();
    assert!(buf[..512].iter().all(|b| *b == 3) && buf[512..].iter().all(|b| *b == 4));

    rig.mem
        .write_slice(&[0x77; 512], GuestAddress(DATA))
        .unwrap();
    rig.header(1, 10);
    rig.submit(&vq, &[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(w.process_queue(), Ok(true));
    assert_eq!(rig.status(), S_OK);
    let mut sector = [0u8; 512];
    let mut f = rig.file.reopen().unwrap();
    f.seek(SeekFrom::Start(10 * 512)).unwrap();
    f.read_exact(&mut sector).unwrap();
    assert_eq!(sector, [0x77; 512]);

    rig.header(4, 0);
    rig.submit(&vq, &[(HDR, 16, R), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_OK);

    rig.header(8, 0);
    rig.submit(&vq, &[(HDR, 16, R), (DATA, 20, W), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_OK);
    let mut id = [0u8; 20];
    rig.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..14], b"nook-test-disk");
    assert_eq!(used(&vq, 3).1, 21);

    rig.header(99, 0);
    rig.submit(&vq, &[(HDR, 16, R), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_UNSUPP);
}

#[test]
fn read_only_disk_refuses_writes() {
    let rig = Rig::new();
    let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 16);
    let mut w = rig.worker(&vq, true);
    rig.mem
        .write_slice(&[0x55; 512], GuestAddress(DATA))
        .unwrap();
    rig.header(1, 0);
    rig.submit(&vq, &[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_IOERR);
    let mut first = [0u8; 512];
    rig.file.reopen().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(first, [0; 512]);
    // The driver's mistake, not a host failure: nothing counted.
    assert_eq!(w.disk.metrics().io_errors(), 0);
}

/// A read from an image that shrank under the device fails that request alone.
#[test]
fn read_from_a_truncated_image_is_an_io_error() {
    let rig = Rig::new();
    let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 16);
    let mut w = rig.worker(&vq, false);
    rig.file.as_file().set_len(2 * 512).unwrap();

    rig.header(0, 1);
    rig.submit(&vq, &[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_OK);
    assert_eq!(w.disk.metrics().io_errors(), 0);

    rig.header(0, 3);
    rig.submit(&vq, &[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_IOERR);
    assert_eq!(used(&vq, 1).1, 1);
    assert_eq!(w.disk.metrics().io_errors(), 1);
}

/// A writable disk whose image the host opened read-only: the write fails with EBADF.
#[test]
fn write_to_an_image_opened_read_only_is_an_io_error() {
    let rig = Rig::new();
    let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 16);
    let f = std::fs::File::open(rig.file.path()).unwrap();
    let mut w = rig.worker_on(&vq, Disk::from_file(f, SECTORS * 512, false, "ro-image"));
    rig.mem
        .write_slice(&[0x55; 512], GuestAddress(DATA))
        .unwrap();
    for i in 0..3u16 {
        rig.header(1, 2);
        rig.submit(&vq, &[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
        w.process_queue().unwrap();
        assert_eq!(rig.status(), S_IOERR);
        assert_eq!(used(&vq, i).1, 1);
        assert_eq!(w.disk.metrics().io_errors(), u64::from(i) + 1);
    }
    let mut sector = [0u8; 512];
    let mut f = rig.file.reopen().unwrap();
    f.seek(SeekFrom::Start(2 * 512)).unwrap();
    f.read_exact(&mut sector).unwrap();
    assert_eq!(sector, [2; 512]);
}

/// /dev/full: reads succeed (zeros), writes fail with ENOSPC, flushes with EINVAL.
#[test]
fn writes_and_flushes_to_a_full_device_are_io_errors() {
    let rig = Rig::new();
    let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 16);
    let full = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/full")
        .unwrap();
    let disk = Disk::from_file(full, SECTORS * 512, false, "full");
    let metrics = disk.metrics();
    let mut w = rig.worker_on(&vq, disk);

    rig.header(0, 0);
    rig.submit(&vq, &[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_OK);
    assert_eq!(metrics.io_errors(), 0);

    rig.header(1, 0);
    rig.submit(&vq, &[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_IOERR);
    assert_eq!(metrics.io_errors(), 1);

    rig.header(4, 0);
    rig.submit(&vq, &[(HDR, 16, R), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_IOERR);
    assert_eq!(metrics.io_errors(), 2);

    // The device keeps serving what still works.
    rig.header(8, 0);
    rig.submit(&vq, &[(HDR, 16, R), (DATA, 20, W), (STATUS, 1, W)]);
    w.process_queue().unwrap();
    assert_eq!(rig.status(), S_OK);
    assert_eq!(metrics.io_errors(), 2);
}

/// Each hostile chain fails with IOERR in its status byte (or no status at all) and the device
/// keeps serving the next, valid request.
#[test]
fn hostile_chains_fail_alone() {
    let beyond = MEM_SIZE as u64 + 0x1000;
    type Case = (&'static str, u32, u64, Vec<(u64, u32, u16)>, Option<u8>);
    let cases: Vec<Case> = vec![
        (
            "data outside memory",
            0,
            0,
            vec![(HDR, 16, R), (beyond, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "data straddling the end",
            0,
            0,
            vec![
                (HDR, 16, R),
                (MEM_SIZE as u64 - 256, 512, W),
                (STATUS, 1, W),
            ],
            Some(S_IOERR),
        ),
        (
            "huge length",
            0,
            0,
            vec![(HDR, 16, R), (DATA, 0xffff_0000, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "address wrapping",
            0,
            0,
            vec![(HDR, 16, R), (u64::MAX - 10, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "zero-length header",
            0,
            0,
            vec![(HDR, 0, R), (DATA, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "truncated header",
            0,
            0,
            vec![(HDR, 15, R), (DATA, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "header straddling the end of memory",
            0,
            0,
            vec![(MEM_SIZE as u64 - 8, 16, R), (DATA, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "header outside memory",
            0,
            0,
            vec![(beyond, 16, R), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "write-only header",
            0,
            0,
            vec![(HDR, 16, W), (DATA, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "read into readable buffer",
            0,
            0,
            vec![(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "write from writable buffer",
            1,
            0,
            vec![(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "partial sector",
            0,
            0,
            vec![(HDR, 16, R), (DATA, 100, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "past the end of the disk",
            0,
            SECTORS,
            vec![(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "sector overflow",
            0,
            u64::MAX,
            vec![(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "readable status",
            0,
            0,
            vec![(HDR, 16, R), (DATA, 512, W), (STATUS, 1, R)],
            None,
        ),
        (
            "zero-length status",
            0,
            0,
            vec![(HDR, 16, R), (DATA, 512, W), (STATUS, 0, W)],
            None,
        ),
        ("header only", 0, 0, vec![(HDR, 16, R)], None),
        (
            "GET_ID without buffer",
            8,
            0,
            vec![(HDR, 16, R), (STATUS, 1, W)],
            Some(S_IOERR),
        ),
        (
            "too much data",
            0,
            0,
            (0..10)
                .map(|_| (DATA, 512 << 10, W))
                .chain([(STATUS, 1, W)])
                .collect::<Vec<_>>()
                .into_iter()
                .fold(vec![(HDR, 16, R)], |mut v, d| {
                    v.push(d);
                    v
                }),
            Some(S_IOERR),
        ),
    ];
    for (what, kind, sector, chain, expect) in cases {
        let rig = Rig::new();
        let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 16);
        let mut w = rig.worker(&vq, false);
        rig.header(kind, sector);
        rig.submit(&vq, &chain);
        assert_eq!(w.process_queue(), Ok(true), "{what}");
        match expect {
            Some(status) => {
                assert_eq!(rig.status(), status, "{what}");
                assert_eq!(used(&vq, 0).1, 1, "{what}");
            }
            None => {
                assert_eq!(rig.status(), 0xee, "{what}: status must stay untouched");
                assert_eq!(used(&vq, 0).1, 0, "{what}");
            }
        }
        // The device still serves a valid request afterwards.
        rig.header(0, 1);
        rig.submit(&vq, &[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
        assert_eq!(w.process_queue(), Ok(true), "{what}: follow-up");
        assert_eq!(rig.status(), S_OK, "{what}: follow-up");
    }
}

#[test]
fn descriptor_loop_and_overlong_chains_end() {
    let rig = Rig::new();
    let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 256);
    let mut w = rig.worker(&vq, false);
    rig.header(0, 0);
    // 0 -> 1 -> 0 -> ...: a loop.
    let looped = [
        RawDescriptor::from(Descriptor::new(HDR, 16, VRING_DESC_F_NEXT as u16, 1)),
        RawDescriptor::from(Descriptor::new(
            DATA,
            512,
            (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) as u16,
            0,
        )),
    ];
    vq.add_desc_chains(&looped, 0).unwrap();
    assert_eq!(w.process_queue(), Ok(true));
    assert_eq!(used(&vq, 0), (0, 0));

    // One descriptor more than SEG_MAX + 2.
    let n = SEG_MAX as u16 + 3;
    let long: Vec<RawDescriptor> = (0..n)
        .map(|i| {
            let (addr, len, flags) = match i {
                0 => (HDR, 16, 0),
                i if i == n - 1 => (STATUS, 1, VRING_DESC_F_WRITE as u16),
                _ => (DATA, 512, VRING_DESC_F_WRITE as u16),
            };
            let flags = if i == n - 1 {
                flags
            } else {
                flags | VRING_DESC_F_NEXT as u16
            };
            RawDescriptor::from(Descriptor::new(addr, len, flags, 2 + i + 1))
        })
        .collect();
    vq.add_desc_chains(&long, 2).unwrap();
    assert_eq!(w.process_queue(), Ok(true));
    assert_eq!(used(&vq, 1), (2, 0));
    assert_eq!(rig.status(), 0xee);
}

#[test]
fn next_index_out_of_the_table_ends_the_chain() {
    let rig = Rig::new();
    let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 16);
    let mut w = rig.worker(&vq, false);
    rig.header(0, 0);
    let chain = [RawDescriptor::from(Descriptor::new(
        HDR,
        16,
        VRING_DESC_F_NEXT as u16,
        999,
    ))];
    vq.add_desc_chains(&chain, 0).unwrap();
    assert_eq!(w.process_queue(), Ok(true));
    assert_eq!(used(&vq, 0), (0, 0));
}

#[test]
fn garbage_avail_index_breaks_the_device_not_the_vmm() {
    let rig = Rig::new();
    let vq = MockSplitQueue::create(&rig.mem, GuestAddress(0), 16);
    let mut w = rig.worker(&vq, false);
    vq.avail().idx().store(u16::to_le(1000));
    assert_eq!(w.process_queue(), Err(QueueBroken));
}

#[test]
fn ring_addresses_outside_memory_are_not_valid() {
    let rig = Rig::new();
    let mut q = Queue::new(16).unwrap();
    q.set_size(16);
    q.set_ready(true);
    q.set_desc_table_address(Some(MEM_SIZE as u32), Some(0));
    assert!(!q.is_valid(&rig.mem));
}
