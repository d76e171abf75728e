//! A block device's transport snapshotted after serving a request, restored over another disk
//! in a copy of guest memory: it serves the next request from where the queue was, and tells
//! the driver that its configuration changed. States of another device are refused.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_mmio::*;
use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::{MmioStateError, MmioTransport};
use crate::bus::BusDevice;
use crate::devices::virtio::block::io::Disk;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::console::Console;
use crate::devices::virtio::{Interrupt, VirtioDevice, INT_CONFIG};
use crate::exit::{ExitSignal, StopReason, VmExit};
use crate::memory::GuestMemory;

const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HEADER: u64 = 0x4000;
const DATA: u64 = 0x5000;
const STATUS: u64 = 0x6000;
const SIZE: u16 = 16;

struct Setup {
    transport: MmioTransport,
    mem: GuestMemory,
    exit: Arc<ExitSignal>,
    interrupt: Arc<Interrupt>,
    _file: tempfile::NamedTempFile,
}

/// A transport over a disk of `sectors` sectors filled with `byte`, in `mem`.
fn block(mem: GuestMemory, sectors: u64, byte: u8) -> Setup {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file()
        .write_all_at(&vec![byte; (sectors * 512) as usize], 0)
        .unwrap();
    let f = file.reopen().unwrap();
    let disk = Disk::from_file(f, sectors * 512, false, "state");
    let device: Box<dyn VirtioDevice> = Box::new(Block::new("vda".into(), disk));
    let interrupt = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
    let exit = Arc::new(ExitSignal::new().unwrap());
    let transport =
        MmioTransport::new(device, mem.clone(), interrupt.clone(), exit.clone(), None).unwrap();
    Setup {
        transport,
        mem,
        exit,
        interrupt,
        _file: file,
    }
}

fn write(t: &mut MmioTransport, reg: u32, value: u32) {
    t.write(u64::from(reg), &value.to_le_bytes());
}

fn read(t: &mut MmioTransport, reg: u32) -> u32 {
    let mut data = [0u8; 4];
    t.read(u64::from(reg), &mut data);
    u32::from_le_bytes(data)
}

