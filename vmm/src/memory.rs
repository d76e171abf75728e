//! Guest RAM: anonymous private mappings laid around the 32-bit MMIO gap.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::layout::{MMIO_GAP_END, MMIO_GAP_START};

/// Guest RAM as the rest of the VMM sees it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Smallest guest the VMM accepts: the kernel, its boot data and an initramfs need room.
pub const MIN_MEMORY_MIB: u32 = 16;
/// Largest guest the VMM accepts (keeps every address computation far from overflow).
pub const MAX_MEMORY_MIB: u32 = 1 << 20;

/// Errors while creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size is outside what the VMM supports.
    #[error("guest memory of {mib} MiB is outside the supported range {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB")]
    Size {
        /// Requested size.
        mib: u32,
    },
    /// mmap failed.
    #[error("cannot map {mib} MiB of guest memory")]
    Map {
        /// Requested size.
        mib: u32,
        /// Cause.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
}

/// The RAM ranges for `mib` MiB of guest memory: one below the MMIO gap, and the rest from 4 GiB.
pub fn ram_ranges(mib: u32) -> Vec<(GuestAddress, usize)> {
    let size = u64::from(mib) << 20;
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// Maps guest memory of `mib` MiB.
pub fn create(mib: u32) -> Result<GuestMemory, MemoryError> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(MemoryError::Size { mib });
    }
    GuestMemoryMmap::from_ranges(&ram_ranges(mib))
        .map_err(|source| MemoryError::Map { mib, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn small_guest_is_one_range() {
        assert_eq!(ram_ranges(128), vec![(GuestAddress(0), 128 << 20)]);
    }

    #[test]
    fn large_guest_skips_the_gap() {
        let ranges = ram_ranges(4096);
        assert_eq!(ranges[0], (GuestAddress(0), MMIO_GAP_START as usize));
        assert_eq!(ranges[1], (GuestAddress(MMIO_GAP_END), (1 << 30)));
    }

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(create(1), Err(MemoryError::Size { mib: 1 })));
        let mem = create(16).unwrap();
        assert_eq!(mem.num_regions(), 1);
    }
}
