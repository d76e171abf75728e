//! The virtio-mmio transport (version 2 register layout): one bus device for any virtio device.
//!
//! Everything the driver writes is checked here before it reaches a device: features must be a
//! subset of the offer and include VERSION_1, queues are configured only between FEATURES_OK and
//! DRIVER_OK, and a queue is only activated when its size and rings fit guest memory.

use std::sync::Arc;

use seccompiler::BpfProgram;
use virtio_bindings::bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as STATUS_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER as STATUS_DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK as STATUS_DRIVER_OK, VIRTIO_CONFIG_S_FAILED as STATUS_FAILED,
    VIRTIO_CONFIG_S_FEATURES_OK as STATUS_FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET as STATUS_NEEDS_RESET,
};
use virtio_bindings::bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use serde::{Deserialize, Serialize};

use super::park::{DeviceSnapshot, Parked, Parking, QueueSnapshot};
use super::{Activation, Interrupt, VirtioDevice, F_VERSION_1, INT_CONFIG, INT_VRING};
use crate::bus::BusDevice;
use crate::exit::ExitSignal;
use crate::memory::GuestMemory;

/// The magic value ("virt" in little-endian ASCII); virtio-bindings only has its offset.
const MAGIC: u32 = 0x7472_6976;
/// The register layout version: 2 is the modern (non-legacy) layout.
const VERSION: u32 = 2;
const VENDOR: u32 = 0x4b4f_4f4e; // "NOOK"

/// Start of the device-specific configuration space.
pub const CONFIG_OFFSET: u64 = VIRTIO_MMIO_CONFIG as u64;
/// Offset of the QueueNotify register (wired to an ioeventfd).
pub const QUEUE_NOTIFY_OFFSET: u64 = VIRTIO_MMIO_QUEUE_NOTIFY as u64;

/// One virtio device behind the MMIO register window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    queues: Vec<Queue>,
    queue_events: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    exit: Arc<ExitSignal>,
    filter: Option<Arc<BpfProgram>>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    config_generation: u32,
    activated: bool,
    parking: Arc<Parking>,
}

/// A transport and its device as a snapshot keeps them: the registers the driver wrote, the
/// interrupt status and the queues (where the worker left them, once activated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioState {
    /// The virtio device id: a restore checks it is the same kind of device.
    pub device_type: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub status: u32,
    pub config_generation: u32,
    pub activated: bool,
    pub interrupt_status: u32,
    pub queues: Vec<QueueSnapshot>,
    /// What the device's worker kept beyond its queues.
    pub device: DeviceSnapshot,
}

/// Why a transport's state cannot be taken or set back.
#[derive(Debug, thiserror::Error)]
pub enum MmioStateError {
    /// The device cannot be snapshotted (its rings are served by another process).
    #[error("{0}: this device cannot be snapshotted")]
    Unsupported(String),
    /// The worker did not leave its queues (it had not ended).
    #[error("{0}: its worker did not park its queues")]
    NotParked(String),
    /// The state is of another device, or its queues do not fit.
    #[error("{device}: {why}")]
    Mismatch {
        /// Device name.
        device: String,
        /// What differs.
        why: String,
    },
}

/// Errors while building a transport.
#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    /// A queue eventfd could not be created.
    #[error("{device}: cannot create a queue eventfd")]
    EventFd {
        /// Device name.
        device: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The device declared an invalid queue size.
    #[error("{device}: invalid queue size")]
    Queue {
        /// Device name.
        device: String,
    },
}

