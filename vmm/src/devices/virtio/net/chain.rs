//! Reading the guest's descriptor chains for the network queues, trusting nothing: every
//! descriptor must point into guest memory and go the expected way, and a chain must end
//! (a loop or a chain longer than the queue is cut short by virtio-queue and refused here).

use std::ops::Deref;

use virtio_queue::{desc::split::Descriptor, DescriptorChain};
use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::memory::GuestMemory;

/// Why a chain is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A descriptor goes the wrong way (device-writable on tx, device-readable on rx).
    #[error("descriptor {index} has the wrong direction")]
    WrongDirection {
        /// Position in the chain.
        index: usize,
    },
    /// A descriptor points outside guest memory.
    #[error("descriptor {addr:#x}+{len:#x} lies outside guest memory")]
    OutOfRange {
        /// Address.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// The chain loops, is longer than the queue, or links past the descriptor table.
    #[error("the chain does not end within the queue")]
    Unterminated,
}

/// The usable buffers of one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    /// The chain's head index, for the used ring.
    pub head: u16,
    /// (address, length) of each non-empty descriptor, in order.
    pub segs: Vec<(GuestAddress, u32)>,
    /// Sum of the lengths.
    pub total: u64,
    /// Descriptors in the chain, empty ones included.
    pub descs: usize,
}

/// Walks `chain`, requiring every descriptor to be device-writable (`writable`) or
/// device-readable (`!writable`) and inside `mem`. Zero-length descriptors are harmless and
/// skipped.
pub fn segments<M>(
    mem: &GuestMemory,
    chain: DescriptorChain<M>,
    writable: bool,
) -> Result<Segments, ChainError>
where
    M: Deref<Target = GuestMemory>,
{
    let head = chain.head_index();
    let mut segs = Vec::new();
    let mut total = 0u64;
    let mut last: Option<Descriptor> = None;
    let mut descs = 0;
    for (index, desc) in chain.enumerate() {
        last = Some(desc);
        descs += 1;
        if desc.is_write_only() != writable {
            return Err(ChainError::WrongDirection { index });
        }
        if desc.len() == 0 {
            continue;
        }
        if !mem.check_range(desc.addr(), desc.len() as usize) {
            return Err(ChainError::OutOfRange {
                addr: desc.addr().0,
                len: desc.len(),
            });
        }
        total += u64::from(desc.len());
        segs.push((desc.addr(), desc.len()));
    }
    // The iterator stops without a word at a loop or a bad next index: the last descriptor
    // it gave still says NEXT.
    if last.is_some_and(|d| d.has_next()) {
        return Err(ChainError::Unterminated);
    }
    Ok(Segments {
        head,
        segs,
        total,
        descs,
    })
}
