//! Where a device's worker leaves its queues when the VM stops, so that a snapshot can record
//! how far each queue had got and a restored VM can serve them on from there.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueState};

/// One queue's position and layout (virtio-queue's `QueueState`, which has no serde).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx: bool,
}

impl QueueSnapshot {
    /// The queue's state now.
    pub fn of(queue: &Queue) -> Self {
        let s = queue.state();
        Self {
            max_size: s.max_size,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx: s.event_idx_enabled,
        }
    }

    /// The queue again; virtio-queue checks the sizes and addresses' alignment.
    pub fn to_queue(self) -> Result<Queue, virtio_queue::Error> {
        Queue::try_from(QueueState {
            max_size: self.max_size,
            next_avail: self.next_avail,
            next_used: self.next_used,
            event_idx_enabled: self.event_idx,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table,
            avail_ring: self.avail_ring,
            used_ring: self.used_ring,
        })
    }
}

/// What a device's worker knows beyond its queues that the guest's driver relies on, so that a
/// restored device behaves as the snapshotted one did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceSnapshot {
    /// Nothing: the queues say it all (block, net).
    #[default]
    Stateless,
    /// The console's port: whether the guest holds it open (its last PORT_OPEN), none yet.
    Console { guest_open: Option<bool> },
}

impl DeviceSnapshot {
    /// Whether this state belongs to a device of `device_type` (an activated console always
    /// has its port's state; nothing else has any).
    pub fn fits(&self, device_type: u32, activated: bool) -> bool {
        use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
        match self {
            DeviceSnapshot::Console { .. } => device_type == VIRTIO_ID_CONSOLE && activated,
            DeviceSnapshot::Stateless => device_type != VIRTIO_ID_CONSOLE || !activated,
        }
    }
}

/// What a worker leaves when it ends: its queues in the device's order, and its own state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parked {
    pub queues: Vec<QueueSnapshot>,
    pub device: DeviceSnapshot,
}

/// The slot a worker fills when it ends.
#[derive(Debug, Default)]
pub struct Parking(Mutex<Option<Parked>>);

impl Parking {
    /// Called by the worker of a stateless device as it ends, with its queues in the device's
    /// order.
    pub fn park(&self, queues: Vec<QueueSnapshot>) {
        self.park_with(queues, DeviceSnapshot::Stateless);
    }

    /// Called by the worker as it ends, with its queues and its own state.
    pub fn park_with(&self, queues: Vec<QueueSnapshot>, device: DeviceSnapshot) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Parked { queues, device });
    }

    /// What the worker left, once it ended.
    pub fn take(&self) -> Option<Parked> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::QueueT;

    #[test]
    fn a_queue_comes_back_as_it_was() {
        let mut q = Queue::new(256).unwrap();
        q.set_size(64);
        q.set_desc_table_address(Some(0x1000), Some(0));
        q.set_avail_ring_address(Some(0x2000), Some(0));
        q.set_used_ring_address(Some(0x3000), Some(0));
        q.set_ready(true);
        q.set_next_avail(7);
        q.set_next_used(5);
        q.set_event_idx(true);
        let snap = QueueSnapshot::of(&q);
        assert_eq!(QueueSnapshot::of(&snap.to_queue().unwrap()), snap);
        // A size that is not a power of two is refused, not loaded.
        let bad = QueueSnapshot { size: 3, ..snap };
        assert!(bad.to_queue().is_err());
    }

    #[test]
    fn a_worker_state_fits_only_its_device() {
        use virtio_bindings::virtio_ids::{VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE};
        let console = DeviceSnapshot::Console {
            guest_open: Some(true),
        };
        assert!(console.fits(VIRTIO_ID_CONSOLE, true));
        assert!(!console.fits(VIRTIO_ID_BLOCK, true));
        assert!(!console.fits(VIRTIO_ID_CONSOLE, false));
        // An activated console without its port's state would hold host bytes forever.
        assert!(!DeviceSnapshot::Stateless.fits(VIRTIO_ID_CONSOLE, true));
        assert!(DeviceSnapshot::Stateless.fits(VIRTIO_ID_CONSOLE, false));
        assert!(DeviceSnapshot::Stateless.fits(VIRTIO_ID_BLOCK, true));
    }
}
