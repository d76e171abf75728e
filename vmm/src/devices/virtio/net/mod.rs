//! virtio-net backed by passt over a Unix stream socket.
//!
//! The device offers one queue pair (receive queue 0, transmit queue 1), a MAC address, an MTU
//! (passt's 65520 by default), the link status (always up) and mergeable receive buffers, so a
//! guest posting page-sized buffers can still receive 64 KiB frames. No checksum or
//! segmentation offload is offered: every header the guest sends is ignored, every header it
//! receives is zero apart from `num_buffers`.
//!
//! On the socket each frame is a 4-byte big-endian length and the bare Ethernet frame (passt's
//! and qemu's `-netdev stream` format, see [`frame`]). The VMM connects to the socket before the
//! guest boots; the [`worker`] thread moves frames in both directions under the VMM's seccomp
//! filter and survives both a hostile guest ([`chain`], [`metrics`]) and the backend going
//! away.

pub mod chain;
pub mod config;
pub mod frame;
pub mod metrics;
pub mod rx;
#[cfg(test)]
mod tests;
pub mod tx;
pub mod worker;

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use virtio_bindings::bindings::virtio_net::{
    virtio_net_hdr_v1, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_STATUS,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;
use vm_memory::ByteValued;

use self::config::NetConfigSpace;
use self::metrics::NetMetrics;
pub use self::worker::Worker;
use super::{feature, ActivateError, Activation, VirtioDevice, F_VERSION_1};
use crate::thread;

/// Size of `struct virtio_net_hdr_v1`, in front of every frame in guest buffers (with
/// VIRTIO_F_VERSION_1 the header always has `num_buffers`).
pub const HDR_LEN: usize = std::mem::size_of::<virtio_net_hdr_v1>();
const _: () = assert!(HDR_LEN == 12);

/// Entries per queue.
pub const QUEUE_SIZE: u16 = 256;

/// Everything the device offers. VIRTIO_RING_F_EVENT_IDX lets each side say how far the other
/// may go before it wants a kick or an interrupt: each costs a VM exit, many times more under
/// nested virtualization.
pub const FEATURES: u64 = F_VERSION_1
    | feature(VIRTIO_RING_F_EVENT_IDX)
    | feature(VIRTIO_NET_F_MAC)
    | feature(VIRTIO_NET_F_MTU)
    | feature(VIRTIO_NET_F_MRG_RXBUF)
    | feature(VIRTIO_NET_F_STATUS);

/// The network device; the socket moves to the worker thread on activation.
pub struct Net {
    name: String,
    stream: Option<UnixStream>,
    config: NetConfigSpace,
    metrics: Arc<NetMetrics>,
    queue_sizes: [u16; 2],
}

impl Net {
    /// An interface with address `mac` and MTU `mtu` bridged to `stream` (already connected to
    /// passt). The stream is made non-blocking here, before any thread runs under seccomp.
    pub fn new(name: String, stream: UnixStream, mac: [u8; 6], mtu: u16) -> std::io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            name,
            stream: Some(stream),
            config: NetConfigSpace::new(mac, mtu),
            metrics: Arc::default(),
            queue_sizes: [QUEUE_SIZE; 2],
        })
    }

    /// The interface's counters (they outlive the device, for the VM's exit summary).
    pub fn metrics(&self) -> Arc<NetMetrics> {
        self.metrics.clone()
    }
}

impl VirtioDevice for Net {
    fn name(&self) -> &str {
        &self.name
    }
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn features(&self) -> u64 {
        FEATURES
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(self.config.as_slice(), offset, data);
    }
    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let device = "virtio-net";
        let got = a.queues.len();
        let mut queues = a.queues.into_iter();
        let mut events = a.queue_events.into_iter();
        let (Some(mut rxq), Some(mut txq), Some(rx_evt), Some(tx_evt)) =
            (queues.next(), queues.next(), events.next(), events.next())
        else {
            return Err(ActivateError::QueueCount {
                device,
                expected: 2,
                got,
            });
        };
        let stream = self
            .stream
            .take()
            .ok_or(ActivateError::AlreadyActive { device })?;
        let mergeable = a.acked_features & feature(VIRTIO_NET_F_MRG_RXBUF) != 0;
        let event_idx = a.acked_features & feature(VIRTIO_RING_F_EVENT_IDX) != 0;
        rxq.set_event_idx(event_idx);
        txq.set_event_idx(event_idx);
        let worker = Worker::new(
            self.name.clone(),
            rxq,
            txq,
            a.mem,
            stream,
            a.interrupt,
            mergeable,
        )
        .with_metrics(self.metrics.clone());
        let exit = a.exit.clone();
        let parking = a.parking;
        let mut worker = worker;
        thread::spawn(&self.name, a.filter, a.exit, move || {
            let result = worker.run(rx_evt, tx_evt, &exit);
            parking.park(worker.queue_snapshots());
            result
        })?;
        Ok(())
    }
}
