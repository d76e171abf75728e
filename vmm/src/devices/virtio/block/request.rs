//! Parsing a virtio-blk request out of a descriptor chain, trusting nothing.
//!
//! A request is a readable 16-byte header, data descriptors (device-writable for reads and
//! GET_ID, device-readable for writes) and a device-writable status byte. Every descriptor is
//! checked against guest memory, the number of descriptors and the total length are bounded,
//! and a malformed chain yields an error for that request only.

use std::ops::Deref;

use virtio_queue::{desc::split::Descriptor, DescriptorChain};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::memory::GuestMemory;

/// Bytes per sector in the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Most data segments per request; offered to the driver as seg_max.
pub const SEG_MAX: u32 = 126;
/// Largest data transfer of one request.
pub const MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Length of the GET_ID answer.
pub const ID_BYTES: usize = 20;
/// Size of the request header.
const HEADER_BYTES: u32 = 16;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;

/// What the driver asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Read sectors into the data buffers.
    In,
    /// Write the data buffers to sectors.
    Out,
    /// Make previous writes durable.
    Flush,
    /// Return the device id string.
    GetId,
    /// A request type we do not implement (answered with UNSUPP).
    Unsupported(u32),
}

/// A validated request: every address range lies in guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub kind: RequestKind,
    /// First sector.
    pub sector: u64,
    /// Data segments (guest address, length).
    pub data: Vec<(GuestAddress, u32)>,
    /// Sum of the data lengths.
    pub data_len: u64,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

/// Why a chain is not a valid request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Fewer than two descriptors (header and status).
    #[error("request has {0} descriptors, needs a header and a status")]
    TooShort(usize),
    /// More descriptors than SEG_MAX + 2, or a descriptor loop.
    #[error("request has more than {max} descriptors", max = SEG_MAX + 2)]
    TooManyDescriptors,
    /// The header descriptor is device-writable or shorter than 16 bytes.
    #[error("request header is write-only or shorter than 16 bytes")]
    BadHeader,
    /// The last descriptor cannot hold the status byte.
    #[error("request status descriptor is not a device-writable byte")]
    BadStatus,
    /// A descriptor points outside guest memory.
    #[error("descriptor {addr:#x}+{len:#x} lies outside guest memory")]
    OutOfRange {
        /// Address.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// A data descriptor has the wrong direction for the request.
    #[error("data descriptor has the wrong direction for a {0:?} request")]
    WrongDirection(RequestKind),
    /// The data length is not a whole number of sectors.
    #[error("data length {0} is not a multiple of 512")]
    PartialSector(u64),
    /// The data is larger than the bound.
    #[error("data length {0} exceeds the {MAX_REQUEST_BYTES}-byte bound")]
    TooLarge(u64),
    /// GET_ID without a buffer.
    #[error("GET_ID without a data buffer")]
    NoIdBuffer,
}

fn in_range(mem: &GuestMemory, d: &Descriptor) -> Result<(), RequestError> {
    let err = RequestError::OutOfRange {
        addr: d.addr().0,
        len: d.len(),
    };
    if d.len() == 0 {
        return mem.check_address(d.addr()).map(|_| ()).ok_or(err);
    }
    if mem.check_range(d.addr(), d.len() as usize) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Collects at most SEG_MAX + 2 descriptors; the chain iterator itself stops after a queue's
/// worth, so a loop ends as "too many".
fn collect<M>(chain: DescriptorChain<M>) -> Result<Vec<Descriptor>, RequestError>
where
    M: Deref,
    M::Target: vm_memory::GuestMemory,
{
    let limit = SEG_MAX as usize + 2;
    let mut descs = Vec::new();
    for d in chain {
        if descs.len() == limit {
            return Err(RequestError::TooManyDescriptors);
        }
        descs.push(d);
    }
    Ok(descs)
}

/// Where the status byte can be written for `descs`, if anywhere: used to report a failure
/// even for requests that do not parse.
pub fn status_of(mem: &GuestMemory, descs: &[Descriptor]) -> Option<GuestAddress> {
    let last = descs.last()?;
    (descs.len() >= 2 && last.is_write_only() && last.len() >= 1 && mem.check_range(last.addr(), 1))
        .then(|| last.addr())
}

/// Parses the descriptors of one chain.
pub fn parse_descriptors(mem: &GuestMemory, descs: &[Descriptor]) -> Result<Request, RequestError> {
    if descs.len() < 2 {
        return Err(RequestError::TooShort(descs.len()));
    }
    let header = descs[0];
    if header.is_write_only() || header.len() < HEADER_BYTES {
        return Err(RequestError::BadHeader);
    }
    in_range(mem, &header)?;
    let mut raw = [0u8; HEADER_BYTES as usize];
    mem.read_slice(&mut raw, header.addr())
        .map_err(|_| RequestError::OutOfRange {
            addr: header.addr().0,
            len: header.len(),
        })?;
    let kind_raw = u32::from_le_bytes(raw[0..4].try_into().unwrap_or_default());
    let sector = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
    let kind = match kind_raw {
        T_IN => RequestKind::In,
        T_OUT => RequestKind::Out,
        T_FLUSH => RequestKind::Flush,
        T_GET_ID => RequestKind::GetId,
        other => RequestKind::Unsupported(other),
    };

    let status = status_of(mem, descs).ok_or(RequestError::BadStatus)?;
    let mut data = Vec::new();
    let mut data_len: u64 = 0;
    for d in &descs[1..descs.len() - 1] {
        let writes_guest = matches!(kind, RequestKind::In | RequestKind::GetId);
        let reads_guest = kind == RequestKind::Out;
        if (writes_guest && !d.is_write_only()) || (reads_guest && d.is_write_only()) {
            return Err(RequestError::WrongDirection(kind));
        }
        in_range(mem, d)?;
        data_len += u64::from(d.len());
        if data_len > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge(data_len));
        }
        data.push((d.addr(), d.len()));
    }
    match kind {
        RequestKind::In | RequestKind::Out if data_len % SECTOR_SIZE != 0 => {
            return Err(RequestError::PartialSector(data_len))
        }
        RequestKind::GetId if data_len == 0 => return Err(RequestError::NoIdBuffer),
        // Flush and unknown types carry no data we look at.
        RequestKind::Flush | RequestKind::Unsupported(_) => data.clear(),
        _ => {}
    }
    Ok(Request {
        kind,
        sector,
        data,
        data_len,
        status,
    })
}

/// Parses one chain; on failure also returns where to report it, if the status byte is usable.
pub fn parse<M>(
    mem: &GuestMemory,
    chain: DescriptorChain<M>,
) -> Result<Request, (RequestError, Option<GuestAddress>)>
where
    M: Deref,
    M::Target: vm_memory::GuestMemory,
{
    let descs = collect(chain).map_err(|e| (e, None))?;
    parse_descriptors(mem, &descs).map_err(|e| (e, status_of(mem, &descs)))
}
