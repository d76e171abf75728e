//! The network worker against mock queues and a real socket pair standing in for passt.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::frame::MAX_FRAME;
use super::metrics::Fault;
use super::{Worker, HDR_LEN};
use crate::devices::virtio::Interrupt;
use crate::memory::GuestMemory;

const MEM_SIZE: usize = 4 << 20;
const BUF: u64 = 0x10_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;
const R: u16 = 0;
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const RING: u16 = 32;
/// The mock puts its used ring right behind the avail ring's *bytes*: move it out of the way
/// (as the console tests do).
const USED_OFFSET: u64 = 0x1000;

struct Rig {
    mem: GuestMemory,
}

fn chain(descs: &[(u64, u32, u16)], start: u16) -> Vec<RawDescriptor> {
    descs
        .iter()
        .enumerate()
        .map(|(i, &(addr, len, flags))| {
            let flags = if i == descs.len() - 1 {
                flags
            } else {
                flags | NEXT
            };
            RawDescriptor::from(Descriptor::new(addr, len, flags, start + i as u16 + 1))
        })
        .collect()
}

fn queue_of(vq: &MockSplitQueue<'_, GuestMemory>) -> Queue {
    let mut q = vq.create_queue::<Queue>().unwrap();
    q.set_used_ring_address(Some((vq.start().0 + USED_OFFSET) as u32), Some(0));
    q
}

fn used(mem: &GuestMemory, vq: &MockSplitQueue<'_, GuestMemory>, i: u16) -> (u32, u32) {
    let at = vq.start().0 + USED_OFFSET + 4 + 8 * u64::from(i % RING);
    (
        mem.read_obj(GuestAddress(at)).unwrap(),
        mem.read_obj(GuestAddress(at + 4)).unwrap(),
    )
}

fn used_idx(mem: &GuestMemory, vq: &MockSplitQueue<'_, GuestMemory>) -> u16 {
    mem.read_obj(GuestAddress(vq.start().0 + USED_OFFSET + 2))
        .unwrap()
}

/// The avail event the device writes behind the used ring (VIRTIO_RING_F_EVENT_IDX): the
/// driver kicks once its avail index passes it.
fn avail_event(mem: &GuestMemory, vq: &MockSplitQueue<'_, GuestMemory>) -> u16 {
    mem.read_obj(GuestAddress(
        vq.start().0 + USED_OFFSET + 4 + 8 * u64::from(RING),
    ))
    .unwrap()
}

impl Rig {
    fn new() -> Self {
        Self {
            mem: GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap(),
        }
    }

    fn queues(
        &self,
    ) -> (
        MockSplitQueue<'_, GuestMemory>,
        MockSplitQueue<'_, GuestMemory>,
    ) {
        (
            MockSplitQueue::create(&self.mem, GuestAddress(0), RING),
            MockSplitQueue::create(&self.mem, GuestAddress(0x8000), RING),
        )
    }

    fn worker(
        &self,
        rx: &MockSplitQueue<'_, GuestMemory>,
        tx: &MockSplitQueue<'_, GuestMemory>,
        mergeable: bool,
    ) -> (Worker, UnixStream) {
        let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
        self.worker_with(rx, tx, mergeable, irq)
    }

    fn worker_with(
        &self,
        rx: &MockSplitQueue<'_, GuestMemory>,
        tx: &MockSplitQueue<'_, GuestMemory>,
        mergeable: bool,
        interrupt: Arc<Interrupt>,
    ) -> (Worker, UnixStream) {
        let (vmm_side, host_side) = UnixStream::pair().unwrap();
        vmm_side.set_nonblocking(true).unwrap();
        host_side
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let worker = Worker::new(
            "net-test".into(),
            queue_of(rx),
            queue_of(tx),
            self.mem.clone(),
            vmm_side,
            interrupt,
            mergeable,
        );
        (worker, host_side)
    }

