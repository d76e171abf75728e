//! Disk I/O for validated requests: the backing file, kept apart from descriptor parsing.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use super::metrics::{failure_line, DiskMetrics};
use super::request::{Request, RequestKind, ID_BYTES, SECTOR_SIZE};
use crate::memory::GuestMemory;

/// virtio-blk status codes (one byte on the wire).
pub const S_OK: u8 = VIRTIO_BLK_S_OK as u8;
/// I/O error.
pub const S_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
/// Unsupported request.
pub const S_UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// Errors opening a disk.
#[derive(Debug, thiserror::Error)]
#[error("cannot open disk image {path}")]
pub struct DiskError {
    /// The image.
    pub path: PathBuf,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

/// Why the host side of a request failed (the guest sees IOERR).
#[derive(Debug, thiserror::Error)]
pub enum DiskIoError {
    /// A system call on the image failed.
    #[error("{op} failed")]
    Os {
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image ended before the transfer did (it shrank under the VM).
    #[error("short {op}: {done} of {expected} bytes")]
    Short {
        /// What was attempted.
        op: &'static str,
        /// Bytes moved.
        done: usize,
        /// Bytes asked for.
        expected: usize,
    },
    /// Guest memory refused the transfer.
    #[error("{op} failed")]
    Memory {
        /// What was attempted.
        op: &'static str,
        /// Cause.
        #[source]
        source: GuestMemoryError,
    },
}

impl DiskIoError {
    fn transfer(op: &'static str, e: GuestMemoryError) -> Self {
        match e {
            GuestMemoryError::IOError(source) => Self::Os { op, source },
            GuestMemoryError::PartialBuffer {
                expected,
                completed,
            } => Self::Short {
                op,
                done: completed,
                expected,
            },
            source => Self::Memory { op, source },
        }
    }

    fn os(op: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Os { op, source }
    }
}

/// A disk image file.
#[derive(Debug)]
pub struct Disk {
    file: File,
    read_only: bool,
    sectors: u64,
    id: [u8; ID_BYTES],
    label: String,
    metrics: Arc<DiskMetrics>,
}

impl Disk {
    /// Opens `path`; read-only disks are opened read-only on the host too.
    pub fn open(path: &Path, read_only: bool, id: &str) -> Result<Self, DiskError> {
        let err = |source| DiskError {
            path: path.into(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        let mut disk = Self::from_file(file, len, read_only, id);
        disk.label = path.display().to_string();
        Ok(disk)
    }

    /// Wraps an open file of `len` bytes (a tail shorter than a sector is not exposed). Log
    /// lines name the disk by `id` (by its path when opened with [`Disk::open`]).
    pub fn from_file(file: File, len: u64, read_only: bool, id: &str) -> Self {
        let mut id_bytes = [0u8; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Self {
            file,
            read_only,
            sectors: len / SECTOR_SIZE,
            id: id_bytes,
            label: id.to_string(),
            metrics: Arc::default(),
        }
    }

    /// The disk's counters.
    pub fn metrics(&self) -> Arc<DiskMetrics> {
        self.metrics.clone()
    }

    /// Capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Byte offset of a request's data, if the whole transfer lies inside the disk.
    fn offset(&self, request: &Request) -> Option<u64> {
        let end_sector = request.sector.checked_add(request.data_len / SECTOR_SIZE)?;
        (end_sector <= self.sectors).then(|| request.sector * SECTOR_SIZE)
    }

    /// Executes `request`; returns the status and the number of bytes written into guest
    /// buffers (the used length, status byte included).
    ///
    /// A request outside the disk or a write to a read-only disk is the driver's mistake and
    /// fails quietly; a failure of the host I/O is counted and logged.
    pub fn execute(&mut self, mem: &GuestMemory, request: &Request) -> (u8, u32) {
        let io = match (request.kind, self.offset(request)) {
            (RequestKind::Out, _) if self.read_only => return (S_IOERR, 1),
            (RequestKind::In | RequestKind::Out, None) => return (S_IOERR, 1),
            (RequestKind::In, Some(offset)) => self.read(mem, request, offset),
            (RequestKind::Out, Some(offset)) => self.write(mem, request, offset),
            (RequestKind::Flush, _) if self.read_only => return (S_OK, 1),
            (RequestKind::Flush, _) => self.file.sync_data().map_err(DiskIoError::os("fdatasync")),
            (RequestKind::GetId, _) => return self.get_id(mem, request),
            (RequestKind::Unsupported(_), _) => return (S_UNSUPP, 1),
        };
        match io {
            Ok(()) if request.kind == RequestKind::In => (S_OK, request.data_len as u32 + 1),
            Ok(()) => (S_OK, 1),
            Err(e) => {
                self.report(request, &e);
                (S_IOERR, 1)
            }
        }
    }

    /// Copies the id string into the request's buffers (no host I/O involved).
    fn get_id(&self, mem: &GuestMemory, request: &Request) -> (u8, u32) {
        let mut left = &self.id[..];
        let mut written = 0u32;
        for &(addr, len) in &request.data {
            let n = left.len().min(len as usize);
            if mem.write_slice(&left[..n], addr).is_err() {
                return (S_IOERR, 1);
            }
            left = &left[n..];
            written += n as u32;
        }
        (S_OK, written + 1)
    }

    /// Counts a failed request and logs it unless rate limiting drops the line.
    fn report(&self, request: &Request, error: &DiskIoError) {
        let n = self.metrics.count_io_error();
        let op = request.kind.name();
        let sector = (request.kind != RequestKind::Flush).then_some(request.sector);
        if let Some(line) = failure_line(&self.label, op, sector, error, n) {
            eprintln!("{line}");
        }
    }

    fn seek(&mut self, offset: u64) -> Result<(), DiskIoError> {
        self.file
            .seek(SeekFrom::Start(offset))
            .map(drop)
            .map_err(DiskIoError::os("seek"))
    }

    fn read(
        &mut self,
        mem: &GuestMemory,
        request: &Request,
        offset: u64,
    ) -> Result<(), DiskIoError> {
        self.seek(offset)?;
        for &(addr, len) in &request.data {
            mem.read_exact_volatile_from(addr, &mut self.file, len as usize)
                .map_err(|e| DiskIoError::transfer("read", e))?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        mem: &GuestMemory,
        request: &Request,
        offset: u64,
    ) -> Result<(), DiskIoError> {
        self.seek(offset)?;
        for &(addr, len) in &request.data {
            mem.write_all_volatile_to(addr, &mut self.file, len as usize)
                .map_err(|e| DiskIoError::transfer("write", e))?;
        }
        Ok(())
    }
}

/// Writes a status byte; a failure means the guest pointed it somewhere invalid after all.
pub fn write_status(mem: &GuestMemory, at: GuestAddress, status: u8) -> bool {
    mem.write_obj(status, at).is_ok()
}
