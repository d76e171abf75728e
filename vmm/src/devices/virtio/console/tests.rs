//! The console channel against mock queues and a real socket pair.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::worker::OUT_LIMIT;
use super::{Channel, ChannelState};
use crate::devices::virtio::Interrupt;
use crate::memory::GuestMemory;

const MEM_SIZE: usize = 4 << 20;
const BUF: u64 = 0x10_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;

struct Rig {
    mem: GuestMemory,
}

fn chain(descs: &[(u64, u32, u16)], start: u16) -> Vec<RawDescriptor> {
    descs
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
        .collect()
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
            MockSplitQueue::create(&self.mem, GuestAddress(0), 32),
            MockSplitQueue::create(&self.mem, GuestAddress(0x8000), 32),
        )
    }
    fn channel(
        &self,
        rx: &MockSplitQueue<'_, GuestMemory>,
        tx: &MockSplitQueue<'_, GuestMemory>,
    ) -> (Channel, UnixStream) {
        let (vmm_side, host_side) = UnixStream::pair().unwrap();
        vmm_side.set_nonblocking(true).unwrap();
        let channel = Channel::new(
            queue_of(rx),
            queue_of(tx),
            self.mem.clone(),
            vmm_side,
            Arc::new(Interrupt::new(EventFd::new(0).unwrap())),
        );
        (channel, host_side)
    }
}

/// The mock places its used ring right after `len` *bytes* of avail ring, so past 16 entries
/// the device's used entries would overwrite pending avail entries: move the used ring away.
const USED_OFFSET: u64 = 0x1000;

fn queue_of(vq: &MockSplitQueue<'_, GuestMemory>) -> Queue {
    let mut q = vq.create_queue::<Queue>().unwrap();
    q.set_used_ring_address(Some((vq.start().0 + USED_OFFSET) as u32), Some(0));
    q
}

fn used(mem: &GuestMemory, vq: &MockSplitQueue<'_, GuestMemory>, i: u16) -> (u32, u32) {
    let at = vq.start().0 + USED_OFFSET + 4 + 8 * u64::from(i);
    (
        mem.read_obj(GuestAddress(at)).unwrap(),
        mem.read_obj(GuestAddress(at + 4)).unwrap(),
    )
}

fn used_idx(mem: &GuestMemory, vq: &MockSplitQueue<'_, GuestMemory>) -> u16 {
    mem.read_obj(GuestAddress(vq.start().0 + USED_OFFSET + 2))
        .unwrap()
}

#[test]
fn bytes_flow_both_ways() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut ch, mut host) = rig.channel(&rx, &tx);

    rig.mem.write_slice(b"hello", GuestAddress(BUF)).unwrap();
    rig.mem
        .write_slice(b" agent", GuestAddress(BUF + 0x100))
        .unwrap();
    tx.add_desc_chains(&chain(&[(BUF, 5, 0), (BUF + 0x100, 6, 0)], 0), 0)
        .unwrap();
    ch.pump();
    let mut got = [0u8; 11];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello agent");
    assert_eq!(used(&rig.mem, &tx, 0), (0, 0));

    host.write_all(b"world").unwrap();
    rx.add_desc_chains(&chain(&[(BUF + 0x1000, 3, W)], 0), 0)
        .unwrap();
    rx.add_desc_chains(&chain(&[(BUF + 0x2000, 16, W)], 1), 1)
        .unwrap();
    ch.pump();
    assert_eq!(used(&rig.mem, &rx, 0), (0, 3));
    assert_eq!(used(&rig.mem, &rx, 1), (1, 2));
    let mut a = [0u8; 3];
    let mut b = [0u8; 2];
    rig.mem
        .read_slice(&mut a, GuestAddress(BUF + 0x1000))
        .unwrap();
    rig.mem
        .read_slice(&mut b, GuestAddress(BUF + 0x2000))
        .unwrap();
    assert_eq!((&a, &b), (b"wor", b"ld"));
    assert_eq!(ch.state(), ChannelState::Open);
}

