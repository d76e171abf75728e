//! The one function that plugs a virtio device into the VM: MMIO window, IOAPIC pin through an
//! irqfd, QueueNotify through ioeventfds, and the `virtio_mmio.device=` command line entry that
//! tells the kernel where to find it.

use std::sync::{Arc, Mutex};

use linux_loader::cmdline::Cmdline;
use seccompiler::BpfProgram;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::mmio::{MmioError, MmioTransport, QUEUE_NOTIFY_OFFSET};
use super::{Interrupt, VirtioDevice};
use crate::bus::BusError;
use crate::exit::ExitSignal;
use crate::kvm::vcpu::Buses;
use crate::kvm::vm::Vm;
use crate::kvm::KvmError;
use crate::layout::{IRQ_MAX, VIRTIO_IRQ_BASE, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_START};
use crate::memory::GuestMemory;

/// Errors while wiring a device.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// No IOAPIC pin left.
    #[error("no interrupt line left for virtio device {index} ({name})")]
    NoIrq {
        /// Slot index.
        index: u32,
        /// Device name.
        name: String,
    },
    /// The irqfd could not be created.
    #[error("cannot create the irqfd of {name}")]
    EventFd {
        /// Device name.
        name: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A KVM registration failed.
    #[error("cannot wire {name} into KVM")]
    Kvm {
        /// Device name.
        name: String,
        /// Cause.
        #[source]
        source: KvmError,
    },
    /// The transport could not be built.
    #[error(transparent)]
    Transport(#[from] MmioError),
    /// The MMIO window is taken.
    #[error("cannot map {name} on the MMIO bus")]
    Bus {
        /// Device name.
        name: String,
        /// Cause.
        #[source]
        source: BusError,
    },
    /// The command line is full.
    #[error("cannot add {name} to the kernel command line")]
    Cmdline {
        /// Device name.
        name: String,
        /// Cause.
        #[source]
        source: linux_loader::cmdline::Error,
    },
}

/// Where slot `index` lives: (MMIO base, IOAPIC pin), or None past the last pin.
pub fn slot(index: u32) -> Option<(u64, u32)> {
    let irq = VIRTIO_IRQ_BASE
        .checked_add(index)
        .filter(|irq| *irq <= IRQ_MAX)?;
    Some((VIRTIO_MMIO_START + u64::from(index) * VIRTIO_MMIO_SIZE, irq))
}

/// Everything the wiring needs from the VM under construction.
pub struct WiringContext<'a> {
    /// The VM.
    pub vm: &'a Vm,
    /// Guest memory.
    pub mem: &'a GuestMemory,
    /// Buses the device is mapped on.
    pub buses: &'a mut Buses,
    /// Command line the device entry is appended to.
    pub cmdline: &'a mut Cmdline,
    /// VM exit signal.
    pub exit: &'a Arc<ExitSignal>,
    /// Seccomp filter for the device thread.
    pub filter: Option<Arc<BpfProgram>>,
}

/// Attaches `device` in slot `index`.
pub fn attach(
    ctx: &mut WiringContext<'_>,
    index: u32,
    device: Box<dyn VirtioDevice>,
) -> Result<Arc<Mutex<MmioTransport>>, WiringError> {
    let name = device.name().to_string();
    let (base, irq) = slot(index).ok_or_else(|| WiringError::NoIrq {
        index,
        name: name.clone(),
    })?;
    let kvm_err = |source| WiringError::Kvm {
        name: name.clone(),
        source,
    };
    let irqfd = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| WiringError::EventFd {
        name: name.clone(),
        source,
    })?;
    ctx.vm.register_irqfd(&irqfd, irq).map_err(kvm_err)?;
    let transport = MmioTransport::new(
        device,
        ctx.mem.clone(),
        Arc::new(Interrupt::new(irqfd)),
        ctx.exit.clone(),
        ctx.filter.clone(),
    )?;
    for (queue, event) in transport.queue_events().iter().enumerate() {
        ctx.vm
            .register_mmio_ioevent(event, base + QUEUE_NOTIFY_OFFSET, queue as u32)
            .map_err(kvm_err)?;
    }
    let transport = Arc::new(Mutex::new(transport));
    ctx.buses
        .mmio
        .insert(transport.clone(), base, VIRTIO_MMIO_SIZE)
        .map_err(|source| WiringError::Bus {
            name: name.clone(),
            source,
        })?;
    ctx.cmdline
        .add_virtio_mmio_device(VIRTIO_MMIO_SIZE, GuestAddress(base), irq, None)
        .map_err(|source| WiringError::Cmdline { name, source })?;
    Ok(transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_last_ioapic_pin() {
        assert_eq!(slot(0), Some((VIRTIO_MMIO_START, VIRTIO_IRQ_BASE)));
        assert_eq!(slot(1).unwrap().0, VIRTIO_MMIO_START + VIRTIO_MMIO_SIZE);
        assert_eq!(slot(IRQ_MAX - VIRTIO_IRQ_BASE).unwrap().1, IRQ_MAX);
        assert_eq!(slot(IRQ_MAX - VIRTIO_IRQ_BASE + 1), None);
        assert_eq!(slot(u32::MAX), None);
    }
}