    /// A worker whose driver negotiated VIRTIO_RING_F_EVENT_IDX.
    fn worker_event_idx(
        &self,
        rx: &MockSplitQueue<'_, GuestMemory>,
        tx: &MockSplitQueue<'_, GuestMemory>,
    ) -> (Worker, UnixStream) {
        let (vmm_side, host_side) = UnixStream::pair().unwrap();
        vmm_side.set_nonblocking(true).unwrap();
        host_side
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (mut rxq, mut txq) = (queue_of(rx), queue_of(tx));
        rxq.set_event_idx(true);
        txq.set_event_idx(true);
        let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
        let worker = Worker::new(
            "net-test".into(),
            rxq,
            txq,
            self.mem.clone(),
            vmm_side,
            irq,
            true,
        );
        (worker, host_side)
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Posts `n` receive buffers of `size` bytes, one descriptor each, from descriptor `first`
    /// and at buffer slot `first`.
    fn post_rx(&self, rx: &MockSplitQueue<'_, GuestMemory>, first: u16, n: u16, size: u32) {
        for i in first..first + n {
            let addr = BUF + u64::from(i) * 0x1_0000;
            self.mem
                .write_slice(&vec![0xffu8; size as usize], GuestAddress(addr))
                .unwrap();
            rx.add_desc_chains(&chain(&[(addr, size, W)], i), i)
                .unwrap();
        }
    }
}

fn buf_addr(i: u16) -> u64 {
    BUF + u64::from(i) * 0x1_0000
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn framed(frame: &[u8]) -> Vec<u8> {
    let mut v = (frame.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(frame);
    v
}

fn read_framed(host: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    host.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    host.read_exact(&mut frame).unwrap();
    frame
}

/// The header the device must write: zero but for num_buffers.
fn header(num_buffers: u16) -> Vec<u8> {
    let mut h = vec![0u8; HDR_LEN];
    h[10..].copy_from_slice(&num_buffers.to_le_bytes());
    h
}

#[test]
fn a_transmitted_frame_reaches_the_socket_framed_without_its_header() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    let frame = pattern(100, 1);
    // The header straddles two descriptors, the frame two more.
    let mut bytes = vec![0xee; HDR_LEN];
    bytes.extend_from_slice(&frame);
    rig.mem.write_slice(&bytes, GuestAddress(BUF)).unwrap();
    let descs = [
        (BUF, 5, R),
        (BUF + 5, 20, R),
        (BUF + 25, 0, R),
        (BUF + 25, 87, R),
    ];
    tx.add_desc_chains(&chain(&descs, 0), 0).unwrap();
    // A second frame with the header alone in its descriptor.
    let second = pattern(60, 2);
    rig.mem
        .write_slice(&second, GuestAddress(BUF + 0x1000))
        .unwrap();
    tx.add_desc_chains(
        &chain(
            &[(BUF + 0x800, HDR_LEN as u32, R), (BUF + 0x1000, 60, R)],
            4,
        ),
        4,
    )
    .unwrap();
    w.pump(None);
    assert_eq!(read_framed(&mut host), frame);
    assert_eq!(read_framed(&mut host), second);
    assert_eq!(used_idx(&rig.mem, &tx), 2);
    assert_eq!(used(&rig.mem, &tx, 0), (0, 0));
    assert_eq!(used(&rig.mem, &tx, 1), (4, 0));
    assert_eq!(w.metrics().tx_frames(), 2);
    assert_eq!(w.metrics().tx_bytes(), 160);
}

#[test]
fn a_received_frame_spans_buffers_with_num_buffers_set() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    rig.post_rx(&rx, 0, 4, 1000);
    let frame = pattern(2500, 3);
    host.write_all(&framed(&frame)).unwrap();
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &rx), 3);
    assert_eq!(used(&rig.mem, &rx, 0), (0, 1000));
    assert_eq!(used(&rig.mem, &rx, 1), (1, 1000));
    assert_eq!(used(&rig.mem, &rx, 2), (2, 512));
    let mut got = rig.read(buf_addr(0), 1000);
    got.extend(rig.read(buf_addr(1), 1000));
    got.extend(rig.read(buf_addr(2), 512));
    assert_eq!(got[..HDR_LEN], header(3));
    assert_eq!(got[HDR_LEN..], frame);
    // The fourth buffer was never taken off the ring: the next frame starts there.
    let small = pattern(100, 4);
    host.write_all(&framed(&small)).unwrap();
    w.pump(None);
    assert_eq!(used(&rig.mem, &rx, 3), (3, 112));
    assert_eq!(rig.read(buf_addr(3), 12), header(1));
    assert_eq!(rig.read(buf_addr(3) + 12, 100), small);
    assert_eq!(w.metrics().rx_frames(), 2);
}

