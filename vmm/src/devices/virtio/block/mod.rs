//! virtio-blk: one request queue served by a worker thread; read-only and read-write disks,
//! flush and GET_ID.

pub mod config;
pub mod io;
pub mod metrics;
pub mod request;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::ByteValued;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use self::config::BlockConfig;
use self::io::{write_status, Disk, S_IOERR};
use self::metrics::DiskMetrics;
use self::request::{parse, SEG_MAX};
use super::park::QueueSnapshot;
use super::{
    feature, ActivateError, Activation, Interrupt, VirtioDevice, WorkerError, F_VERSION_1,
    INT_VRING,
};
use crate::exit::ExitSignal;
use crate::memory::GuestMemory;
use crate::thread;

const QUEUE_SIZE: u16 = 256;

/// A virtio-blk device before and after activation.
pub struct Block {
    name: String,
    disk: Option<Disk>,
    metrics: Arc<DiskMetrics>,
    features: u64,
    config: BlockConfig,
    queue_sizes: [u16; 1],
}

impl Block {
    /// A device serving `disk`, called `name` in messages.
    pub fn new(name: String, disk: Disk) -> Self {
        let mut features =
            F_VERSION_1 | feature(VIRTIO_BLK_F_SEG_MAX) | feature(VIRTIO_BLK_F_FLUSH);
        if disk.read_only() {
            features |= feature(VIRTIO_BLK_F_RO);
        }
        let config = BlockConfig::new(disk.sectors(), SEG_MAX);
        Self {
            name,
            metrics: disk.metrics(),
            disk: Some(disk),
            features,
            config,
            queue_sizes: [QUEUE_SIZE],
        }
    }

    /// The disk's counters (they outlive the device, for the VM's exit summary).
    pub fn metrics(&self) -> Arc<DiskMetrics> {
        self.metrics.clone()
    }
}

impl VirtioDevice for Block {
    fn name(&self) -> &str {
        &self.name
    }
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn features(&self) -> u64 {
        self.features
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(self.config.as_slice(), offset, data);
    }
    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let device = "virtio-blk";
        let (Some(queue), Some(event)) = (
            a.queues.into_iter().next(),
            a.queue_events.into_iter().next(),
        ) else {
            return Err(ActivateError::QueueCount {
                device,
                expected: 1,
                got: 0,
            });
        };
        let disk = self
            .disk
            .take()
            .ok_or(ActivateError::AlreadyActive { device })?;
        let worker = Worker {
            queue,
            mem: a.mem,
            disk,
            interrupt: a.interrupt,
        };
        let exit = a.exit.clone();
        let parking = a.parking;
        let mut worker = worker;
        thread::spawn(&self.name, a.filter, a.exit, move || {
            let result = worker.run(event, &exit);
            parking.park(vec![QueueSnapshot::of(&worker.queue)]);
            result
        })?;
        Ok(())
    }
}

/// The queue is unusable: the driver broke the ring protocol.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueBroken;

/// Serves the request queue.
pub struct Worker {
    /// The request queue.
    pub queue: Queue,
    /// Guest memory.
    pub mem: GuestMemory,
    /// The backing disk.
    pub disk: Disk,
    /// Where completions are signalled.
    pub interrupt: Arc<Interrupt>,
}

impl Worker {
    fn run(&mut self, event: EventFd, exit: &ExitSignal) -> Result<(), WorkerError> {
        let epoll = Epoll::new().map_err(WorkerError::EpollCreate)?;
        for (fd, token) in [
            (std::os::fd::AsRawFd::as_raw_fd(&event), 0),
            (std::os::fd::AsRawFd::as_raw_fd(exit.event()), 1),
        ] {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(|source| WorkerError::EpollCtl { op: "add", source })?;
        }
        let mut events = [EpollEvent::default(); 2];
        let mut broken = false;
        loop {
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WorkerError::EpollWait(e)),
            };
            for ev in &events[..n] {
                if ev.data() == 1 || exit.is_stopping() {
                    return Ok(());
                }
                let _ = event.read();
                if broken {
                    continue;
                }
                match self.process_queue() {
                    Ok(true) => self.interrupt.trigger(INT_VRING),
                    Ok(false) => {}
                    Err(QueueBroken) => {
                        broken = true;
                        self.interrupt.mark_broken();
                    }
                }
            }
        }
    }

    /// Serves every available request; returns whether the driver should be interrupted.
    pub fn process_queue(&mut self) -> Result<bool, QueueBroken> {
        let mem = &self.mem;
        let mut done = Vec::new();
        {
            let iter = self.queue.iter(mem).map_err(|_| QueueBroken)?;
            for chain in iter {
                let head = chain.head_index();
                let (status, used) = match parse(mem, chain) {
                    Ok(request) => {
                        let (status, used) = self.disk.execute(mem, &request);
                        (Some((request.status, status)), used)
                    }
                    Err((_, Some(at))) => (Some((at, S_IOERR)), 1),
                    Err((_, None)) => (None, 0),
                };
                let used = match status {
                    Some((at, status)) if write_status(mem, at, status) => used,
                    _ => 0,
                };
                done.push((head, used));
            }
        }
        for (head, used) in &done {
            self.queue
                .add_used(mem, *head, *used)
                .map_err(|_| QueueBroken)?;
        }
        if done.is_empty() {
            return Ok(false);
        }
        self.queue.needs_notification(mem).map_err(|_| QueueBroken)
    }
}
