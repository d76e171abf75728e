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

/// The slot a worker fills when it ends.
#[derive(Debug, Default)]
pub struct Parking(Mutex<Option<Vec<QueueSnapshot>>>);

impl Parking {
    /// Called by the worker as it ends, with its queues in the device's order.
    pub fn park(&self, queues: Vec<QueueSnapshot>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(queues);
    }

    /// What the worker left, once it ended.
    pub fn take(&self) -> Option<Vec<QueueSnapshot>> {
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
}
