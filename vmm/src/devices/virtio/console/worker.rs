//! The console's worker: moves bytes between the virtqueues and the host socket, with bounded
//! buffers in both directions so neither side can make the VMM grow without limit.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryBackend};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::control::Control;
use crate::devices::virtio::{Interrupt, WorkerError, INT_VRING};
use crate::exit::ExitSignal;
use crate::memory::GuestMemory;

/// Most guest bytes held while the host is not reading.
pub const OUT_LIMIT: usize = 256 << 10;
/// Largest single transmit chain; larger ones are dropped as malformed.
pub const MAX_CHAIN_BYTES: u64 = 1 << 20;
/// Bytes read from the socket at once.
const IN_CHUNK: usize = 64 << 10;
/// How soon a starved receive queue is looked at again, at first and at most.
pub const RX_POLL_MIN: Duration = Duration::from_millis(1);
pub const RX_POLL_MAX: Duration = Duration::from_millis(64);

const TOKEN_RX: u64 = 0;
const TOKEN_TX: u64 = 1;
const TOKEN_SOCKET: u64 = 2;
const TOKEN_EXIT: u64 = 3;
const TOKEN_CONTROL_RX: u64 = 4;
const TOKEN_CONTROL_TX: u64 = 5;

/// Whether the channel still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    /// Moving bytes.
    Open,
    /// The guest broke a queue: the device stopped.
    Broken,
}

/// The two queues and the socket.
pub struct Channel {
    rxq: Queue,
    txq: Queue,
    mem: GuestMemory,
    stream: UnixStream,
    interrupt: Arc<Interrupt>,
    /// Guest bytes not yet accepted by the socket.
    pub(crate) out: Vec<u8>,
    /// Host bytes not yet delivered to the guest (and how much of them was).
    pub(crate) inbound: Vec<u8>,
    inbound_pos: usize,
    host_closed: bool,
    state: ChannelState,
    /// The control queues, with MULTIPORT.
    control: Option<Control>,
    /// Host bytes wait for receive buffers: the ring is looked at again after `rx_poll`.
    rx_starved: bool,
    rx_poll: Duration,
}

impl Channel {
    /// A channel between the guest queues and `stream` (non-blocking).
    pub fn new(
        rxq: Queue,
        txq: Queue,
        mem: GuestMemory,
        stream: UnixStream,
        interrupt: Arc<Interrupt>,
    ) -> Self {
        Self {
            rxq,
            txq,
            mem,
            stream,
            interrupt,
            out: Vec::new(),
            inbound: Vec::new(),
            inbound_pos: 0,
            host_closed: false,
            state: ChannelState::Open,
            control: None,
            rx_starved: false,
            rx_poll: RX_POLL_MIN,
        }
    }

    /// The same channel as port 0 of a MULTIPORT device, with its control queues.
    pub fn with_control(mut self, control: Control) -> Self {
        self.control = Some(control);
        self
    }

    /// Whether host bytes may go to the guest: the driver of a generic port drops what arrives
    /// while the guest has not opened it (after a boot, before the agent opens it) or has
    /// closed it, so they wait (in the socket) until the guest says it opened it.
    fn guest_listens(&self) -> bool {
        self.control
            .as_ref()
            .is_none_or(|c| c.guest_open == Some(true))
    }

    /// The channel state.
    pub fn state(&self) -> ChannelState {
        self.state
    }

    /// Takes guest transmit chains while the outbound buffer has room. Returns whether any
    /// chain was used.
    pub fn process_tx(&mut self) -> bool {
        let mut used = Vec::new();
        {
            let Ok(mut iter) = self.txq.iter(&self.mem) else {
                self.state = ChannelState::Broken;
                return false;
            };
            // Chains stay on the ring (the guest waits) while the host is not reading.
            while self.out.len() < OUT_LIMIT {
                let Some(chain) = iter.next() else { break };
                let head = chain.head_index();
                let mut data = Vec::new();
                let mut total: u64 = 0;
                let mut ok = true;
                for desc in chain.readable() {
                    total += u64::from(desc.len());
                    if total > MAX_CHAIN_BYTES
                        || !self.mem.check_range(desc.addr(), desc.len() as usize)
                    {
                        ok = false;
                        break;
                    }
                    let start = data.len();
                    data.resize(start + desc.len() as usize, 0);
                    if self
                        .mem
                        .read_slice(&mut data[start..], desc.addr())
                        .is_err()
                    {
                        ok = false;
                        break;
                    }
                }
                // A malformed chain is returned unread; its bytes never reach the host.
                if ok && !self.host_closed {
                    self.out.extend_from_slice(&data);
                }
                used.push(head);
            }
        }
        self.complete(true, &used.iter().map(|h| (*h, 0)).collect::<Vec<_>>())
    }

