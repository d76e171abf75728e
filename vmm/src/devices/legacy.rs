//! Legacy PC devices: the 8250 serial console (debugging only) and the i8042, whose reset line
//! is how the guest ends the VM (`reboot=k`).

use std::io::Write;
use std::sync::Arc;

use vm_superio::{I8042Device, Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;
use crate::exit::{ExitSignal, StopReason, VmExit};

/// Raises the VM exit when the guest pulses the i8042 reset line.
pub struct ResetTrigger(pub Arc<ExitSignal>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.stop(StopReason::Exit(VmExit::Reset));
        Ok(())
    }
}

/// The i8042 controller at ports 0x60-0x64.
pub struct I8042(I8042Device<ResetTrigger>);

impl I8042 {
    /// An i8042 whose reset command stops the VM through `exit`.
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        Self(I8042Device::new(ResetTrigger(exit)))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Status 0: input buffer empty, so the kernel's reset path does not wait.
        let value = u8::try_from(offset).map_or(0, |o| self.0.read(o));
        data.fill(0);
        data[0] = value;
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [value, ..]) = (u8::try_from(offset), data) {
            let Ok(()) = self.0.write(offset, *value);
        }
    }
}

/// Raises an IOAPIC pin through an irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// An 8250 UART whose output goes to `W`; guest input is not wired (debug output only).
pub struct SerialPort<W: Write + Send>(Serial<IrqTrigger, vm_superio::serial::NoEvents, W>);

impl<W: Write + Send> SerialPort<W> {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: EventFd, out: W) -> Self {
        Self(Serial::new(IrqTrigger(irq), out))
    }
}

impl<W: Write + Send> BusDevice for SerialPort<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0xff, |o| self.0.read(o));
        data.fill(0);
        data[0] = value;
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [value, ..]) = (u8::try_from(offset), data) {
            // A failed host write (closed stdout, full disk) loses debug output only.
            let _ = self.0.write(offset, *value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i8042_reset_command_stops_the_vm() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut dev = I8042::new(exit.clone());
        let mut status = [0xffu8];
        dev.read(4, &mut status);
        assert_eq!(status, [0]);
        dev.write(4, &[0xaa]);
        dev.write(0, &[0xfe]);
        assert!(!exit.is_stopping());
        dev.write(4, &[0xfe]);
        assert_eq!(exit.wait(None), Some(StopReason::Exit(VmExit::Reset)));
    }

    #[test]
    fn serial_writes_go_out() {
        let irq = EventFd::new(0).unwrap();
        let mut dev = SerialPort::new(irq, Vec::new());
        for b in b"hi" {
            dev.write(0, &[*b]);
        }
        assert_eq!(dev.0.writer(), b"hi");
    }
}
