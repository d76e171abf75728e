//! The port through which the guest's agent and the VMM agree on snapshots. A write asks for
//! a snapshot now (the agent does it once booted and idle, waiting for its container); it is
//! honoured only by a VMM told to write one, and ignored otherwise, so a guest cannot make
//! a VMM stop or write anything it was not asked to. A read says whether this VM was restored
//! from a snapshot (1) or booted (0): a restored agent then reseeds its random pool and takes
//! its container's settings from the host, since everything it booted with is the template's.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::exit::{ExitSignal, StopReason, VmExit};

/// The doorbell's port (unused by the PC devices Linux probes on this machine).
pub const PORT: u16 = 0x510;

/// The doorbell device.
pub struct Doorbell {
    exit: Arc<ExitSignal>,
    /// Whether a write stops the VM for a snapshot.
    armed: bool,
    /// Whether this VM was restored.
    restored: bool,
}

impl Doorbell {
    /// A doorbell that stops the VM for a snapshot when `armed`, and reads `restored`.
    pub fn new(exit: Arc<ExitSignal>, armed: bool, restored: bool) -> Self {
        Self {
            exit,
            armed,
            restored,
        }
    }
}

impl BusDevice for Doorbell {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = u8::from(self.restored);
        }
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {
        if self.armed {
            self.armed = false;
            self.exit.stop(StopReason::Exit(VmExit::Snapshotted));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_armed_doorbell_stops_the_vm() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut idle = Doorbell::new(exit.clone(), false, true);
        idle.write(0, &[1]);
        assert!(!exit.is_stopping());
        let mut byte = [9u8; 4];
        idle.read(0, &mut byte);
        assert_eq!(byte, [1, 0, 0, 0]);
        let mut armed = Doorbell::new(exit.clone(), true, false);
        armed.read(0, &mut byte);
        assert_eq!(byte, [0; 4]);
        armed.write(0, &[1]);
        assert_eq!(exit.wait(None), Some(StopReason::Exit(VmExit::Snapshotted)));
    }
}