    /// Writes buffered guest bytes to the socket until it would block.
    pub fn flush_out(&mut self) {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => break,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    // The host went away: nothing will ever read these bytes.
                    self.host_closed = true;
                    self.out.clear();
                }
            }
        }
    }

    /// Reads from the socket if nothing is pending for the guest.
    pub fn read_socket(&mut self) {
        if self.inbound_pos < self.inbound.len() || self.host_closed {
            return;
        }
        self.inbound.resize(IN_CHUNK, 0);
        self.inbound_pos = 0;
        loop {
            match self.stream.read(&mut self.inbound) {
                Ok(0) => {
                    self.host_closed = true;
                    self.inbound.clear();
                }
                Ok(n) => self.inbound.truncate(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.inbound.clear(),
                Err(_) => {
                    self.host_closed = true;
                    self.inbound.clear();
                }
            }
            return;
        }
    }

    /// Copies pending host bytes into guest receive buffers. Returns whether any was used.
    ///
    /// The driver never kicks the receive queue (`VRING_USED_F_NO_NOTIFY`): it posts its
    /// receive buffers one page at a time as its reader empties them, and a kick for each would
    /// be a VM exit and a wake-up of this thread per page, the device filling one page per
    /// round trip. While host bytes wait for buffers the worker looks at the ring again after
    /// [`RX_POLL_MIN`] (doubling up to [`RX_POLL_MAX`] while the guest posts none), and fills
    /// every buffer posted meanwhile with one interrupt.
    pub fn process_rx(&mut self) -> bool {
        let mut used = Vec::new();
        {
            let Ok(mut iter) = self.rxq.iter(&self.mem) else {
                self.state = ChannelState::Broken;
                return false;
            };
            while self.inbound_pos < self.inbound.len() {
                let Some(chain) = iter.next() else { break };
                let head = chain.head_index();
                let mut written: u32 = 0;
                for desc in chain.writable() {
                    let left = &self.inbound[self.inbound_pos..];
                    if left.is_empty() {
                        break;
                    }
                    let n = left.len().min(desc.len() as usize);
                    if !self.mem.check_range(desc.addr(), n)
                        || self.mem.write_slice(&left[..n], desc.addr()).is_err()
                    {
                        // A buffer outside memory: return the chain with what fit so far.
                        break;
                    }
                    self.inbound_pos += n;
                    written += n as u32;
                }
                used.push((head, written));
            }
        }
        self.rx_starved = self.inbound_pos < self.inbound.len();
        if !used.is_empty() {
            self.rx_poll = RX_POLL_MIN;
        }
        if self.inbound_pos >= self.inbound.len() {
            self.inbound.clear();
            self.inbound_pos = 0;
        }
        self.complete(false, &used)
    }

    /// Called at activation, before the driver posts its receive buffers: the driver never
    /// kicks the receive queue (see [`Channel::process_rx`]).
    pub fn quiet_rx(&mut self) {
        if self.rxq.disable_notification(&self.mem).is_err() {
            self.state = ChannelState::Broken;
        }
    }

    fn complete(&mut self, tx: bool, used: &[(u16, u32)]) -> bool {
        let queue = if tx { &mut self.txq } else { &mut self.rxq };
        for (head, len) in used {
            if queue.add_used(&self.mem, *head, *len).is_err() {
                self.state = ChannelState::Broken;
                return false;
            }
        }
        !used.is_empty() && queue.needs_notification(&self.mem).unwrap_or(true)
    }

    /// One round of work after any event: move bytes both ways, interrupt if needed.
    pub fn pump(&mut self) {
        let mut notify = false;
        if let Some(control) = &mut self.control {
            match control.pump(&self.mem) {
                Ok(n) => notify |= n,
                Err(_) => self.state = ChannelState::Broken,
            }
        }
        loop {
            let before = (self.out.len(), self.inbound.len(), self.inbound_pos);
            notify |= self.process_tx();
            self.flush_out();
            if self.guest_listens() {
                self.read_socket();
                notify |= self.process_rx();
            } else {
                self.rx_starved = false;
            }
            if self.state == ChannelState::Broken {
                self.interrupt.mark_broken();
                return;
            }
            // Stop when a round moved nothing more.
            if (self.out.len(), self.inbound.len(), self.inbound_pos) == before {
                break;
            }
        }
        if notify {
            self.interrupt.trigger(INT_VRING);
        }
    }

    /// The epoll timeout: how long until the starved receive queue is looked at, or forever.
    pub fn rx_wait_ms(&self) -> i32 {
        if self.rx_starved && self.state == ChannelState::Open {
            self.rx_poll.as_millis().try_into().unwrap_or(i32::MAX)
        } else {
            -1
        }
    }

    /// The starved receive queue's second look: what the guest posted meanwhile is filled; if
    /// nothing was, the next look comes later.
    pub fn poll_rx(&mut self) {
        let before = self.inbound_pos;
        self.pump();
        if self.inbound_pos == before && self.rx_starved {
            self.rx_poll = (self.rx_poll * 2).min(RX_POLL_MAX);
        }
    }

    fn socket_interest(&self) -> EventSet {
        let mut set = EventSet::empty();
        if self.inbound.is_empty() && !self.host_closed && self.guest_listens() {
            set |= EventSet::IN;
        }
        if !self.out.is_empty() {
            set |= EventSet::OUT;
        }
        set
    }

    /// What a restored channel needs beyond its queues: whether the guest holds its port open.
    pub fn device_snapshot(&self) -> crate::devices::virtio::park::DeviceSnapshot {
        use crate::devices::virtio::park::DeviceSnapshot;
        match &self.control {
            Some(c) => DeviceSnapshot::Console {
                guest_open: c.guest_open,
            },
            None => DeviceSnapshot::Stateless,
        }
    }

    /// Where the receive and transmit queues stand.
    pub fn queue_snapshots(&self) -> Vec<crate::devices::virtio::park::QueueSnapshot> {
        use crate::devices::virtio::park::QueueSnapshot;
        let mut queues = vec![QueueSnapshot::of(&self.rxq), QueueSnapshot::of(&self.txq)];
        if let Some(control) = &self.control {
            queues.extend(control.queue_snapshots());
        }
        queues
    }

    /// Serves the channel until the VM stops.
    pub fn run(
        &mut self,
        rx_evt: EventFd,
        tx_evt: EventFd,
        control_evts: Option<(EventFd, EventFd)>,
        exit: &ExitSignal,
    ) -> Result<(), WorkerError> {
        let epoll = Epoll::new().map_err(WorkerError::EpollCreate)?;
        let add = |fd: i32, set: EventSet, token: u64| {
            epoll
                .ctl(ControlOperation::Add, fd, EpollEvent::new(set, token))
                .map_err(|source| WorkerError::EpollCtl { op: "add", source })
        };
        add(rx_evt.as_raw_fd(), EventSet::IN, TOKEN_RX)?;
        add(tx_evt.as_raw_fd(), EventSet::IN, TOKEN_TX)?;
        add(exit.event().as_raw_fd(), EventSet::IN, TOKEN_EXIT)?;
        if let Some((crx, ctx)) = &control_evts {
            add(crx.as_raw_fd(), EventSet::IN, TOKEN_CONTROL_RX)?;
            add(ctx.as_raw_fd(), EventSet::IN, TOKEN_CONTROL_TX)?;
        }
        add(
            self.stream.as_raw_fd(),
            self.socket_interest(),
            TOKEN_SOCKET,
        )?;
        let mut socket_registered = true;
        let mut events = [EpollEvent::default(); 6];
        self.pump();
        loop {
            if socket_registered {
                let dead = self.host_closed && self.out.is_empty();
                if dead || self.state == ChannelState::Broken {
                    // Hang-ups are reported whatever the interest: stop watching a dead socket.
                    let _ = epoll.ctl(
                        ControlOperation::Delete,
                        self.stream.as_raw_fd(),
                        EpollEvent::default(),
                    );
                    socket_registered = false;
                } else {
                    epoll
                        .ctl(
                            ControlOperation::Modify,
                            self.stream.as_raw_fd(),
                            EpollEvent::new(self.socket_interest(), TOKEN_SOCKET),
                        )
                        .map_err(|source| WorkerError::EpollCtl {
                            op: "modify",
                            source,
                        })?;
                }
            }
            let timeout = self.rx_wait_ms();
            let n = match epoll.wait(timeout, &mut events) {
                Ok(0) if timeout >= 0 => {
                    self.poll_rx();
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(WorkerError::EpollWait(e)),
            };
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_EXIT => return Ok(()),
                    TOKEN_RX => {
                        let _ = rx_evt.read();
                    }
                    TOKEN_TX => {
                        let _ = tx_evt.read();
                    }
                    TOKEN_CONTROL_RX | TOKEN_CONTROL_TX => {
                        if let Some((crx, ctx)) = &control_evts {
                            let evt = if ev.data() == TOKEN_CONTROL_RX {
                                crx
                            } else {
                                ctx
                            };
                            let _ = evt.read();
                        }
                    }
                    _ => {
                        if ev
                            .event_set()
                            .intersects(EventSet::HANG_UP | EventSet::ERROR)
                            && !ev.event_set().contains(EventSet::IN)
                        {
                            self.host_closed = true;
                        }
                    }
                }
            }
            if exit.is_stopping() {
                return Ok(());
            }
            if self.state == ChannelState::Open {
                self.pump();
            }
        }
    }
}
