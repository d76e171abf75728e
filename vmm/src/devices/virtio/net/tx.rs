//! The transmit path: one guest chain (virtio-net header + frame) becomes one length-prefixed
//! frame in the buffer bound for the backend.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes};

use super::chain::{segments, ChainError};
use super::frame::{push_len, ETH_HLEN, MAX_FRAME};
use super::metrics::Fault;
use super::HDR_LEN;
use crate::memory::GuestMemory;

/// Why a transmit chain was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The chain itself is malformed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Fewer bytes than a header and an Ethernet header.
    #[error("{0} bytes")]
    Short(u64),
    /// More bytes than a header and the largest frame.
    #[error("{0} bytes")]
    Oversized(u64),
}

impl TxError {
    /// The fault it is counted as.
    pub fn fault(&self) -> Fault {
        match self {
            TxError::Chain(_) => Fault::TxMalformed,
            TxError::Short(_) => Fault::TxShort,
            TxError::Oversized(_) => Fault::TxOversized,
        }
    }
}

/// Appends the frame carried by `chain` to `out` with its length prefix; returns the frame's
/// length. On error `out` is unchanged.
pub fn append_frame<M>(
    mem: &GuestMemory,
    chain: DescriptorChain<M>,
    out: &mut Vec<u8>,
) -> Result<usize, TxError>
where
    M: Deref<Target = GuestMemory>,
{
    let chain = segments(mem, chain, false)?;
    if chain.total < (HDR_LEN + ETH_HLEN) as u64 {
        return Err(TxError::Short(chain.total));
    }
    if chain.total > (HDR_LEN + MAX_FRAME) as u64 {
        return Err(TxError::Oversized(chain.total));
    }
    let len = chain.total as usize - HDR_LEN;
    let mark = out.len();
    push_len(out, len);
    let mut skip = HDR_LEN;
    for (addr, seg_len) in chain.segs {
        let seg_len = seg_len as usize;
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let at = out.len();
        out.resize(at + seg_len - skip, 0);
        // The range was checked; a failure here means memory changed under us.
        let from = addr.unchecked_add(skip as u64);
        if mem.read_slice(&mut out[at..], from).is_err() {
            out.truncate(mark);
            return Err(TxError::Chain(ChainError::OutOfRange {
                addr: from.0,
                len: (seg_len - skip) as u32,
            }));
        }
        skip = 0;
    }
    Ok(len)
}
