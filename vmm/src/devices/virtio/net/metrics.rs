//! What the network device counts, and how a misbehaving guest or backend reaches the log: one
//! stderr line per kind of fault, thinned out like the disk's (the first few, then powers of
//! two), so a guest flooding bad chains cannot flood the VMM's stderr.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::devices::virtio::block::metrics::{should_log, LOG_FIRST};

/// Everything that makes the device drop a frame or a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A transmit chain with a device-writable or out-of-range descriptor, a loop or a chain
    /// longer than the queue: returned unread.
    TxMalformed,
    /// A transmit chain shorter than the virtio-net header plus an Ethernet header.
    TxShort,
    /// A transmit chain larger than the virtio-net header plus the largest frame.
    TxOversized,
    /// A receive chain with a device-readable or out-of-range descriptor, a loop, or too
    /// small for the virtio-net header: returned empty.
    RxMalformed,
    /// A frame from the backend larger than all the buffers the guest can post.
    RxTooBig,
    /// A frame from the backend longer than the largest Ethernet frame: skipped unread.
    RxOversized,
    /// A frame from the backend shorter than an Ethernet header.
    RxRunt,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::TxMalformed,
        Fault::TxShort,
        Fault::TxOversized,
        Fault::RxMalformed,
        Fault::RxTooBig,
        Fault::RxOversized,
        Fault::RxRunt,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// What happened, for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::TxMalformed => "dropped a malformed transmit chain",
            Fault::TxShort => "dropped a transmit chain too short for a frame",
            Fault::TxOversized => "dropped an oversized transmit frame",
            Fault::RxMalformed => "returned a malformed receive chain unused",
            Fault::RxTooBig => "dropped a received frame larger than the guest's buffers",
            Fault::RxOversized => "skipped an oversized frame from the backend",
            Fault::RxRunt => "skipped a runt frame from the backend",
        }
    }
}

/// Counters of one interface, shared between its worker and whoever reports on the VM.
#[derive(Debug, Default)]
pub struct NetMetrics {
    faults: [AtomicU64; Fault::ALL.len()],
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx_dropped_closed: AtomicU64,
}

impl NetMetrics {
    /// How often `fault` happened.
    pub fn faults(&self, fault: Fault) -> u64 {
        self.faults[fault.index()].load(Ordering::Relaxed)
    }

    /// All faults, added up.
    pub fn total_faults(&self) -> u64 {
        Fault::ALL.iter().map(|f| self.faults(*f)).sum()
    }

    /// Counts `fault`; returns the log line for it unless rate limiting drops it.
    pub fn count(&self, label: &str, fault: Fault, detail: &str) -> Option<String> {
        let n = self.faults[fault.index()].fetch_add(1, Ordering::Relaxed) + 1;
        if !should_log(n) {
            return None;
        }
        let tail = match n {
            n if n == LOG_FIRST => " (further ones are logged at powers of two)".to_string(),
            n if n > LOG_FIRST => format!(" ({n} so far)"),
            _ => String::new(),
        };
        Some(format!(
            "nook-vmm: {label}: {}: {detail}{tail}",
            fault.describe()
        ))
    }

    /// Frames sent to the backend.
    pub fn tx_frames(&self) -> u64 {
        self.tx_frames.load(Ordering::Relaxed)
    }

    /// Frames delivered to the guest.
    pub fn rx_frames(&self) -> u64 {
        self.rx_frames.load(Ordering::Relaxed)
    }

    /// Bytes (frames only) sent to the backend.
    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes.load(Ordering::Relaxed)
    }

    /// Bytes (frames only) delivered to the guest.
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes.load(Ordering::Relaxed)
    }

    /// Guest frames dropped because the backend was gone.
    pub fn tx_dropped_closed(&self) -> u64 {
        self.tx_dropped_closed.load(Ordering::Relaxed)
    }

    pub(super) fn sent(&self, bytes: usize) {
        self.tx_frames.fetch_add(1, Ordering::Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn received(&self, bytes: usize) {
        self.rx_frames.fetch_add(1, Ordering::Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn dropped_closed(&self) {
        self.tx_dropped_closed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_counted_and_thinned_out_on_its_own() {
        let m = NetMetrics::default();
        let lines: Vec<_> = (0..20)
            .filter_map(|_| m.count("net0", Fault::TxMalformed, "x"))
            .collect();
        assert_eq!(lines.len(), 9, "{lines:?}"); // 1..=8 and 16
        assert!(lines[0].starts_with("nook-vmm: net0: dropped a malformed transmit chain: x"));
        assert!(lines[8].ends_with("(16 so far)"), "{}", lines[8]);
        // Another kind starts its own count.
        assert!(m.count("net0", Fault::RxRunt, "y").is_some());
        assert_eq!(m.faults(Fault::TxMalformed), 20);
        assert_eq!(m.faults(Fault::RxRunt), 1);
        assert_eq!(m.total_faults(), 21);
    }
}