#[test]
fn without_buffers_frames_wait_in_order_and_the_socket_is_left_alone() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    // Five frames of 30000 bytes: more than the reader holds, so some stay in the socket.
    let frames: Vec<Vec<u8>> = (0..5).map(|i| pattern(30_000, i)).collect();
    for f in &frames {
        host.write_all(&framed(f)).unwrap();
    }
    for _ in 0..3 {
        w.pump(None);
    }
    assert_eq!(used_idx(&rig.mem, &rx), 0);
    assert!(w.pending_in() <= 2 * (4 + MAX_FRAME), "{}", w.pending_in());
    assert!(
        w.pending_in() < 5 * 30_004,
        "the socket must not be drained"
    );
    // The driver is asked to kick when it posts buffers (used flags without NO_NOTIFY).
    let flags: u16 = rig
        .mem
        .read_obj(GuestAddress(rx.start().0 + USED_OFFSET))
        .unwrap();
    assert_eq!(flags, 0);

    // 32 buffers of 4096 bytes: 8 per frame, four frames.
    rig.post_rx(&rx, 0, 32, 4096);
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &rx), 32);
    assert_eq!(w.metrics().rx_frames(), 4);
    // Frame i sits in buffers 8i..8i+8, in order.
    for (i, f) in frames.iter().enumerate().take(4) {
        let first = (8 * i) as u16;
        let mut got = Vec::new();
        for b in first..first + 8 {
            let (id, len) = used(&rig.mem, &rx, b);
            assert_eq!(id, u32::from(b));
            got.extend(rig.read(buf_addr(b), len as usize));
        }
        assert_eq!(got[..HDR_LEN], header(8), "frame {i}");
        assert!(got[HDR_LEN..] == f[..], "frame {i} out of order");
    }
    // The fifth waits for more buffers: the guest recycles eight.
    rig.post_rx(&rx, 0, 8, 4096);
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &rx), 40);
    assert_eq!(w.metrics().rx_frames(), 5);
    let mut got = Vec::new();
    for b in 0..8 {
        got.extend(rig.read(buf_addr(b), used(&rig.mem, &rx, 32 + b).1 as usize));
    }
    assert!(got[HDR_LEN..] == frames[4][..]);
}

#[test]
fn a_frame_arriving_in_pieces_is_delivered_whole() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    rig.post_rx(&rx, 0, 1, 4096);
    let wire = framed(&pattern(1000, 5));
    for piece in [&wire[..2], &wire[2..7], &wire[7..500]] {
        host.write_all(piece).unwrap();
        w.pump(None);
        assert_eq!(used_idx(&rig.mem, &rx), 0);
    }
    host.write_all(&wire[500..]).unwrap();
    w.pump(None);
    assert_eq!(used(&rig.mem, &rx, 0), (0, 1012));
    assert_eq!(rig.read(buf_addr(0) + 12, 1000), pattern(1000, 5));
}

