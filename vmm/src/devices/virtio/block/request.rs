//! Parsing a virtio-blk request out of a descriptor chain, trusting nothing.
//!
//! A request is a readable 16-byte header, data descriptors (device-writable for reads and
//! GET_ID, device-readable for writes) and a device-writable status byte. Every descriptor is
//! checked against guest memory, the number of descriptors and the total length are bounded,
//! and a malformed chain yields an error for that request only.

use std::ops::Deref;

use virtio_bindings::bindings::virtio_blk::{
    virtio_blk_outhdr, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::{desc::split::Descriptor, DescriptorChain};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

use crate::memory::GuestMemory;

/// Bytes per sector in the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Most data segments per request; offered to the driver as seg_max.
pub const SEG_MAX: u32 = 126;
/// Largest data transfer of one request.
pub const MAX_REQUEST_BYTES: u64 = 4 << 20;
/// Length of the GET_ID answer.
pub const ID_BYTES: usize = VIRTIO_BLK_ID_BYTES as usize;
/// Size of the request header.
const HEADER_BYTES: u32 = std::mem::size_of::<RequestHeader>() as u32;

/// The request header as the driver lays it out in guest memory (`struct virtio_blk_outhdr`:
/// type, ioprio, sector; little-endian since VIRTIO_F_VERSION_1).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RequestHeader(pub virtio_blk_outhdr);

// SAFETY: RequestHeader is a transparent wrapper of a repr(C) struct of two u32 and one u64,
// laid out without padding (16 bytes, checked below), and every bit pattern of those integers
// is a valid value, so it can be built from and viewed as any 16 bytes.
unsafe impl ByteValued for RequestHeader {}

const _: () = assert!(std::mem::size_of::<RequestHeader>() == 16);

impl RequestHeader {
    /// The request type (VIRTIO_BLK_T_*).
    pub fn kind(&self) -> u32 {
        u32::from_le(self.0.type_)
    }

    /// The first sector.
    pub fn sector(&self) -> u64 {
        u64::from_le(self.0.sector)
    }
}

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

impl RequestKind {
    /// The operation as log lines name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::In => "read",
            Self::Out => "write",
            Self::Flush => "flush",
            Self::GetId => "get-id",
            Self::Unsupported(_) => "unsupported request",
        }
    }
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
    let raw: RequestHeader = mem
        .read_obj(header.addr())
        .map_err(|_| RequestError::OutOfRange {
            addr: header.addr().0,
            len: header.len(),
        })?;
    let sector = raw.sector();
    let kind = match raw.kind() {
        VIRTIO_BLK_T_IN => RequestKind::In,
        VIRTIO_BLK_T_OUT => RequestKind::Out,
        VIRTIO_BLK_T_FLUSH => RequestKind::Flush,
        VIRTIO_BLK_T_GET_ID => RequestKind::GetId,
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

#[cfg(test)]
mod tests {
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;

    use super::*;

    const MEM_SIZE: u64 = 1 << 20;
    const HDR: u64 = 0x1_0000;
    const DATA: u64 = 0x2_0000;
    const STATUS: u64 = 0x3_0000;
    const W: u16 = VRING_DESC_F_WRITE as u16;

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
    }

    /// Writes a header byte by byte as a driver would, independently of [`RequestHeader`].
    fn put_header(mem: &GuestMemory, at: u64, kind: u32, ioprio: u32, sector: u64) {
        let mut raw = Vec::new();
        raw.extend_from_slice(&kind.to_le_bytes());
        raw.extend_from_slice(&ioprio.to_le_bytes());
        raw.extend_from_slice(&sector.to_le_bytes());
        mem.write_slice(&raw, GuestAddress(at)).unwrap();
    }

    fn chain(header: (u64, u32), data: &[(u64, u32, u16)]) -> Vec<Descriptor> {
        let mut descs = vec![Descriptor::new(header.0, header.1, 0, 0)];
        descs.extend(data.iter().map(|&(a, l, f)| Descriptor::new(a, l, f, 0)));
        descs.push(Descriptor::new(STATUS, 1, W, 0));
        descs
    }

    #[test]
    fn header_struct_reads_the_wire_layout() {
        let mem = mem();
        put_header(&mem, HDR, 1, 0xdead_beef, 0x0102_0304_0506_0708);
        let header: RequestHeader = mem.read_obj(GuestAddress(HDR)).unwrap();
        assert_eq!(header.kind(), 1);
        assert_eq!(header.sector(), 0x0102_0304_0506_0708);
        assert_eq!(u32::from_le(header.0.ioprio), 0xdead_beef);
        assert_eq!(header.as_slice().len(), 16);
    }

    #[test]
    fn valid_headers_parse_as_before() {
        let mem = mem();
        let cases = [
            (0, RequestKind::In, W),
            (1, RequestKind::Out, 0),
            (4, RequestKind::Flush, 0),
            (8, RequestKind::GetId, W),
            (2, RequestKind::Unsupported(2), 0),
            (0x8000_0001, RequestKind::Unsupported(0x8000_0001), 0),
        ];
        for (raw_kind, kind, flags) in cases {
            // ioprio is ignored; a header descriptor longer than 16 bytes is fine.
            put_header(&mem, HDR, raw_kind, 7, 42);
            let descs = chain((HDR, 32), &[(DATA, 512, flags)]);
            let request = parse_descriptors(&mem, &descs).unwrap();
            let data = match kind {
                RequestKind::Flush | RequestKind::Unsupported(_) => vec![],
                _ => vec![(GuestAddress(DATA), 512)],
            };
            assert_eq!(
                request,
                Request {
                    kind,
                    sector: 42,
                    data,
                    data_len: 512,
                    status: GuestAddress(STATUS),
                },
                "type {raw_kind:#x}"
            );
        }
    }

    #[test]
    fn short_or_misplaced_headers_are_refused() {
        let mem = mem();
        put_header(&mem, HDR, 0, 0, 0);
        let short = chain((HDR, 15), &[(DATA, 512, W)]);
        assert_eq!(
            parse_descriptors(&mem, &short),
            Err(RequestError::BadHeader)
        );
        for addr in [MEM_SIZE - 8, MEM_SIZE, u64::MAX - 7] {
            let outside = chain((addr, 16), &[(DATA, 512, W)]);
            assert_eq!(
                parse_descriptors(&mem, &outside),
                Err(RequestError::OutOfRange { addr, len: 16 }),
                "header at {addr:#x}"
            );
            // The status byte is still usable: the failure can be reported to the driver.
            assert_eq!(status_of(&mem, &outside), Some(GuestAddress(STATUS)));
        }
    }
}
