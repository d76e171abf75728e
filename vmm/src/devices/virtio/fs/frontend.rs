//! The VMM's side of the vhost-user conversation with virtiofsd (the `vhost` crate's frontend):
//! the handshake before the guest boots and the start of the rings when the driver is ready.
//!
//! Every request waits for the backend's acknowledgement when it offers REPLY_ACK (virtiofsd
//! does), so a refusal is seen at the request that caused it. The socket has timeouts: a
//! backend that stops answering fails the request instead of stalling a vCPU forever.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::{FsError, NUM_QUEUES};
use crate::devices::virtio::F_VERSION_1;
use crate::memory::GuestMemory;

/// How long the backend may take to answer one request.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol features the VMM uses when the backend offers them.
const WANTED_PROTOCOL: VhostUserProtocolFeatures = VhostUserProtocolFeatures::REPLY_ACK;

/// A connected, negotiated vhost-user backend.
pub struct Backend {
    tag: String,
    frontend: Frontend,
    features: u64,
    protocol: VhostUserProtocolFeatures,
}

impl Backend {
    /// SET_OWNER, GET_FEATURES, and the protocol features when offered.
    pub fn handshake(tag: &str, stream: UnixStream, path: &Path) -> Result<Self, FsError> {
        let socket = |source| FsError::Socket {
            path: path.to_path_buf(),
            source,
        };
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(socket)?;
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .map_err(socket)?;
        let mut frontend = Frontend::from_stream(stream, NUM_QUEUES as u64);
        let err = |step| {
            let tag = tag.to_string();
            move |source| FsError::Protocol { tag, step, source }
        };
        frontend.set_owner().map_err(err("SET_OWNER"))?;
        let features = frontend.get_features().map_err(err("GET_FEATURES"))?;
        if features & F_VERSION_1 == 0 {
            return Err(FsError::Feature {
                tag: tag.to_string(),
                what: "VIRTIO_F_VERSION_1",
                features,
            });
        }
        let mut protocol = VhostUserProtocolFeatures::empty();
        if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
            let offered = frontend
                .get_protocol_features()
                .map_err(err("GET_PROTOCOL_FEATURES"))?;
            protocol = offered & WANTED_PROTOCOL;
            frontend
                .set_protocol_features(protocol)
                .map_err(err("SET_PROTOCOL_FEATURES"))?;
            if protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
        }
        Ok(Self {
            tag: tag.to_string(),
            frontend,
            features,
            protocol,
        })
    }

    /// The virtio features the backend offers.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The protocol features in use.
    pub fn protocol(&self) -> VhostUserProtocolFeatures {
        self.protocol
    }

    fn err(&self, step: &'static str) -> impl FnOnce(vhost::Error) -> FsError {
        let tag = self.tag.clone();
        move |source| FsError::Protocol { tag, step, source }
    }

    /// Hands the backend what it needs to serve the queues and starts them: the features the
    /// driver accepted, the memory table (one descriptor per guest RAM range), then per queue
    /// its size, ring addresses (as this process maps them), base, call and kick descriptors.
    pub fn start(
        &mut self,
        mem: &GuestMemory,
        queues: &[Queue],
        kicks: &[EventFd],
        call: &EventFd,
        acked: u64,
    ) -> Result<(), FsError> {
        // VHOST_USER_F_PROTOCOL_FEATURES is a vhost-user bit the driver never sees: acked here
        // when the backend offered it, or the rings would start enabled and SET_VRING_ENABLE
        // would be refused.
        let protocol_bit = self.features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        let features = (acked & self.features) | protocol_bit;
        self.frontend
            .set_features(features)
            .map_err(self.err("SET_FEATURES"))?;

        let regions = mem
            .iter()
            .map(|r| {
                let file = r.file_offset().ok_or_else(|| FsError::PrivateMemory {
                    tag: self.tag.clone(),
                })?;
                Ok(VhostUserMemoryRegionInfo {
                    guest_phys_addr: r.start_addr().0,
                    memory_size: r.len(),
                    userspace_addr: r.as_ptr() as u64,
                    mmap_offset: file.start(),
                    mmap_handle: std::os::fd::AsRawFd::as_raw_fd(file.file()),
                })
            })
            .collect::<Result<Vec<_>, FsError>>()?;
        self.frontend
            .set_mem_table(&regions)
            .map_err(self.err("SET_MEM_TABLE"))?;

        for (index, (queue, kick)) in queues.iter().zip(kicks).enumerate() {
            let host = |addr: u64| {
                mem.get_host_address(GuestAddress(addr))
                    .map(|p| p as u64)
                    .map_err(|_| FsError::Ring {
                        tag: self.tag.clone(),
                        queue: index,
                    })
            };
            let ring = VringConfigData {
                queue_max_size: queue.max_size(),
                queue_size: queue.size(),
                flags: 0,
                desc_table_addr: host(queue.desc_table())?,
                used_ring_addr: host(queue.used_ring())?,
                avail_ring_addr: host(queue.avail_ring())?,
                log_addr: None,
            };
            self.frontend
                .set_vring_num(index, queue.size())
                .map_err(self.err("SET_VRING_NUM"))?;
            self.frontend
                .set_vring_addr(index, &ring)
                .map_err(self.err("SET_VRING_ADDR"))?;
            self.frontend
                .set_vring_base(index, 0)
                .map_err(self.err("SET_VRING_BASE"))?;
            self.frontend
                .set_vring_call(index, call)
                .map_err(self.err("SET_VRING_CALL"))?;
            self.frontend
                .set_vring_kick(index, kick)
                .map_err(self.err("SET_VRING_KICK"))?;
        }
        if protocol_bit != 0 {
            for index in 0..queues.len() {
                self.frontend
                    .set_vring_enable(index, true)
                    .map_err(self.err("SET_VRING_ENABLE"))?;
            }
        }
        Ok(())
    }
}
