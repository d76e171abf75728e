//! virtio-console with one generic port (MULTIPORT, `max_nr_ports` 1): the agent channel.
//! Bytes the guest sends on the port's transmit queue go to a host Unix stream socket; bytes
//! from the socket fill the buffers the guest posts on the port's receive queue. The control
//! queues name the port and open it (see [`control`]); the guest sees `/dev/vportNp0`, not an
//! hvc console.

pub mod control;
#[cfg(test)]
mod tests;
mod worker;

use std::os::unix::net::UnixStream;

use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use vm_memory::ByteValued;

pub use self::worker::{Channel, ChannelState};
use super::park::DeviceSnapshot;
use super::{ActivateError, Activation, VirtioDevice, F_VERSION_1};
use crate::thread;

const QUEUE_SIZE: u16 = 256;
const CONTROL_QUEUE_SIZE: u16 = 32;

/// `struct virtio_console_config` (virtio-bindings has no console module). Only
/// `max_nr_ports` (1) means something: VIRTIO_CONSOLE_F_SIZE and F_EMERG_WRITE are not offered.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Terminal columns.
    pub cols: u16,
    /// Terminal rows.
    pub rows: u16,
    /// Most ports (MULTIPORT).
    pub max_nr_ports: u32,
    /// Emergency write register (EMERG_WRITE).
    pub emerg_wr: u32,
}

// SAFETY: ConsoleConfig is repr(C) with two u16 then two u32: no padding (12 bytes, checked
// below), and every bit pattern of those integers is a valid value.
unsafe impl ByteValued for ConsoleConfig {}

const _: () = assert!(std::mem::size_of::<ConsoleConfig>() == 12);

/// The console device; the socket moves to the worker thread on activation.
pub struct Console {
    name: String,
    stream: Option<UnixStream>,
    queue_sizes: [u16; 4],
    config: ConsoleConfig,
}

impl Console {
    /// A console bridged to `stream` (already connected to the host side). The stream is made
    /// non-blocking here, before any thread runs under seccomp.
    pub fn new(name: String, stream: UnixStream) -> std::io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            name,
            stream: Some(stream),
            queue_sizes: [
                QUEUE_SIZE,
                QUEUE_SIZE,
                CONTROL_QUEUE_SIZE,
                CONTROL_QUEUE_SIZE,
            ],
            config: ConsoleConfig {
                max_nr_ports: 1,
                ..ConsoleConfig::default()
            },
        })
    }
}

impl VirtioDevice for Console {
    fn name(&self) -> &str {
        &self.name
    }
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn features(&self) -> u64 {
        F_VERSION_1 | control::F_MULTIPORT
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(self.config.as_slice(), offset, data);
    }
    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let device = "virtio-console";
        let got = a.queues.len().min(a.queue_events.len());
        let mut queues = a.queues.into_iter();
        let mut events = a.queue_events.into_iter();
        let (Some(rxq), Some(txq), Some(crxq), Some(ctxq)) =
            (queues.next(), queues.next(), queues.next(), queues.next())
        else {
            return Err(ActivateError::QueueCount {
                device,
                expected: 4,
                got,
            });
        };
        let (Some(rx_evt), Some(tx_evt), Some(crx_evt), Some(ctx_evt)) =
            (events.next(), events.next(), events.next(), events.next())
        else {
            return Err(ActivateError::QueueCount {
                device,
                expected: 4,
                got,
            });
        };
        let stream = self
            .stream
            .take()
            .ok_or(ActivateError::AlreadyActive { device })?;
        // The transport activates only once every queue is ready: the driver took MULTIPORT.
        let mut control = control::Control::new(crxq, ctxq);
        if let DeviceSnapshot::Console { guest_open } = a.restored {
            control.guest_open = guest_open;
        }
        let mut channel = Channel::new(rxq, txq, a.mem, stream, a.interrupt).with_control(control);
        // Before the guest runs again: the driver fills the receive queue right after DRIVER_OK.
        channel.quiet_rx();
        let exit = a.exit.clone();
        let parking = a.parking;
        thread::spawn(&self.name, a.filter, a.exit, move || {
            let result = channel.run(rx_evt, tx_evt, Some((crx_evt, ctx_evt)), &exit);
            parking.park_with(channel.queue_snapshots(), channel.device_snapshot());
            result
        })?;
        Ok(())
    }
}
