//! The console's control queues (VIRTIO_CONSOLE_F_MULTIPORT, virtio 1.2 §5.3.6.2): the
//! handshake that makes port 0 a generic port named [`PORT_NAME`] (`/dev/vportNp0` in the
//! guest), open on the host's side from the start.
//!
//! A console port (hvc) is slow for bulk data: the guest driver pushes at most a page per
//! transmit and spins, interrupts off, until the device has taken it, and it reads 16 bytes
//! at a time into the tty layer. A generic port moves up to 32 KiB per transmit without
//! waiting and hands whole receive buffers to `read`.
//!
//! The handshake: the driver sends DEVICE_READY; the device answers DEVICE_ADD for port 0;
//! the driver creates the port and sends PORT_READY; the device answers PORT_NAME and
//! PORT_OPEN (the host end is connected). The driver's own PORT_OPEN messages (the guest
//! opened or closed the port) need no answer, but gate the host's bytes: the driver drops what
//! arrives on a port the guest has not opened, so host bytes wait until it has. Anything else,
//! or anything malformed, is consumed and ignored: a hostile driver can make the device queue
//! only [`MAX_PENDING`] answers.

use std::collections::VecDeque;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::Bytes;

use crate::devices::virtio::feature;
use crate::memory::GuestMemory;

/// VIRTIO_CONSOLE_F_MULTIPORT.
pub const F_MULTIPORT: u64 = feature(1);
/// The port's name: the guest sees it in `/sys/class/virtio-ports/vportNp0/name` (and udev,
/// where one runs, links `/dev/virtio-ports/nook.agent`).
pub const PORT_NAME: &str = "nook.agent";

/// `struct virtio_console_control`: id (le32), event (le16), value (le16).
pub const HEADER: usize = 8;
/// Answers held while the driver posts no control receive buffer.
pub const MAX_PENDING: usize = 16;

/// Control events (`VIRTIO_CONSOLE_*`).
pub const DEVICE_READY: u16 = 0;
pub const DEVICE_ADD: u16 = 1;
pub const PORT_READY: u16 = 3;
pub const PORT_OPEN: u16 = 6;
pub const PORT_NAME_EVENT: u16 = 7;

/// One control message: the header and, for PORT_NAME, the name.
pub fn message(id: u32, event: u16, value: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER + payload.len());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&event.to_le_bytes());
    m.extend_from_slice(&value.to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// The control receive queue (device to driver) and transmit queue (driver to device).
pub struct Control {
    rxq: Queue,
    txq: Queue,
    pending: VecDeque<Vec<u8>>,
    /// Whether the guest holds the port open: its last PORT_OPEN, none yet after a boot; a
    /// restore sets back the snapshotted guest's.
    pub guest_open: Option<bool>,
}

/// A control queue could not be walked: the device stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

impl Control {
    /// The two control queues, in the driver's order (receive, then transmit).
    pub fn new(rxq: Queue, txq: Queue) -> Self {
        Self {
            rxq,
            txq,
            pending: VecDeque::new(),
            guest_open: None,
        }
    }

    /// Reads the driver's messages and answers them; returns whether the driver must be
    /// interrupted.
    pub fn pump(&mut self, mem: &GuestMemory) -> Result<bool, Broken> {
        let mut notify = self.take_messages(mem)?;
        notify |= self.deliver(mem)?;
        Ok(notify)
    }

    fn take_messages(&mut self, mem: &GuestMemory) -> Result<bool, Broken> {
        let mut used = Vec::new();
        let mut got = Vec::new();
        {
            let mut iter = self.txq.iter(mem).map_err(|_| Broken)?;
            for chain in iter.by_ref() {
                used.push(chain.head_index());
                let mut header = [0u8; HEADER];
                let mut filled = 0;
                for desc in chain.readable() {
                    let n = (HEADER - filled).min(desc.len() as usize);
                    if mem
                        .read_slice(&mut header[filled..filled + n], desc.addr())
                        .is_err()
                    {
                        filled = 0;
                        break;
                    }
                    filled += n;
                    if filled == HEADER {
                        break;
                    }
                }
                if filled == HEADER {
                    got.push(header);
                }
            }
        }
        for header in got {
            self.handle(&header);
        }
        complete(&mut self.txq, mem, used.into_iter().map(|h| (h, 0)))
    }

    fn handle(&mut self, header: &[u8; HEADER]) {
        let id = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let event = u16::from_le_bytes(header[4..6].try_into().expect("2 bytes"));
        let value = u16::from_le_bytes(header[6..8].try_into().expect("2 bytes"));
        match (event, id, value) {
            (DEVICE_READY, _, 1) => self.answer(message(0, DEVICE_ADD, 1, &[])),
            (PORT_READY, 0, 1) => {
                self.answer(message(0, PORT_NAME_EVENT, 1, PORT_NAME.as_bytes()));
                self.answer(message(0, PORT_OPEN, 1, &[]));
            }
            (PORT_OPEN, 0, v) => self.guest_open = Some(v != 0),
            _ => {}
        }
    }

    fn answer(&mut self, m: Vec<u8>) {
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(m);
        }
    }

    /// Each pending answer into one receive buffer; one too small for it gets nothing (a
    /// message cut short would mean something else).
    fn deliver(&mut self, mem: &GuestMemory) -> Result<bool, Broken> {
        let mut used = Vec::new();
        {
            let mut iter = self.rxq.iter(mem).map_err(|_| Broken)?;
            while let Some(m) = self.pending.front() {
                let Some(chain) = iter.next() else { break };
                let head = chain.head_index();
                let descs: Vec<_> = chain.writable().collect();
                let room: u64 = descs.iter().map(|d| u64::from(d.len())).sum();
                let mut written = 0usize;
                if room >= m.len() as u64 {
                    for desc in descs {
                        let n = (m.len() - written).min(desc.len() as usize);
                        if n == 0 {
                            break;
                        }
                        if mem
                            .write_slice(&m[written..written + n], desc.addr())
                            .is_err()
                        {
                            written = 0;
                            break;
                        }
                        written += n;
                    }
                }
                used.push((head, written as u32));
                self.pending.pop_front();
            }
        }
        complete(&mut self.rxq, mem, used.into_iter())
    }

    /// The receive and transmit queues' positions.
    pub fn queue_snapshots(&self) -> [crate::devices::virtio::park::QueueSnapshot; 2] {
        use crate::devices::virtio::park::QueueSnapshot;
        [QueueSnapshot::of(&self.rxq), QueueSnapshot::of(&self.txq)]
    }
}

fn complete(
    queue: &mut Queue,
    mem: &GuestMemory,
    used: impl Iterator<Item = (u16, u32)>,
) -> Result<bool, Broken> {
    let mut any = false;
    for (head, len) in used {
        queue.add_used(mem, head, len).map_err(|_| Broken)?;
        any = true;
    }
    Ok(any && queue.needs_notification(mem).unwrap_or(true))
}
