//! virtio-fs as a vhost-user device: the guest's FUSE requests go straight from its queues to a
//! `virtiofsd` process, which maps guest memory from the descriptors the VMM sends it.
//!
//! The VMM owns only the transport side: the config space (tag and number of request queues),
//! the feature negotiation with both the driver and the backend ([`frontend`]), and, when the
//! driver sets DRIVER_OK, handing the backend the memory table, the ring addresses, the
//! queues' ioeventfds as kick descriptors and the device's irqfd as the call descriptor of every
//! queue. No request passes through the VMM. A [`watch`] thread stops the VM with a clear error
//! when the backend goes away, since the guest's file system is gone with it.

pub mod config;
pub mod frontend;
#[cfg(test)]
mod tests;
pub mod watch;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_FS;
use vm_memory::ByteValued;

use self::config::{FsConfigSpace, InvalidTag};
use self::frontend::Backend;
use super::{feature, ActivateError, Activation, VirtioDevice, F_VERSION_1, INT_VRING};
use crate::thread;

/// Queues: the high-priority queue (FUSE interrupts and forgets) and one request queue.
pub const NUM_QUEUES: usize = 2;
/// Entries per queue.
pub const QUEUE_SIZE: u16 = 1024;

/// The virtio features the VMM lets through from the backend to the driver. The rings are the
/// backend's business, so their features are too; nothing else (no notification queue, no DAX
/// window: those need a shared memory region this VMM does not map).
pub const PASSED_FEATURES: u64 =
    F_VERSION_1 | feature(VIRTIO_RING_F_INDIRECT_DESC) | feature(VIRTIO_RING_F_EVENT_IDX);

/// Why a virtio-fs device could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag cannot be used.
    #[error(transparent)]
    Tag(#[from] InvalidTag),
    /// Nobody listens on the backend's socket.
    #[error("cannot connect to the virtiofsd socket {path} (virtiofsd must listen on it before the VM starts)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The socket could not be set up.
    #[error("cannot set up the virtiofsd socket {path}")]
    Socket {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A vhost-user exchange failed: the backend closed the socket, did not answer in time,
    /// answered something that is not a valid reply, or refused the request.
    #[error("virtiofsd for tag {tag}: {step} failed")]
    Protocol {
        /// The device's tag.
        tag: String,
        /// The request that failed.
        step: &'static str,
        /// Cause.
        #[source]
        source: vhost::Error,
    },
    /// The backend does not offer what the device needs.
    #[error("virtiofsd for tag {tag} does not offer {what} (features {features:#x})")]
    Feature {
        /// The device's tag.
        tag: String,
        /// What is missing.
        what: &'static str,
        /// What it offered.
        features: u64,
    },
    /// Guest memory is not backed by descriptors the backend could map.
    #[error("virtio-fs {tag}: guest memory is not shareable (the VM must map it from memfds)")]
    PrivateMemory {
        /// The device's tag.
        tag: String,
    },
    /// A ring does not lie in guest memory.
    #[error("virtio-fs {tag}: queue {queue} does not lie in guest memory")]
    Ring {
        /// The device's tag.
        tag: String,
        /// Queue index.
        queue: usize,
    },
    /// The backend closed its socket while the VM ran.
    #[error("virtiofsd serving tag {tag} ended (its socket {path} closed): the VM's shared directory is gone")]
    BackendGone {
        /// The device's tag.
        tag: String,
        /// Socket path.
        path: PathBuf,
    },
    /// The watch thread's epoll failed.
    #[error("virtio-fs {tag}: cannot watch the virtiofsd socket")]
    Watch {
        /// The device's tag.
        tag: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// One shared directory, served by the virtiofsd listening on `socket`.
pub struct Fs {
    name: String,
    tag: String,
    socket: PathBuf,
    config: FsConfigSpace,
    backend: Backend,
    /// The backend's socket, for the watch thread (taken at activation).
    watched: Option<UnixStream>,
    queue_sizes: [u16; NUM_QUEUES],
}

impl Fs {
    /// Connects to the virtiofsd listening on `socket` and negotiates what does not depend on
    /// the driver (owner, features, protocol features). Runs before the guest boots and before
    /// any thread is confined, so that the connection is made outside the seccomp filter.
    pub fn connect(name: String, tag: &str, socket: &Path) -> Result<Self, FsError> {
        let config = FsConfigSpace::new(tag, (NUM_QUEUES - 1) as u32)?;
        let stream = connect(socket)?;
        let watched = stream.try_clone().map_err(|source| FsError::Socket {
            path: socket.to_path_buf(),
            source,
        })?;
        let backend = Backend::handshake(tag, stream, socket)?;
        Ok(Self {
            name,
            tag: tag.to_string(),
            socket: socket.to_path_buf(),
            config,
            backend,
            watched: Some(watched),
            queue_sizes: [QUEUE_SIZE; NUM_QUEUES],
        })
    }

    /// The tag the guest mounts.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

/// Connects to `socket`, retrying briefly while it refuses: virtiofsd's socket file exists a
/// moment before it listens on it.
fn connect(socket: &Path) -> Result<UnixStream, FsError> {
    let mut tries = 0;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(source) => {
                return Err(FsError::Connect {
                    path: socket.to_path_buf(),
                    source,
                })
            }
        }
    }
}

impl VirtioDevice for Fs {
    fn name(&self) -> &str {
        &self.name
    }
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }
    fn features(&self) -> u64 {
        self.backend.features() & PASSED_FEATURES
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(self.config.as_slice(), offset, data);
    }
    fn can_snapshot(&self) -> bool {
        false
    }
    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let device = "virtio-fs";
        if a.queues.len() != NUM_QUEUES || a.queue_events.len() != NUM_QUEUES {
            return Err(ActivateError::QueueCount {
                device,
                expected: NUM_QUEUES,
                got: a.queues.len(),
            });
        }
        let watched = self
            .watched
            .take()
            .ok_or(ActivateError::AlreadyActive { device })?;
        // The backend writes used rings itself and signals the irqfd directly: the status
        // register must always send the driver to its queues.
        a.interrupt.hold(INT_VRING);
        self.backend.start(
            &a.mem,
            &a.queues,
            &a.queue_events,
            a.interrupt.irqfd(),
            a.acked_features,
        )?;
        let watcher = watch::Watch::new(self.tag.clone(), self.socket.clone(), watched);
        let exit = a.exit.clone();
        thread::spawn(&self.name, a.filter, a.exit, move || watcher.run(&exit))?;
        Ok(())
    }
}
