//! The receive path: a frame from the backend goes into the guest's receive buffers behind a
//! virtio-net header.
//!
//! With VIRTIO_NET_F_MRG_RXBUF a frame spreads over as many buffers as it needs and the
//! header's `num_buffers` says how many; without it, a frame must fit one buffer. Buffers are
//! taken off the ring only as a frame needs them and kept (at most a ring's worth) when a frame
//! does not fit yet, so the next attempt, after the guest posted more, starts where this one
//! stopped.

use std::collections::VecDeque;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes};

use super::chain::{segments, Segments};
use super::metrics::{Fault, NetMetrics};
use super::HDR_LEN;
use crate::memory::GuestMemory;

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written into this many buffers, now on the used ring.
    Delivered(u16),
    /// Not enough buffers posted: the frame must wait.
    NoBuffers,
    /// Larger than anything the guest can post: the frame must be dropped.
    TooBig,
}

/// The queue is unusable: the driver broke the ring protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

/// The receive queue and the buffers taken off it for the frame at hand.
pub struct RxQueue {
    /// The virtqueue.
    pub queue: Queue,
    held: VecDeque<Segments>,
    /// Descriptors the held buffers occupy (the guest cannot post more than the ring holds).
    held_descs: usize,
    /// Whether the driver kicks the queue when it posts buffers (the ring's default).
    kicks: bool,
}

impl RxQueue {
    /// Wraps the receive virtqueue.
    pub fn new(queue: Queue) -> Self {
        Self {
            queue,
            held: VecDeque::new(),
            held_descs: 0,
            kicks: true,
        }
    }

    /// The queue's state with the held buffers given back: they were taken off the ring and
    /// not written, so a restored device takes them again.
    pub fn snapshot(&self) -> crate::devices::virtio::park::QueueSnapshot {
        let mut snap = crate::devices::virtio::park::QueueSnapshot::of(&self.queue);
        snap.next_avail = snap.next_avail.wrapping_sub(self.held.len() as u16);
        snap
    }

    /// Buffers taken off the ring and not yet used.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes the next usable buffer off the ring; malformed ones go straight back empty.
    /// Returns false when the ring is empty.
    fn take(
        &mut self,
        mem: &GuestMemory,
        metrics: &NetMetrics,
        label: &str,
    ) -> Result<bool, Broken> {
        loop {
            let chain = {
                let mut iter = self.queue.iter(mem).map_err(|_| Broken)?;
                match iter.next() {
                    Some(chain) => chain,
                    None => return Ok(false),
                }
            };
            let head = chain.head_index();
            let result = segments(mem, chain, true).map_err(|e| e.to_string());
            match result {
                Ok(buf) if buf.total >= HDR_LEN as u64 => {
                    self.held_descs += buf.descs;
                    self.held.push_back(buf);
                    return Ok(true);
                }
                other => {
                    let detail = match other {
                        Ok(buf) => format!("{} bytes cannot hold the header", buf.total),
                        Err(e) => e,
                    };
                    if let Some(line) = metrics.count(label, Fault::RxMalformed, &detail) {
                        eprintln!("{line}");
                    }
                    // Used with nothing written: the driver frees it. It lands between frames,
                    // never among the buffers of one.
                    self.queue.add_used(mem, head, 0).map_err(|_| Broken)?;
                }
            }
        }
    }

    /// Writes `frame` behind a header into as many buffers as it needs (one without
    /// `mergeable`).
    pub fn deliver(
        &mut self,
        mem: &GuestMemory,
        frame: &[u8],
        mergeable: bool,
        metrics: &NetMetrics,
        label: &str,
    ) -> Result<Delivery, Broken> {
        let need = (HDR_LEN + frame.len()) as u64;
        let ring = usize::from(self.queue.size());
        let max_buffers = if mergeable { ring } else { 1 };
        let mut count = 0usize;
        let mut room = 0u64;
        while room < need {
            if count == max_buffers || (count == self.held.len() && self.held_descs >= ring) {
                return Ok(Delivery::TooBig);
            }
            if count == self.held.len() && !self.take(mem, metrics, label)? {
                return Ok(Delivery::NoBuffers);
            }
            room += self.held[count].total;
            count += 1;
        }
        let mut header = [0u8; HDR_LEN];
        // num_buffers, the header's last field; every other field zero: no offloads.
        header[HDR_LEN - 2..].copy_from_slice(&(count as u16).to_le_bytes());
        let mut parts = [&header[..], frame];
        for buf in self.held.drain(..count) {
            self.held_descs -= buf.descs;
            let mut used = 0u32;
            for &(addr, len) in &buf.segs {
                let mut left = len as usize;
                let mut at = addr;
                while left > 0 {
                    let Some(part) = parts.iter_mut().find(|p| !p.is_empty()) else {
                        break;
                    };
                    let n = left.min(part.len());
                    // Checked when taken; the guest cannot unmap its memory under us.
                    if mem.write_slice(&part[..n], at).is_err() {
                        break;
                    }
                    *part = &part[n..];
                    at = at.unchecked_add(n as u64);
                    left -= n;
                    used += n as u32;
                }
            }
            self.queue
                .add_used(mem, buf.head, used)
                .map_err(|_| Broken)?;
        }
        Ok(Delivery::Delivered(count as u16))
    }

    /// Turns the driver's kicks on or off; when turning them on, returns whether buffers are
    /// already waiting (posted before the driver could see the change). Turning them on is
    /// always written: with VIRTIO_RING_F_EVENT_IDX it moves the avail event to the driver's
    /// current index, which a stale value would leave behind.
    pub fn set_kicks(&mut self, mem: &GuestMemory, on: bool) -> Result<bool, Broken> {
        if !on && !self.kicks {
            return Ok(false);
        }
        let more = if on {
            self.queue.enable_notification(mem).map_err(|_| Broken)?
        } else {
            self.queue.disable_notification(mem).map_err(|_| Broken)?;
            false
        };
        self.kicks = on;
        Ok(more)
    }

    /// Whether the driver wants an interrupt for what was just used.
    pub fn needs_notification(&mut self, mem: &GuestMemory) -> Result<bool, Broken> {
        self.queue.needs_notification(mem).map_err(|_| Broken)
    }
}