#[test]
fn hostile_buffers_are_returned_without_harm() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut ch, mut host) = rig.channel(&rx, &tx);
    let beyond = MEM_SIZE as u64 + 0x1000;

    // Transmit: outside memory, huge, straddling; then a good one.
    tx.add_desc_chains(&chain(&[(beyond, 16, 0)], 0), 0)
        .unwrap();
    tx.add_desc_chains(&chain(&[(BUF, 0xffff_0000, 0)], 1), 1)
        .unwrap();
    tx.add_desc_chains(&chain(&[(MEM_SIZE as u64 - 4, 8, 0)], 2), 2)
        .unwrap();
    rig.mem.write_slice(b"ok", GuestAddress(BUF)).unwrap();
    tx.add_desc_chains(&chain(&[(BUF, 2, 0)], 3), 3).unwrap();
    ch.pump();
    assert_eq!(used_idx(&rig.mem, &tx), 4);
    let mut got = [0u8; 2];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ok");

    // Receive: a buffer outside memory gets nothing, the next one gets the bytes.
    host.write_all(b"xyz").unwrap();
    rx.add_desc_chains(&chain(&[(beyond, 16, W)], 0), 0)
        .unwrap();
    rx.add_desc_chains(&chain(&[(BUF + 0x1000, 16, W)], 1), 1)
        .unwrap();
    ch.pump();
    assert_eq!(used(&rig.mem, &rx, 0), (0, 0));
    assert_eq!(used(&rig.mem, &rx, 1), (1, 3));
    assert_eq!(ch.state(), ChannelState::Open);
}

#[test]
fn a_slow_host_bounds_the_buffered_bytes() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut ch, mut host) = rig.channel(&rx, &tx);
    const CHUNK: u32 = 64 << 10;
    const CHAINS: u16 = 24;
    for i in 0..CHAINS {
        let addr = BUF + u64::from(i) * u64::from(CHUNK);
        rig.mem
            .write_slice(&vec![i as u8; CHUNK as usize], GuestAddress(addr))
            .unwrap();
        tx.add_desc_chains(&chain(&[(addr, CHUNK, 0)], i), i)
            .unwrap();
    }
    ch.pump();
    assert!(
        ch.out.len() <= OUT_LIMIT + CHUNK as usize,
        "{} bytes buffered",
        ch.out.len()
    );
    assert!(
        used_idx(&rig.mem, &tx) < CHAINS,
        "the guest must be held back while the host does not read"
    );

    // Draining the host side lets everything through, in order.
    let mut received = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    host.set_nonblocking(true).unwrap();
    for _ in 0..1000 {
        ch.pump();
        match host.read(&mut buf) {
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        if received.len() == CHAINS as usize * CHUNK as usize {
            break;
        }
    }
    assert_eq!(received.len(), CHAINS as usize * CHUNK as usize);
    assert_eq!(used_idx(&rig.mem, &tx), CHAINS);
    for (i, piece) in received.chunks(CHUNK as usize).enumerate() {
        let wrong: Vec<_> = piece
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != i as u8)
            .take(3)
            .collect();
        assert!(wrong.is_empty(), "chunk {i} out of order: {wrong:?}");
    }
}

#[test]
fn garbage_avail_index_breaks_the_channel() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut ch, _host) = rig.channel(&rx, &tx);
    tx.avail().idx().store(u16::to_le(5000));
    ch.pump();
    assert_eq!(ch.state(), ChannelState::Broken);
}

#[test]
fn a_closed_host_discards_guest_bytes() {
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut ch, host) = rig.channel(&rx, &tx);
    drop(host);
    rig.mem.write_slice(b"lost", GuestAddress(BUF)).unwrap();
    tx.add_desc_chains(&chain(&[(BUF, 4, 0)], 0), 0).unwrap();
    ch.pump();
    assert_eq!(used_idx(&rig.mem, &tx), 1);
    assert!(ch.out.is_empty());
}

fn used_flags(mem: &GuestMemory, vq: &MockSplitQueue<'_, GuestMemory>) -> u16 {
    mem.read_obj(GuestAddress(vq.start().0 + USED_OFFSET))
        .unwrap()
}

