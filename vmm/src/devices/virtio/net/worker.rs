//! The network worker: one thread moving frames between the two virtqueues and the backend's
//! socket, with bounded buffers both ways.
//!
//! - Transmit: chains are taken while fewer than [`OUT_LIMIT`] bytes wait for the socket; a
//!   guest flooding the queue waits on its own ring instead of growing the VMM.
//! - Receive: the socket is read only while the frame at hand has been delivered; when the
//!   guest has no buffers the frame stays in the reader, the socket is left alone (passt sees
//!   the backpressure) and the driver's next kick resumes delivery.
//! - A closed socket is logged once; the guest keeps running, its frames are dropped.

use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::frame::{FrameReader, Parsed};
use super::metrics::{Fault, NetMetrics};
use super::rx::{Broken, Delivery, RxQueue};
use super::tx::append_frame;
use crate::devices::virtio::{Interrupt, WorkerError, INT_VRING};
use crate::exit::ExitSignal;
use crate::memory::GuestMemory;

/// Most bytes held for the socket before transmit chains are left on the ring.
pub const OUT_LIMIT: usize = 256 << 10;
/// Frames delivered to the guest per round, so a flooding backend cannot starve transmit.
const RX_BUDGET: usize = 64;

const TOKEN_RX: u64 = 0;
const TOKEN_TX: u64 = 1;
const TOKEN_SOCKET: u64 = 2;
const TOKEN_EXIT: u64 = 3;

/// Both queues, the socket and the buffers between them.
pub struct Worker {
    label: String,
    rx: RxQueue,
    txq: Queue,
    mem: GuestMemory,
    stream: UnixStream,
    interrupt: Arc<Interrupt>,
    metrics: Arc<NetMetrics>,
    mergeable: bool,
    reader: FrameReader,
    /// Length-prefixed frames not yet accepted by the socket, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    host_closed: bool,
    /// The reader needs bytes and the guest is not holding it up: watch the socket.
    want_read: bool,
    broken: bool,
}

impl Worker {
    /// A worker between the queues and `stream` (non-blocking). `mergeable` is whether the
    /// driver accepted VIRTIO_NET_F_MRG_RXBUF.
    pub fn new(
        label: String,
        rxq: Queue,
        txq: Queue,
        mem: GuestMemory,
        stream: UnixStream,
        interrupt: Arc<Interrupt>,
        mergeable: bool,
    ) -> Self {
        Self {
            label,
            rx: RxQueue::new(rxq),
            txq,
            mem,
            stream,
            interrupt,
            metrics: Arc::default(),
            mergeable,
            reader: FrameReader::new(),
            out: Vec::new(),
            out_pos: 0,
            host_closed: false,
            want_read: true,
            broken: false,
        }
    }

    /// Counts into `metrics` (shared with the device) instead of the worker's own.
    pub fn with_metrics(mut self, metrics: Arc<NetMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The worker's counters.
    pub fn metrics(&self) -> &Arc<NetMetrics> {
        &self.metrics
    }

    /// Whether the guest broke a queue (the device stopped).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether the backend went away.
    pub fn host_closed(&self) -> bool {
        self.host_closed
    }

    /// Bytes waiting for the socket.
    pub fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Buffered bytes from the socket not yet delivered.
    pub fn pending_in(&self) -> usize {
        self.reader.buffered()
    }

    /// Receive buffers taken off the ring for a frame that does not fit yet.
    pub fn held_rx_buffers(&self) -> usize {
        self.rx.held()
    }

    fn log(&self, fault: Fault, detail: &str) {
        if let Some(line) = self.metrics.count(&self.label, fault, detail) {
            eprintln!("{line}");
        }
    }

    fn close(&mut self, why: &str) {
        if !self.host_closed {
            eprintln!(
                "nook-vmm: {}: the network backend {why}; the guest has no network from now on",
                self.label
            );
        }
        self.host_closed = true;
        self.want_read = false;
        self.out.clear();
        self.out_pos = 0;
    }

    /// Takes transmit chains while the outbound buffer has room. Returns (chains used, whether
    /// the driver should be interrupted).
    ///
    /// Kicks are off while the ring is being drained and back on once it is empty (with
    /// VIRTIO_RING_F_EVENT_IDX, re-arming the avail event at the driver's index), then the ring
    /// is looked at once more for what the driver posted in between. A ring left full because
    /// the socket is behind needs no kick: the socket's readiness brings the worker back.
    pub fn process_tx(&mut self) -> Result<(usize, bool), Broken> {
        let mut used = Vec::new();
        self.txq
            .disable_notification(&self.mem)
            .map_err(|_| Broken)?;
        loop {
            let mut room = true;
            {
                let mut iter = self.txq.iter(&self.mem).map_err(|_| Broken)?;
                loop {
                    if self.out.len() - self.out_pos >= OUT_LIMIT {
                        room = false;
                        break;
                    }
                    let Some(chain) = iter.next() else { break };
                    used.push(chain.head_index());
                    if self.host_closed {
                        self.metrics.dropped_closed();
                        continue;
                    }
                    match append_frame(&self.mem, chain, &mut self.out) {
                        Ok(len) => self.metrics.sent(len),
                        Err(e) => {
                            let line = self.metrics.count(&self.label, e.fault(), &e.to_string());
                            if let Some(line) = line {
                                eprintln!("{line}");
                            }
                        }
                    }
                }
            }
            if !room
                || !self
                    .txq
                    .enable_notification(&self.mem)
                    .map_err(|_| Broken)?
            {
                break;
            }
        }
        for head in &used {
            self.txq.add_used(&self.mem, *head, 0).map_err(|_| Broken)?;
        }
        if used.is_empty() {
            return Ok((0, false));
        }
        let notify = self.txq.needs_notification(&self.mem).map_err(|_| Broken)?;
        Ok((used.len(), notify))
    }

    /// Writes buffered frames to the socket until it would block.
    pub fn flush_out(&mut self) {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    self.close("stopped accepting frames");
                    return;
                }
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.close(&format!("failed ({e})"));
                    return;
                }
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > OUT_LIMIT {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Delivers frames from the socket while the guest has buffers, at most RX_BUDGET.
    /// Returns (frames handled, whether the driver should be interrupted).
    pub fn process_rx(&mut self) -> Result<(usize, bool), Broken> {
        let mut handled = 0;
        let mut delivered = false;
        while handled < RX_BUDGET {
            match self.reader.parse() {
                Parsed::Frame => {
                    let frame = self.reader.frame();
                    let outcome = self.rx.deliver(
                        &self.mem,
                        frame,
                        self.mergeable,
                        &self.metrics,
                        &self.label,
                    )?;
                    match outcome {
                        Delivery::Delivered(_) => {
                            self.metrics.received(frame.len());
                            delivered = true;
                        }
                        Delivery::TooBig => {
                            let detail = format!("{} bytes", frame.len());
                            self.log(Fault::RxTooBig, &detail);
                        }
                        Delivery::NoBuffers => {
                            // Backpressure: leave the socket alone until the driver kicks.
                            self.want_read = false;
                            if self.rx.set_kicks(&self.mem, true)? {
                                continue;
                            }
                            break;
                        }
                    }
                    self.reader.consume();
                    handled += 1;
                }
                Parsed::Oversized(len) => {
                    self.log(Fault::RxOversized, &format!("{len} bytes"));
                    handled += 1;
                }
                Parsed::Runt(len) => {
                    self.log(Fault::RxRunt, &format!("{len} bytes"));
                    handled += 1;
                }
                Parsed::NeedMore => {
                    // Buffers no longer needed urgently: no kicks for each one posted.
                    self.rx.set_kicks(&self.mem, false)?;
                    if self.host_closed {
                        self.want_read = false;
                        break;
                    }
                    match self.reader.fill(&mut self.stream) {
                        Ok(0) => self.close("closed the connection"),
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            self.want_read = true;
                            break;
                        }
                        Err(e) => self.close(&format!("failed ({e})")),
                    }
                }
            }
        }
        let notify = delivered && self.rx.needs_notification(&self.mem)?;
        Ok((handled, notify))
    }

