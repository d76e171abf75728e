//! virtio devices and their MMIO transport.
//!
//! A device owns its features, config space, queues and activation ([`VirtioDevice`]); it does
//! not know the transport. [`mmio::MmioTransport`] is the one bus device that speaks the
//! virtio-mmio register layout for any device, and [`wiring::attach`] plugs a transport into the
//! VM (bus slot, ioeventfd, irqfd and the `virtio_mmio.device=` command line entry).

pub mod block;
pub mod console;
pub mod fs;
pub mod mmio;
pub mod net;
pub mod park;
pub mod wiring;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use seccompiler::BpfProgram;
use virtio_bindings::bindings::{virtio_config, virtio_mmio};
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use crate::exit::ExitSignal;
use crate::memory::GuestMemory;

/// The feature mask of feature bit `bit` (virtio-bindings gives bit numbers).
pub const fn feature(bit: u32) -> u64 {
    1 << bit
}

/// VIRTIO_F_VERSION_1: the only (modern) interface we speak.
pub const F_VERSION_1: u64 = feature(virtio_config::VIRTIO_F_VERSION_1);

/// Interrupt status bit: a used ring was updated.
pub const INT_VRING: u32 = virtio_mmio::VIRTIO_MMIO_INT_VRING;
/// Interrupt status bit: the configuration changed (or the device needs a reset).
pub const INT_CONFIG: u32 = virtio_mmio::VIRTIO_MMIO_INT_CONFIG;

/// The interrupt line of one device: the status register the driver reads plus the irqfd that
/// raises its IOAPIC pin.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    /// Bits that always read as set (see [`Interrupt::hold`]).
    held: AtomicU32,
    broken: AtomicBool,
    irqfd: EventFd,
}

impl Interrupt {
    /// An interrupt raised through `irqfd`.
    pub fn new(irqfd: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            held: AtomicU32::new(0),
            broken: AtomicBool::new(false),
            irqfd,
        }
    }

    /// Marks the device broken (the driver broke the queue protocol): the transport reports
    /// DEVICE_NEEDS_RESET and the driver gets a config interrupt.
    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::SeqCst);
        self.trigger(INT_CONFIG);
    }

    /// Whether the device gave up on its queues.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Sets `bits` in the status register and raises the line.
    pub fn trigger(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        // The counter saturating cannot happen in practice, and a lost edge is recovered by
        // the next one; there is nobody to report a failure to from a device thread anyway.
        let _ = self.irqfd.write(1);
    }

    /// Makes `bits` read as set from now on, whatever the driver acknowledges. For a device
    /// whose used rings are written by another process (vhost-user): that process signals the
    /// irqfd directly and cannot set the status register, so the register must always say
    /// "used ring updated" for the driver to look at its queues on every interrupt.
    pub fn hold(&self, bits: u32) {
        self.held.fetch_or(bits, Ordering::SeqCst);
    }

    /// The status register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst) | self.held.load(Ordering::SeqCst)
    }

    /// Clears the bits the driver acknowledged.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// The irqfd (for KVM registration).
    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }
}

/// Everything a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    /// Guest memory.
    pub mem: GuestMemory,
    /// The queues as the driver configured them, already validated against memory.
    pub queues: Vec<Queue>,
    /// One eventfd per queue, signalled by KVM on QueueNotify writes.
    pub queue_events: Vec<EventFd>,
    /// Features the driver accepted.
    pub acked_features: u64,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
    /// Stops the VM; device threads also watch it to end.
    pub exit: Arc<ExitSignal>,
    /// Seccomp filter for the device's thread.
    pub filter: Option<Arc<BpfProgram>>,
    /// Where the device's worker leaves its queues when the VM stops.
    pub parking: Arc<park::Parking>,
    /// The worker's own state when the device is activated again by a restore
    /// (`Stateless` at a boot).
    pub restored: park::DeviceSnapshot,
}

/// Errors of activation.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The device was given the wrong number of queues.
    #[error("{device}: expected {expected} queues, got {got}")]
    QueueCount {
        /// Device name.
        device: &'static str,
        /// Queues it needs.
        expected: usize,
        /// Queues given.
        got: usize,
    },
    /// The device was activated twice.
    #[error("{device}: already activated")]
    AlreadyActive {
        /// Device name.
        device: &'static str,
    },
    /// The worker thread could not start.
    #[error(transparent)]
    Spawn(#[from] crate::thread::SpawnError),
    /// A vhost-user backend refused or failed the start of its rings.
    #[error(transparent)]
    Fs(#[from] fs::FsError),
    /// An fd could not be duplicated or registered.
    #[error("{device}: {what}")]
    Io {
        /// Device name.
        device: &'static str,
        /// What was attempted.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why a device worker thread stopped serving its queues.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The epoll instance could not be created.
    #[error("cannot create the worker's epoll instance")]
    EpollCreate(#[source] std::io::Error),
    /// A descriptor could not be added to or changed in the epoll set.
    #[error("cannot {op} a descriptor in the worker's epoll set")]
    EpollCtl {
        /// "add" or "modify".
        op: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for events failed.
    #[error("waiting for the worker's events failed")]
    EpollWait(#[source] std::io::Error),
}

/// A virtio device, independent of its transport.
pub trait VirtioDevice: Send {
    /// Short name for messages and thread names ("virtio-blk0").
    fn name(&self) -> &str;
    /// The virtio device id.
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features offered to the driver (must include VIRTIO_F_VERSION_1).
    fn features(&self) -> u64;
    /// Reads the device-specific config space; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific config space (ignored by devices whose config is read-only).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts serving the queues.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Whether the device's state can be snapshotted: its worker parks its queues when the VM
    /// stops, and the rest of its state is its configuration. A device whose rings another
    /// process serves (vhost-user) says no.
    fn can_snapshot(&self) -> bool {
        true
    }
}

/// Copies `config[offset..]` into `data`, zero-filling what lies past the end (a hostile or
/// buggy driver may read anywhere in the window).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= config.len() {
        return;
    }
    let n = data.len().min(config.len() - start);
    data[..n].copy_from_slice(&config[start..start + n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_are_bounded() {
        let config = [1u8, 2, 3, 4];
        let mut data = [9u8; 4];
        read_config_bytes(&config, 2, &mut data);
        assert_eq!(data, [3, 4, 0, 0]);
        read_config_bytes(&config, u64::MAX, &mut data);
        assert_eq!(data, [0; 4]);
    }

    #[test]
    fn interrupt_status_bits() {
        let irq = Interrupt::new(EventFd::new(0).unwrap());
        irq.trigger(INT_VRING);
        irq.trigger(INT_CONFIG);
        assert_eq!(irq.status(), 3);
        irq.ack(INT_VRING);
        assert_eq!(irq.status(), INT_CONFIG);
        assert_eq!(irq.irqfd().read().unwrap(), 2);
        irq.hold(INT_VRING);
        irq.ack(u32::MAX);
        assert_eq!(irq.status(), INT_VRING);
    }
}