impl MmioTransport {
    /// Wraps `device`; `interrupt` raises its IOAPIC pin.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        interrupt: Arc<Interrupt>,
        exit: Arc<ExitSignal>,
        filter: Option<Arc<BpfProgram>>,
    ) -> Result<Self, MmioError> {
        let name = device.name().to_string();
        let mut queues = Vec::new();
        let mut queue_events = Vec::new();
        for &max in device.queue_max_sizes() {
            queues.push(Queue::new(max).map_err(|_| MmioError::Queue {
                device: name.clone(),
            })?);
            queue_events.push(EventFd::new(libc::EFD_NONBLOCK).map_err(|source| {
                MmioError::EventFd {
                    device: name.clone(),
                    source,
                }
            })?);
        }
        Ok(Self {
            device,
            mem,
            queues,
            queue_events,
            interrupt,
            exit,
            filter,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            config_generation: 0,
            activated: false,
            parking: Arc::new(Parking::default()),
        })
    }

    /// The state of the transport and its queues, once the VM stopped (an activated device's
    /// worker has then parked its queues).
    pub fn snapshot(&self) -> Result<MmioState, MmioStateError> {
        let name = || self.device.name().to_string();
        if !self.device.can_snapshot() {
            return Err(MmioStateError::Unsupported(name()));
        }
        let Parked { queues, device } = if self.activated {
            self.parking
                .take()
                .ok_or_else(|| MmioStateError::NotParked(name()))?
        } else {
            Parked {
                queues: self.queues.iter().map(QueueSnapshot::of).collect(),
                device: DeviceSnapshot::Stateless,
            }
        };
        Ok(MmioState {
            device_type: self.device.device_type(),
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            status: self.status,
            config_generation: self.config_generation,
            activated: self.activated,
            interrupt_status: self.interrupt.status(),
            queues,
            device,
        })
    }

    /// Sets `state` back into this fresh transport: an activated device is activated again
    /// with its queues where they were, and the driver is interrupted for anything that
    /// happened meanwhile. The device's configuration is this VM's (a disk may have another
    /// size): the driver is told it changed.
    pub fn restore(&mut self, state: &MmioState) -> Result<(), MmioStateError> {
        let name = self.device.name().to_string();
        let mismatch = |why: String| MmioStateError::Mismatch {
            device: name.clone(),
            why,
        };
        if self.activated || self.status != 0 {
            return Err(mismatch("the transport is already in use".into()));
        }
        if !self.device.can_snapshot() {
            return Err(MmioStateError::Unsupported(self.device.name().to_string()));
        }
        if state.device_type != self.device.device_type() {
            return Err(mismatch(format!(
                "the snapshot has device type {} here, this VM has {}",
                state.device_type,
                self.device.device_type()
            )));
        }
        let maxes: Vec<u16> = state.queues.iter().map(|q| q.max_size).collect();
        if maxes != self.device.queue_max_sizes() {
            return Err(mismatch(format!(
                "queue sizes {maxes:?}, the device has {:?}",
                self.device.queue_max_sizes()
            )));
        }
        if state.driver_features & !self.device.features() != 0 {
            return Err(mismatch(format!(
                "the driver accepted features {:#x} this device does not offer",
                state.driver_features & !self.device.features()
            )));
        }
        if !state.device.fits(state.device_type, state.activated) {
            return Err(mismatch(format!(
                "its worker's state {:?} is not one of this device",
                state.device
            )));
        }
        let mut queues = Vec::with_capacity(state.queues.len());
        for (i, q) in state.queues.iter().enumerate() {
            let queue = q
                .to_queue()
                .map_err(|e| mismatch(format!("queue {i}: {e}")))?;
            if state.activated && !(queue.ready() && queue.is_valid(&self.mem)) {
                return Err(mismatch(format!("queue {i} does not fit guest memory")));
            }
            queues.push(queue);
        }
        self.queues = queues;
        self.device_features_sel = state.device_features_sel;
        self.driver_features_sel = state.driver_features_sel;
        self.driver_features = state.driver_features;
        self.queue_sel = state.queue_sel;
        self.status = state.status;
        self.config_generation = state.config_generation;
        if state.activated {
            self.activate(state.device);
            if !self.activated {
                return Err(mismatch("it could not be activated again".into()));
            }
            // Whatever the driver posted while the snapshot was taken gets looked at.
            for event in &self.queue_events {
                let _ = event.write(1);
            }
            self.config_changed();
        }
        let pending = state.interrupt_status & (INT_VRING | INT_CONFIG);
        if pending != 0 {
            self.interrupt.trigger(pending);
        }
        Ok(())
    }

    /// Tells the driver the device's configuration changed (a disk of another size after a
    /// restore): the generation moves and a configuration interrupt is raised.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        self.interrupt.trigger(INT_CONFIG);
    }

    /// The queue notification eventfds, for KVM ioeventfd registration.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// The device name.
    pub fn name(&self) -> &str {
        self.device.name()
    }

    /// The driver status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        // Queue registers only mean something while the driver configures the device.
        let configuring =
            self.status & STATUS_FEATURES_OK != 0 && self.status & STATUS_DRIVER_OK == 0;
        if !configuring {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        if self.activated {
            // A running worker cannot be taken back: report that a VM reset is needed instead.
            self.status |= STATUS_NEEDS_RESET;
            self.interrupt.trigger(INT_CONFIG);
            return;
        }
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt.ack(u32::MAX);
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        if value & STATUS_FAILED != 0 {
            self.status |= STATUS_FAILED;
            return;
        }
        // Bits only ever get added, in order; anything else is ignored.
        if value & self.status != self.status {
            return;
        }
        let new = value & !self.status;
        let allowed = match self.status {
            0 => STATUS_ACKNOWLEDGE,
            s if s == STATUS_ACKNOWLEDGE => STATUS_DRIVER,
            s if s == STATUS_ACKNOWLEDGE | STATUS_DRIVER => STATUS_FEATURES_OK,
            s if s == STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK => STATUS_DRIVER_OK,
            _ => 0,
        };
        if new != allowed {
            return;
        }
        match new {
            STATUS_FEATURES_OK => {
                let offered = self.device.features();
                let ok =
                    self.driver_features & !offered == 0 && self.driver_features & F_VERSION_1 != 0;
                // Leaving FEATURES_OK unset tells the driver its selection was refused.
                if ok {
                    self.status = value;
                }
            }
            STATUS_DRIVER_OK => {
                self.status = value;
                self.activate(DeviceSnapshot::Stateless);
            }
            _ => self.status = value,
        }
    }

    /// Activates the device; `restored` is its worker's state when a restore activates it.
    fn activate(&mut self, restored: DeviceSnapshot) {
        let ready_and_valid = self
            .queues
            .iter()
            .all(|q| q.ready() && q.is_valid(&self.mem));
        if !ready_and_valid {
            self.status |= STATUS_NEEDS_RESET;
            self.interrupt.trigger(INT_CONFIG);
            return;
        }
        let events: Result<Vec<EventFd>, _> =
            self.queue_events.iter().map(EventFd::try_clone).collect();
        let result = events
            .map_err(|source| super::ActivateError::Io {
                device: "virtio-mmio",
                what: "cannot duplicate a queue eventfd",
                source,
            })
            .and_then(|queue_events| {
                self.device.activate(Activation {
                    mem: self.mem.clone(),
                    queues: std::mem::take(&mut self.queues),
                    queue_events,
                    acked_features: self.driver_features,
                    interrupt: self.interrupt.clone(),
                    exit: self.exit.clone(),
                    filter: self.filter.clone(),
                    parking: self.parking.clone(),
                    restored,
                })
            });
        match result {
            Ok(()) => self.activated = true,
            Err(e) => {
                eprintln!("nook-vmm: {}: activation failed: {e}", self.device.name());
                self.status |= STATUS_NEEDS_RESET;
                self.interrupt.trigger(INT_CONFIG);
            }
        }
    }

    /// Reads the register at `offset` (below the config space, so it fits a u32).
    fn read_register(&mut self, offset: u32) -> u32 {
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => {
                let features = self.device.features();
                match self.device_features_sel {
                    0 => features as u32,
                    1 => (features >> 32) as u32,
                    _ => 0,
                }
            }
            VIRTIO_MMIO_QUEUE_NUM_MAX => {
                self.selected_queue().map_or(0, |q| u32::from(q.max_size()))
            }
            VIRTIO_MMIO_QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            VIRTIO_MMIO_STATUS if self.interrupt.is_broken() => self.status | STATUS_NEEDS_RESET,
            VIRTIO_MMIO_STATUS => self.status,
            VIRTIO_MMIO_CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    /// Writes the register at `offset` (below the config space, so it fits a u32).
    fn write_register(&mut self, offset: u32, value: u32) {
        let set_low_high = |old: u64, high: bool| -> u64 {
            if high {
                (old & 0xffff_ffff) | (u64::from(value) << 32)
            } else {
                (old & !0xffff_ffff) | u64::from(value)
            }
        };
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            // Features may only change before FEATURES_OK.
            VIRTIO_MMIO_DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => self.driver_features = set_low_high(self.driver_features, false),
                    1 => self.driver_features = set_low_high(self.driver_features, true),
                    _ => {}
                }
            }
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    // Invalid sizes (zero, too big, not a power of two) are refused by the queue.
                    if q.try_set_size(u16::try_from(value).unwrap_or(0)).is_err() {
                        q.set_size(0);
                    }
                }
            }
            VIRTIO_MMIO_QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => {
                // Normally caught by the ioeventfd; handle a notify that reached us anyway.
                if let Some(evt) = self.queue_events.get(value as usize) {
                    let _ = evt.write(1);
                }
            }
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(value),
            VIRTIO_MMIO_STATUS => self.write_status(value),
            VIRTIO_MMIO_QUEUE_DESC_LOW | VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                if let Some(q) = self.selected_queue() {
                    let high = offset == VIRTIO_MMIO_QUEUE_DESC_HIGH;
                    let addr = set_low_high(q.desc_table(), high);
                    q.set_desc_table_address(Some(addr as u32), Some((addr >> 32) as u32));
                }
            }
            VIRTIO_MMIO_QUEUE_AVAIL_LOW | VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                if let Some(q) = self.selected_queue() {
                    let high = offset == VIRTIO_MMIO_QUEUE_AVAIL_HIGH;
                    let addr = set_low_high(q.avail_ring(), high);
                    q.set_avail_ring_address(Some(addr as u32), Some((addr >> 32) as u32));
                }
            }
            VIRTIO_MMIO_QUEUE_USED_LOW | VIRTIO_MMIO_QUEUE_USED_HIGH => {
                if let Some(q) = self.selected_queue() {
                    let high = offset == VIRTIO_MMIO_QUEUE_USED_HIGH;
                    let addr = set_low_high(q.used_ring(), high);
                    q.set_used_ring_address(Some(addr as u32), Some((addr >> 32) as u32));
                }
            }
            _ => {}
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            self.device.read_config(offset - CONFIG_OFFSET, data);
            return;
        }
        // Registers are 32-bit and aligned; other accesses read as zero.
        let register = u32::try_from(offset).ok().filter(|o| o % 4 == 0);
        match register {
            Some(register) if data.len() == 4 => {
                data.copy_from_slice(&self.read_register(register).to_le_bytes());
            }
            _ => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            // Config writes are only meaningful before the device runs.
            if !self.activated {
                self.device.write_config(offset - CONFIG_OFFSET, data);
                self.config_generation = self.config_generation.wrapping_add(1);
            }
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if let Some(register) = u32::try_from(offset).ok().filter(|o| o % 4 == 0) {
            self.write_register(register, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod state_tests;
