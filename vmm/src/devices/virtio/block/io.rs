//! Disk I/O for validated requests: the backing file, kept apart from descriptor parsing.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use vm_memory::{Bytes, GuestAddress};

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

/// A disk image file.
#[derive(Debug)]
pub struct Disk {
    file: File,
    read_only: bool,
    sectors: u64,
    id: [u8; ID_BYTES],
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
        Ok(Self::from_file(file, len, read_only, id))
    }

    /// Wraps an open file of `len` bytes (a tail shorter than a sector is not exposed).
    pub fn from_file(file: File, len: u64, read_only: bool, id: &str) -> Self {
        let mut id_bytes = [0u8; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Self {
            file,
            read_only,
            sectors: len / SECTOR_SIZE,
            id: id_bytes,
        }
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
    pub fn execute(&mut self, mem: &GuestMemory, request: &Request) -> (u8, u32) {
        match request.kind {
            RequestKind::In => match self.read(mem, request) {
                Some(()) => (S_OK, request.data_len as u32 + 1),
                None => (S_IOERR, 1),
            },
            RequestKind::Out if self.read_only => (S_IOERR, 1),
            RequestKind::Out => match self.write(mem, request) {
                Some(()) => (S_OK, 1),
                None => (S_IOERR, 1),
            },
            RequestKind::Flush if self.read_only => (S_OK, 1),
            RequestKind::Flush => match self.file.sync_data() {
                Ok(()) => (S_OK, 1),
                Err(_) => (S_IOERR, 1),
            },
            RequestKind::GetId => {
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
            RequestKind::Unsupported(_) => (S_UNSUPP, 1),
        }
    }

    fn read(&mut self, mem: &GuestMemory, request: &Request) -> Option<()> {
        let offset = self.offset(request)?;
        self.file.seek(SeekFrom::Start(offset)).ok()?;
        for &(addr, len) in &request.data {
            mem.read_exact_volatile_from(addr, &mut self.file, len as usize)
                .ok()?;
        }
        Some(())
    }

    fn write(&mut self, mem: &GuestMemory, request: &Request) -> Option<()> {
        let offset = self.offset(request)?;
        self.file.seek(SeekFrom::Start(offset)).ok()?;
        for &(addr, len) in &request.data {
            mem.write_all_volatile_to(addr, &mut self.file, len as usize)
                .ok()?;
        }
        Some(())
    }
}

/// Writes a status byte; a failure means the guest pointed it somewhere invalid after all.
pub fn write_status(mem: &GuestMemory, at: GuestAddress, status: u8) -> bool {
    mem.write_obj(status, at).is_ok()
}