#[test]
fn hostile_transmit_chains_are_returned_unread_and_counted() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    let beyond = MEM_SIZE as u64 + 0x1000;
    let posts: Vec<Vec<RawDescriptor>> = vec![
        // Device-writable on the transmit queue.
        chain(&[(BUF, 12, R), (BUF + 12, 60, W)], 0),
        // Outside memory, and straddling its end.
        chain(&[(beyond, 100, R)], 2),
        chain(&[(MEM_SIZE as u64 - 50, 100, R)], 3),
        // A descriptor linking to itself.
        vec![RawDescriptor::from(Descriptor::new(BUF, 100, NEXT, 4))],
        // A next index past the table.
        vec![RawDescriptor::from(Descriptor::new(BUF, 100, NEXT, 0x7fff))],
        // Zero-length only, and a header with no frame.
        chain(&[(BUF, 0, R), (BUF, 0, R)], 6),
        chain(&[(BUF, 12, R)], 8),
        // One byte over the largest frame.
        chain(&[(BUF, (HDR_LEN + MAX_FRAME + 1) as u32, R)], 9),
    ];
    let mut at = 0u16;
    for p in &posts {
        tx.add_desc_chains(p, at).unwrap();
        at += p.len() as u16;
    }
    assert_eq!(at, 10);
    // Then a good one, exactly the largest frame.
    let frame = pattern(MAX_FRAME, 6);
    rig.mem
        .write_slice(&frame, GuestAddress(BUF + 0x2_0000 + HDR_LEN as u64))
        .unwrap();
    tx.add_desc_chains(
        &chain(&[(BUF + 0x2_0000, (HDR_LEN + MAX_FRAME) as u32, R)], 10),
        10,
    )
    .unwrap();
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &tx), 9);
    assert_eq!(read_framed(&mut host), frame);
    let m = w.metrics();
    assert_eq!(m.faults(Fault::TxMalformed), 5);
    assert_eq!(m.faults(Fault::TxShort), 2);
    assert_eq!(m.faults(Fault::TxOversized), 1);
    assert_eq!(m.tx_frames(), 1);
    assert!(!w.is_broken());
    // Nothing else reached the socket.
    host.set_nonblocking(true).unwrap();
    let mut more = [0u8; 1];
    assert!(host.read(&mut more).is_err());
}

#[test]
fn hostile_receive_chains_are_returned_empty_and_counted() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    let beyond = MEM_SIZE as u64 + 0x1000;
    rx.add_desc_chains(&chain(&[(BUF, 4096, R)], 0), 0).unwrap();
    rx.add_desc_chains(&chain(&[(beyond, 4096, W)], 1), 1)
        .unwrap();
    rx.add_desc_chains(&chain(&[(BUF, 11, W)], 2), 2).unwrap();
    rx.add_desc_chains(
        &[RawDescriptor::from(Descriptor::new(BUF, 4096, W | NEXT, 3))],
        3,
    )
    .unwrap();
    rig.post_rx(&rx, 4, 1, 4096);
    host.write_all(&framed(&pattern(100, 7))).unwrap();
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &rx), 5);
    for i in 0..4 {
        assert_eq!(used(&rig.mem, &rx, i), (u32::from(i), 0));
    }
    assert_eq!(used(&rig.mem, &rx, 4), (4, 112));
    assert_eq!(rig.read(buf_addr(4) + 12, 100), pattern(100, 7));
    assert_eq!(w.metrics().faults(Fault::RxMalformed), 4);
    assert!(!w.is_broken());
}

#[test]
fn oversized_and_runt_frames_from_the_backend_are_skipped() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, host) = rig.worker(&rx, &tx, true);
    rig.post_rx(&rx, 0, 1, 4096);
    let writer = {
        let mut host = host.try_clone().unwrap();
        std::thread::spawn(move || {
            host.write_all(&framed(&vec![1u8; MAX_FRAME + 1])).unwrap();
            host.write_all(&framed(&[2u8; 13])).unwrap();
            host.write_all(&framed(&pattern(200, 8))).unwrap();
        })
    };
    for _ in 0..100 {
        w.pump(None);
        if used_idx(&rig.mem, &rx) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap();
    assert_eq!(used(&rig.mem, &rx, 0), (0, 212));
    assert_eq!(rig.read(buf_addr(0) + 12, 200), pattern(200, 8));
    assert_eq!(w.metrics().faults(Fault::RxOversized), 1);
    assert_eq!(w.metrics().faults(Fault::RxRunt), 1);
}