    /// One round of work after any event: move frames both ways until nothing moves, then
    /// interrupt if needed.
    pub fn pump(&mut self, exit: Option<&ExitSignal>) {
        if self.broken {
            return;
        }
        let mut notify = false;
        loop {
            let round = (|| -> Result<usize, Broken> {
                let (sent, n) = self.process_tx()?;
                notify |= n;
                self.flush_out();
                let (handled, n) = self.process_rx()?;
                notify |= n;
                Ok(sent + handled)
            })();
            let moved = match round {
                Ok(moved) => moved,
                Err(Broken) => {
                    self.broken = true;
                    self.interrupt.mark_broken();
                    return;
                }
            };
            if moved == 0 || exit.is_some_and(|e| e.is_stopping()) {
                break;
            }
        }
        if notify {
            self.interrupt.trigger(INT_VRING);
        }
    }

    fn socket_interest(&self) -> EventSet {
        let mut set = EventSet::empty();
        if self.want_read && !self.host_closed {
            set |= EventSet::IN;
        }
        if self.pending_out() > 0 {
            set |= EventSet::OUT;
        }
        set
    }

    /// Where the receive and transmit queues stand. Receive buffers taken off the ring but not
    /// yet filled count as not taken: a restored device takes them again.
    pub fn queue_snapshots(&self) -> Vec<crate::devices::virtio::park::QueueSnapshot> {
        use crate::devices::virtio::park::QueueSnapshot;
        vec![self.rx.snapshot(), QueueSnapshot::of(&self.txq)]
    }

    /// Serves the device until the VM stops.
    pub fn run(
        &mut self,
        rx_evt: EventFd,
        tx_evt: EventFd,
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
        let socket = self.stream.as_raw_fd();
        add(socket, self.socket_interest(), TOKEN_SOCKET)?;
        let mut socket_registered = true;
        let mut events = [EpollEvent::default(); 4];
        self.pump(Some(exit));
        loop {
            if socket_registered {
                if self.host_closed || self.broken {
                    // Hang-ups are reported whatever the interest: stop watching a dead socket.
                    let _ = epoll.ctl(ControlOperation::Delete, socket, EpollEvent::default());
                    socket_registered = false;
                } else {
                    epoll
                        .ctl(
                            ControlOperation::Modify,
                            socket,
                            EpollEvent::new(self.socket_interest(), TOKEN_SOCKET),
                        )
                        .map_err(|source| WorkerError::EpollCtl {
                            op: "modify",
                            source,
                        })?;
                }
            }
            let n = match epoll.wait(-1, &mut events) {
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
                    _ => {
                        let set = ev.event_set();
                        if set.intersects(EventSet::HANG_UP | EventSet::ERROR)
                            && !set.contains(EventSet::IN)
                        {
                            self.close("hung up");
                        }
                    }
                }
            }
            if exit.is_stopping() {
                return Ok(());
            }
            self.pump(Some(exit));
        }
    }
}
