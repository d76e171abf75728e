//! virtio-console with a single port (no MULTIPORT): the agent channel. Bytes the guest sends
//! on the transmit queue go to a host Unix stream socket; bytes from the socket fill the buffers
//! the guest posts on the receive queue.

#[cfg(test)]
mod tests;
mod worker;

use std::os::unix::net::UnixStream;

pub use self::worker::{Channel, ChannelState};
use super::{ActivateError, Activation, VirtioDevice, TYPE_CONSOLE, VIRTIO_F_VERSION_1};
use crate::thread;

const QUEUE_SIZE: u16 = 256;

/// The console device; the socket moves to the worker thread on activation.
pub struct Console {
    name: String,
    stream: Option<UnixStream>,
    queue_sizes: [u16; 2],
}

impl Console {
    /// A console bridged to `stream` (already connected to the host side). The stream is made
    /// non-blocking here, before any thread runs under seccomp.
    pub fn new(name: String, stream: UnixStream) -> std::io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            name,
            stream: Some(stream),
            queue_sizes: [QUEUE_SIZE; 2],
        })
    }
}

impl VirtioDevice for Console {
    fn name(&self) -> &str {
        &self.name
    }
    fn device_type(&self) -> u32 {
        TYPE_CONSOLE
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports, emerg_wr: all zero without SIZE, MULTIPORT or EMERG_WRITE.
        super::read_config_bytes(&[0u8; 12], offset, data);
    }
    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let device = "virtio-console";
        let got = a.queues.len();
        let mut queues = a.queues.into_iter();
        let mut events = a.queue_events.into_iter();
        let (Some(rxq), Some(txq), Some(rx_evt), Some(tx_evt)) =
            (queues.next(), queues.next(), events.next(), events.next())
        else {
            return Err(ActivateError::QueueCount {
                device,
                expected: 2,
                got,
            });
        };
        let stream = self
            .stream
            .take()
            .ok_or(ActivateError::AlreadyActive { device })?;
        let mut channel = Channel::new(rxq, txq, a.mem, stream, a.interrupt);
        // Before the guest runs again: the driver fills the receive queue right after DRIVER_OK.
        channel.quiet_rx();
        let exit = a.exit.clone();
        thread::spawn(&self.name, a.filter, a.exit, move || {
            channel.run(rx_evt, tx_evt, &exit)
        })?;
        Ok(())
    }
}
