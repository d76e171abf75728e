//! Port I/O and MMIO dispatch: address ranges mapped to devices.
//!
//! vCPU threads look up the device owning an exit address and call it with the offset inside its
//! range. Accesses nobody owns read as all ones and ignore writes, like an empty PC bus.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device reachable through port I/O or MMIO.
pub trait BusDevice: Send {
    /// Guest read of `data.len()` bytes at `offset` inside the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest write of `data` at `offset` inside the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between vCPU threads.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors while inserting a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// Zero-length or wrapping range.
    #[error("bus range {base:#x}+{len:#x} is empty or wraps around")]
    BadRange {
        /// Start.
        base: u64,
        /// Length.
        len: u64,
    },
    /// Overlaps a device already present.
    #[error("bus range {base:#x}+{len:#x} overlaps a device already on the bus")]
    Overlap {
        /// Start.
        base: u64,
        /// Length.
        len: u64,
    },
}

/// Non-overlapping ranges, keyed by base address.
#[derive(Default, Clone)]
pub struct Bus {
    ranges: BTreeMap<u64, (u64, SharedDevice)>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `device` at `base..base+len`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(BusError::BadRange { base, len });
        }
        let end = base + len;
        let before = self.ranges.range(..end).next_back();
        if let Some((&b, &(l, _))) = before {
            if b + l > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.ranges.insert(base, (len, device));
        Ok(())
    }

    fn resolve(&self, addr: u64, size: usize) -> Option<(u64, &SharedDevice)> {
        let (&base, (len, device)) = self.ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        // The whole access must fit inside the device's range.
        (offset.checked_add(size as u64)? <= *len).then_some((offset, device))
    }

    /// Dispatches a read; returns false (and fills all ones) when no device owns the address.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, device)) => {
                lock(device).read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a write; returns false when no device owns the address.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, device)) => {
                lock(device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, ignoring poisoning: a panicking vCPU thread already stops the VM, and the
/// device state itself stays consistent at the granularity of one register access.
fn lock(device: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Scratch(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Scratch {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_offset_and_rejects_overlaps() {
        let dev = Arc::new(Mutex::new(Scratch::default()));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        assert_eq!(
            bus.insert(dev.clone(), 0x10f, 1),
            Err(BusError::Overlap {
                base: 0x10f,
                len: 1
            })
        );
        assert_eq!(
            bus.insert(dev.clone(), 0xf8, 0x10),
            Err(BusError::Overlap {
                base: 0xf8,
                len: 0x10
            })
        );
        assert!(bus.insert(dev.clone(), u64::MAX, 2).is_err());
        bus.insert(dev.clone(), 0x110, 1).unwrap();

        let mut data = [0u8; 2];
        assert!(bus.read(0x104, &mut data));
        assert_eq!(data, [4, 4]);
        assert!(bus.write(0x10e, &[1, 2]));
        assert_eq!(dev.lock().unwrap().0, vec![(0xe, vec![1, 2])]);
        // Straddling the end of a range is nobody's access.
        assert!(!bus.read(0x10f, &mut data));
        assert_eq!(data, [0xff, 0xff]);
        assert!(!bus.write(0x200, &[0]));
    }
}