/// What a driver does to bring the device up with one queue of SIZE entries.
fn bring_up(t: &mut MmioTransport) {
    write(t, VIRTIO_MMIO_STATUS, 1);
    write(t, VIRTIO_MMIO_STATUS, 3);
    write(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    write(t, VIRTIO_MMIO_DRIVER_FEATURES, 1); // VERSION_1 (bit 32)
    write(t, VIRTIO_MMIO_STATUS, 11);
    write(t, VIRTIO_MMIO_QUEUE_SEL, 0);
    write(t, VIRTIO_MMIO_QUEUE_NUM, u32::from(SIZE));
    write(t, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC as u32);
    write(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL as u32);
    write(t, VIRTIO_MMIO_QUEUE_USED_LOW, USED as u32);
    write(t, VIRTIO_MMIO_QUEUE_READY, 1);
    write(t, VIRTIO_MMIO_STATUS, 15);
    assert_eq!(read(t, VIRTIO_MMIO_STATUS), 15, "the device came up");
}

/// Posts the n-th request (reading sector 0) as the driver would, and kicks the queue.
fn post_read(s: &Setup, n: u16) {
    let mem = &s.mem;
    // Three descriptors from 3n: header (readable), data (writable), status (writable).
    let base = 3 * (n % 5);
    let desc = |i: u16, addr: u64, len: u32, flags: u16, next: u16| {
        let at = GuestAddress(DESC + u64::from(i) * 16);
        mem.write_obj(addr, at).unwrap();
        mem.write_obj(len, at.unchecked_add(8)).unwrap();
        mem.write_obj(flags, at.unchecked_add(12)).unwrap();
        mem.write_obj(next, at.unchecked_add(14)).unwrap();
    };
    mem.write_obj(0u32, GuestAddress(HEADER)).unwrap(); // VIRTIO_BLK_T_IN
    mem.write_obj(0u64, GuestAddress(HEADER + 8)).unwrap(); // sector 0
    mem.write_slice(&[0u8; 512], GuestAddress(DATA)).unwrap();
    mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    desc(base, HEADER, 16, 1, base + 1);
    desc(base + 1, DATA, 512, 1 | 2, base + 2);
    desc(base + 2, STATUS, 1, 2, 0);
    let slot = u64::from(n % SIZE);
    mem.write_obj(base, GuestAddress(AVAIL + 4 + 2 * slot))
        .unwrap();
    mem.write_obj(n + 1, GuestAddress(AVAIL + 2)).unwrap();
    s.transport.queue_events()[0].write(1).unwrap();
}

fn used_idx(mem: &GuestMemory) -> u16 {
    mem.read_obj(GuestAddress(USED + 2)).unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_restored_block_device_serves_on_from_where_its_queue_was() {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let mut s = block(mem, 8, 0x11);
    bring_up(&mut s.transport);
    post_read(&s, 0);
    wait_for("the first request", || used_idx(&s.mem) == 1);
    assert_eq!(s.mem.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 0x11);
    s.exit.stop(StopReason::Exit(VmExit::Timeout));
    let state = loop {
        match s.transport.snapshot() {
            Ok(state) => break state,
            Err(MmioStateError::NotParked(_)) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("{e}"),
        }
    };
    assert!(state.activated);
    assert_eq!(
        (state.queues[0].next_avail, state.queues[0].next_used),
        (1, 1)
    );
    // The state survives its encoding.
    let state: super::MmioState =
        serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap();

    // A second VM: a copy of guest memory, another (bigger) disk.
    let copy = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let mut bytes = vec![0u8; 1 << 20];
    s.mem.read_slice(&mut bytes, GuestAddress(0)).unwrap();
    copy.write_slice(&bytes, GuestAddress(0)).unwrap();
    let mut r = block(copy, 16, 0x22);
    r.transport.restore(&state).unwrap();
    assert_eq!(read(&mut r.transport, VIRTIO_MMIO_STATUS), 15);
    assert_eq!(
        read(&mut r.transport, VIRTIO_MMIO_CONFIG_GENERATION),
        state.config_generation.wrapping_add(1)
    );
    assert_ne!(
        r.interrupt.status() & INT_CONFIG,
        0,
        "the driver hears of the new size"
    );
    post_read(&r, 1);
    wait_for("the request after the restore", || used_idx(&r.mem) == 2);
    assert_eq!(r.mem.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 0x22);
    assert_eq!(r.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0);
    r.exit.stop(StopReason::Exit(VmExit::Timeout));
}

#[test]
fn states_of_another_device_or_broken_queues_are_refused() {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let mut s = block(mem.clone(), 8, 0);
    bring_up(&mut s.transport);
    post_read(&s, 0);
    wait_for("the request", || used_idx(&s.mem) == 1);
    s.exit.stop(StopReason::Exit(VmExit::Timeout));
    let state = loop {
        if let Ok(state) = s.transport.snapshot() {
            break state;
        }
        std::thread::sleep(Duration::from_millis(2));
    };

    let (vmm_side, _host) = std::os::unix::net::UnixStream::pair().unwrap();
    let console = Console::new("console".into(), vmm_side).unwrap();
    let mut other = MmioTransport::new(
        Box::new(console),
        mem.clone(),
        Arc::new(Interrupt::new(EventFd::new(0).unwrap())),
        Arc::new(ExitSignal::new().unwrap()),
        None,
    )
    .unwrap();
    let e = other.restore(&state).unwrap_err();
    assert!(e.to_string().contains("device type"), "{e}");

    let mut bad = state.clone();
    bad.queues[0].size = 3;
    let e = block(mem.clone(), 8, 0)
        .transport
        .restore(&bad)
        .unwrap_err();
    assert!(e.to_string().contains("queue 0"), "{e}");

    let mut bad = state.clone();
    bad.queues[0].used_ring = (2 << 20) - 2;
    let e = block(mem.clone(), 8, 0)
        .transport
        .restore(&bad)
        .unwrap_err();
    assert!(e.to_string().contains("queue 0"), "{e}");

    let mut bad = state;
    bad.driver_features |= 1 << 60;
    let e = block(mem, 8, 0).transport.restore(&bad).unwrap_err();
    assert!(e.to_string().contains("features"), "{e}");
}