#[test]
fn a_starved_receive_queue_is_polled_not_kicked() {
    use super::worker::{RX_POLL_MAX, RX_POLL_MIN};
    const NO_NOTIFY: u16 = 1;
    let ms = |d: std::time::Duration| d.as_millis() as i32;
    let rig = Rig::new();
    let (rx, tx) = rig.queues();
    let (mut ch, mut host) = rig.channel(&rx, &tx);
    ch.quiet_rx();
    assert_eq!(used_flags(&rig.mem, &rx), NO_NOTIFY, "no kicks");
    assert_eq!(ch.rx_wait_ms(), -1, "nothing to wait for");

    // Bytes arrive before any buffer: still no kicks, a second look soon.
    host.write_all(b"early").unwrap();
    ch.pump();
    assert_eq!(used_flags(&rig.mem, &rx), NO_NOTIFY);
    assert_eq!(used_idx(&rig.mem, &rx), 0);
    assert_eq!(ch.rx_wait_ms(), ms(RX_POLL_MIN));
    // Looks that find nothing come later and later, up to the bound.
    for _ in 0..16 {
        ch.poll_rx();
    }
    assert_eq!(ch.rx_wait_ms(), ms(RX_POLL_MAX));

    // Buffers posted meanwhile (no kick) take the bytes at the next look.
    rx.add_desc_chains(&chain(&[(BUF, 2, W)], 0), 0).unwrap();
    rx.add_desc_chains(&chain(&[(BUF + 0x100, 2, W)], 1), 1)
        .unwrap();
    ch.poll_rx();
    assert_eq!(used(&rig.mem, &rx, 0), (0, 2));
    assert_eq!(used(&rig.mem, &rx, 1), (1, 2));
    assert_eq!(
        ch.rx_wait_ms(),
        ms(RX_POLL_MIN),
        "progress: look again soon"
    );
    rx.add_desc_chains(&chain(&[(BUF + 0x200, 16, W)], 2), 2)
        .unwrap();
    ch.poll_rx();
    assert_eq!(used(&rig.mem, &rx, 2), (2, 1));
    assert_eq!(ch.rx_wait_ms(), -1, "everything delivered");
    assert_eq!(used_flags(&rig.mem, &rx), NO_NOTIFY);
    assert_eq!(ch.state(), ChannelState::Open);
}

mod multiport {
    //! The control queues' handshake, as Linux's virtio_console driver runs it.

    use super::*;
    use crate::devices::virtio::console::control::{
        self, Control, DEVICE_ADD, DEVICE_READY, HEADER, MAX_PENDING, PORT_NAME, PORT_NAME_EVENT,
        PORT_OPEN, PORT_READY,
    };