#[test]
fn a_frame_larger_than_every_buffer_is_dropped_not_waited_for() {
    // Without mergeable buffers a frame must fit the one buffer at the head.
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, false);
    rig.post_rx(&rx, 0, 1, 1000);
    host.write_all(&framed(&pattern(2000, 9))).unwrap();
    host.write_all(&framed(&pattern(500, 10))).unwrap();
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &rx), 1);
    assert_eq!(used(&rig.mem, &rx, 0), (0, 512));
    assert_eq!(rig.read(buf_addr(0), 12), header(1));
    assert_eq!(rig.read(buf_addr(0) + 12, 500), pattern(500, 10));
    assert_eq!(w.metrics().faults(Fault::RxTooBig), 1);

    // With them, once the whole ring is posted and still too small.
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    rig.post_rx(&rx, 0, RING, 100);
    host.write_all(&framed(&pattern(5000, 11))).unwrap();
    host.write_all(&framed(&pattern(1000, 12))).unwrap();
    w.pump(None);
    assert_eq!(w.metrics().faults(Fault::RxTooBig), 1);
    assert_eq!(used_idx(&rig.mem, &rx), 11);
    assert_eq!(rig.read(buf_addr(0), 12), header(11));
    // The rest stay held for the next frames.
    assert_eq!(w.held_rx_buffers(), 21);
}

#[test]
fn a_closed_backend_leaves_the_guest_running_without_network() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    // Half a frame, then the backend goes away.
    let wire = framed(&pattern(300, 13));
    host.write_all(&wire[..100]).unwrap();
    drop(host);
    rig.post_rx(&rx, 0, 2, 4096);
    w.pump(None);
    assert!(w.host_closed());
    assert_eq!(used_idx(&rig.mem, &rx), 0);
    // The guest keeps transmitting: its frames are taken and dropped, the queue never stalls.
    for i in 0..4u16 {
        tx.add_desc_chains(&chain(&[(BUF, 100, R)], i), i).unwrap();
        w.pump(None);
    }
    assert_eq!(used_idx(&rig.mem, &tx), 4);
    assert_eq!(w.metrics().tx_dropped_closed(), 4);
    assert_eq!(w.pending_out(), 0);
    assert!(!w.is_broken());
}

#[test]
fn a_flooding_guest_is_held_on_its_ring_while_the_backend_does_not_read() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    let frame_len = 60_000u32;
    rig.mem
        .write_slice(&pattern(frame_len as usize, 14), GuestAddress(BUF))
        .unwrap();
    for i in 0..RING {
        tx.add_desc_chains(&chain(&[(BUF, frame_len, R)], i), i)
            .unwrap();
    }
    w.pump(None);
    let bound = super::worker::OUT_LIMIT + 4 + MAX_FRAME;
    assert!(w.pending_out() <= bound, "{} bytes held", w.pending_out());
    assert!(used_idx(&rig.mem, &tx) < RING, "the guest must wait");
    // Reading the socket lets every frame through.
    let mut n = 0;
    host.set_nonblocking(false).unwrap();
    while n < RING {
        let f = read_framed(&mut host);
        assert_eq!(f.len(), frame_len as usize - HDR_LEN);
        n += 1;
        w.pump(None);
    }
    assert_eq!(used_idx(&rig.mem, &tx), RING);
}

#[test]
fn a_garbage_avail_index_breaks_the_device_not_the_vmm() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker(&rx, &tx, true);
    rx.avail().idx().store(u16::to_le(5000));
    host.write_all(&framed(&pattern(100, 15))).unwrap();
    w.pump(None);
    assert!(w.is_broken());
}