    struct Driver<'a> {
        rig: &'a Rig,
        crx: MockSplitQueue<'a, GuestMemory>,
        ctx: MockSplitQueue<'a, GuestMemory>,
        posted: u16,
        sent: u16,
    }

    impl<'a> Driver<'a> {
        fn new(rig: &'a Rig) -> Self {
            Self {
                rig,
                crx: MockSplitQueue::create(&rig.mem, GuestAddress(0x10000), 32),
                ctx: MockSplitQueue::create(&rig.mem, GuestAddress(0x18000), 32),
                posted: 0,
                sent: 0,
            }
        }
        fn control(&self) -> Control {
            Control::new(queue_of(&self.crx), queue_of(&self.ctx))
        }
        /// Posts a control receive buffer of `len` bytes.
        fn post(&mut self, len: u32) {
            let at = BUF + 0x4_0000 + 0x100 * u64::from(self.posted);
            let i = self.posted;
            self.crx
                .add_desc_chains(&chain(&[(at, len, W)], i), i)
                .unwrap();
            self.posted += 1;
        }
        /// Sends a control message (the driver's transmit queue).
        fn send(&mut self, bytes: &[u8]) {
            let at = BUF + 0x8_0000 + 0x100 * u64::from(self.sent);
            self.rig.mem.write_slice(bytes, GuestAddress(at)).unwrap();
            let i = self.sent;
            self.ctx
                .add_desc_chains(&chain(&[(at, bytes.len() as u32, 0)], i), i)
                .unwrap();
            self.sent += 1;
        }
        /// The message the device put in receive buffer `i`.
        fn received(&self, i: u16) -> Vec<u8> {
            let (head, len) = used(&self.rig.mem, &self.crx, i);
            let mut m = vec![0u8; len as usize];
            let at = BUF + 0x4_0000 + 0x100 * u64::from(head);
            self.rig.mem.read_slice(&mut m, GuestAddress(at)).unwrap();
            m
        }
    }

    #[test]
    fn the_handshake_names_and_opens_port_zero() {
        let rig = Rig::new();
        let (rx, tx) = rig.queues();
        let mut driver = Driver::new(&rig);
        let (ch, _host) = rig.channel(&rx, &tx);
        let mut ch = ch.with_control(driver.control());
        for _ in 0..4 {
            driver.post(64);
        }
        driver.send(&control::message(u32::MAX, DEVICE_READY, 1, &[]));
        ch.pump();
        assert_eq!(used_idx(&rig.mem, &driver.ctx), 1);
        assert_eq!(driver.received(0), control::message(0, DEVICE_ADD, 1, &[]));
        driver.send(&control::message(0, PORT_READY, 1, &[]));
        ch.pump();
        assert_eq!(
            driver.received(1),
            control::message(0, PORT_NAME_EVENT, 1, PORT_NAME.as_bytes())
        );
        assert_eq!(driver.received(2), control::message(0, PORT_OPEN, 1, &[]));
        assert_eq!(used_idx(&rig.mem, &driver.crx), 3);
        assert_eq!(ch.state(), ChannelState::Open);
    }

    #[test]
    fn host_bytes_wait_while_the_guest_has_the_port_closed() {
        let rig = Rig::new();
        let (rx, tx) = rig.queues();
        let mut driver = Driver::new(&rig);
        let (ch, mut host) = rig.channel(&rx, &tx);
        let mut ch = ch.with_control(driver.control());
        driver.send(&control::message(0, PORT_OPEN, 0, &[]));
        ch.pump();
        host.write_all(b"later").unwrap();
        rx.add_desc_chains(&chain(&[(BUF + 0x1000, 16, W)], 0), 0)
            .unwrap();
        ch.pump();
        assert_eq!(used_idx(&rig.mem, &rx), 0, "delivered to a closed port");
        driver.send(&control::message(0, PORT_OPEN, 1, &[]));
        ch.pump();
        assert_eq!(used(&rig.mem, &rx, 0), (0, 5));
        let mut got = [0u8; 5];
        rig.mem
            .read_slice(&mut got, GuestAddress(BUF + 0x1000))
            .unwrap();
        assert_eq!(&got, b"later");
    }

    #[test]
    fn host_bytes_wait_until_a_booting_guest_opens_the_port() {
        use crate::devices::virtio::park::DeviceSnapshot;
        let rig = Rig::new();
        let (rx, tx) = rig.queues();
        let mut driver = Driver::new(&rig);
        let (ch, mut host) = rig.channel(&rx, &tx);
        let mut ch = ch.with_control(driver.control());
        // The host writes before the guest said anything about the port (a boot's first
        // message): a driver would drop it, so it stays in the socket.
        host.write_all(b"start").unwrap();
        rx.add_desc_chains(&chain(&[(BUF + 0x1000, 16, W)], 0), 0)
            .unwrap();
        ch.pump();
        assert_eq!(
            used_idx(&rig.mem, &rx),
            0,
            "delivered before the port opened"
        );
        assert_eq!(
            ch.device_snapshot(),
            DeviceSnapshot::Console { guest_open: None }
        );
        driver.send(&control::message(0, PORT_OPEN, 1, &[]));
        ch.pump();
        assert_eq!(used(&rig.mem, &rx, 0), (0, 5));
        // A snapshot now keeps the open port, so a restored channel delivers at once.
        assert_eq!(
            ch.device_snapshot(),
            DeviceSnapshot::Console {
                guest_open: Some(true)
            }
        );
    }

    #[test]
    fn hostile_control_messages_are_consumed_and_bounded() {
        let rig = Rig::new();
        let (rx, tx) = rig.queues();
        let mut driver = Driver::new(&rig);
        let (ch, _host) = rig.channel(&rx, &tx);
        let mut ch = ch.with_control(driver.control());
        // Short, unknown, for another port, outside memory; then a flood with no buffers.
        driver.send(&[1, 2, 3]);
        driver.send(&control::message(7, PORT_READY, 1, &[]));
        driver.send(&control::message(0, 0x7fff, 1, &[]));
        let beyond = MEM_SIZE as u64 + 0x1000;
        let i = driver.sent;
        driver
            .ctx
            .add_desc_chains(&chain(&[(beyond, HEADER as u32, 0)], i), i)
            .unwrap();
        driver.sent += 1;
        for _ in 0..(MAX_PENDING + 8) {
            driver.send(&control::message(u32::MAX, DEVICE_READY, 1, &[]));
        }
        ch.pump();
        assert_eq!(used_idx(&rig.mem, &driver.ctx), driver.sent);
        // A buffer too small for a message gets nothing; the next answer goes to the next.
        driver.post(4);
        driver.post(64);
        ch.pump();
        assert_eq!(used(&rig.mem, &driver.crx, 0), (0, 0));
        assert_eq!(driver.received(1), control::message(0, DEVICE_ADD, 1, &[]));
        // No more than MAX_PENDING answers were kept.
        for _ in 0..MAX_PENDING {
            driver.post(64);
        }
        ch.pump();
        assert_eq!(used_idx(&rig.mem, &driver.crx), MAX_PENDING as u16);
        assert_eq!(ch.state(), ChannelState::Open);
    }
}