#[test]
fn the_worker_moves_frames_under_the_vmm_seccomp_filter() {
    use crate::exit::{ExitSignal, StopReason, VmExit};
    // EPERM instead of a kill: a refused syscall shows up as a failure, not a dead test run.
    let filter = crate::seccomp::build(seccompiler::SeccompAction::Errno(libc::EPERM as u32));
    let filter = Arc::new(filter.unwrap());
    let exit = Arc::new(ExitSignal::new().unwrap());
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
    let (mut w, mut host) = rig.worker_with(&rx, &tx, true, irq.clone());
    let metrics = w.metrics().clone();
    let rx_evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let tx_evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let tx_kick = tx_evt.try_clone().unwrap();
    let rx_kick = rx_evt.try_clone().unwrap();
    let worker_exit = exit.clone();
    let handle = crate::thread::spawn("net-seccomp", Some(filter), exit.clone(), move || {
        w.run(rx_evt, tx_evt, &worker_exit)
    })
    .unwrap();

    let frame = pattern(1500, 16);
    rig.mem
        .write_slice(&frame, GuestAddress(BUF + HDR_LEN as u64))
        .unwrap();
    tx.add_desc_chains(&chain(&[(BUF, (HDR_LEN + 1500) as u32, R)], 0), 0)
        .unwrap();
    tx_kick.write(1).unwrap();
    assert_eq!(read_framed(&mut host), frame);

    rig.post_rx(&rx, 0, 1, 4096);
    rx_kick.write(1).unwrap();
    host.write_all(&framed(&pattern(700, 17))).unwrap();
    for _ in 0..500 {
        if used_idx(&rig.mem, &rx) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(used(&rig.mem, &rx, 0), (0, 712));
    assert_eq!(rig.read(buf_addr(0) + 12, 700), pattern(700, 17));
    assert_eq!(metrics.tx_frames(), 1);
    // The irqfd was written: the guest would have been interrupted.
    assert!(irq.irqfd().read().unwrap() >= 1);

    exit.stop(StopReason::Exit(VmExit::Reset));
    handle.join().unwrap();
    match exit.wait(None) {
        Some(StopReason::Exit(VmExit::Reset)) => {}
        other => panic!("the worker failed under the filter: {other:?}"),
    }
}

#[test]
fn with_event_idx_the_driver_is_asked_to_kick_for_its_next_chain_or_buffer() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut w, mut host) = rig.worker_event_idx(&rx, &tx);
    // Transmit: two frames taken, then the avail event sits at the driver's index.
    for i in 0..2u16 {
        let addr = BUF + u64::from(i) * 0x1000;
        let mut bytes = vec![0u8; HDR_LEN];
        bytes.extend(pattern(60, i as u8));
        rig.mem.write_slice(&bytes, GuestAddress(addr)).unwrap();
        tx.add_desc_chains(&chain(&[(addr, bytes.len() as u32, R)], i), i)
            .unwrap();
    }
    w.pump(None);
    assert_eq!(read_framed(&mut host), pattern(60, 0));
    assert_eq!(read_framed(&mut host), pattern(60, 1));
    assert_eq!(avail_event(&rig.mem, &tx), 2);

    // Receive: one buffer, one frame delivered; a second frame finds no buffer and re-arms
    // the avail event at the driver's index (1), so the driver's next buffer is kicked.
    rig.post_rx(&rx, 0, 1, 4096);
    host.write_all(&framed(&pattern(100, 7))).unwrap();
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &rx), 1);
    host.write_all(&framed(&pattern(100, 8))).unwrap();
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &rx), 1);
    assert_eq!(avail_event(&rig.mem, &rx), 1);
    rig.post_rx(&rx, 1, 1, 4096);
    w.pump(None);
    assert_eq!(used_idx(&rig.mem, &rx), 2);
    assert_eq!(rig.read(buf_addr(1) + HDR_LEN as u64, 100), pattern(100, 8));
}
