//! Guest RAM: anonymous private mappings laid around the 32-bit MMIO gap, 2 MiB-aligned and
//! advised for transparent huge pages.
//!
//! Alignment is what lets KVM map the guest with 2 MiB pages: a huge page is only used where the
//! guest-physical and host-virtual addresses agree modulo 2 MiB. Without it every 4 KiB the guest
//! touches first costs a nested-paging fault, which QEMU (which aligns and advises its RAM the
//! same way) does not pay; under nested virtualization that alone made the same kernel boot
//! several times slower in nook-vmm than in QEMU.

use std::io;

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

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
        source: io::Error,
    },
}

/// Huge page size the mappings are aligned to.
const HUGE_PAGE: usize = 2 << 20;

/// Maps `size` bytes of anonymous private memory at a 2 MiB-aligned address and asks for
/// transparent huge pages there (a host without them keeps 4 KiB pages).
///
/// The mapping is never unmapped: vm-memory does not own a region it did not map itself, and a
/// VMM process runs one VM, whose memory lives until the process ends.
fn map_aligned(size: usize) -> io::Result<*mut u8> {
    let reserve = size
        .checked_add(HUGE_PAGE)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choice; nothing else is
    // affected.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = base as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let head = aligned - start;
    let tail = reserve - head - size;
    // SAFETY: both ranges lie inside the mapping just made and outside [aligned, aligned + size),
    // which is the part kept; nothing refers to them.
    unsafe {
        if head > 0 {
            libc::munmap(base, head);
        }
        if tail > 0 {
            libc::munmap((aligned + size) as *mut libc::c_void, tail);
        }
    }
    // SAFETY: advice on the kept part of our own mapping. Failure (THP disabled) only means
    // 4 KiB pages.
    unsafe { libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE) };
    Ok(aligned as *mut u8)
}

fn region(base: GuestAddress, size: usize) -> io::Result<GuestRegionMmap> {
    let ptr = map_aligned(size)?;
    let builder = MmapRegionBuilder::new(size)
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE);
    // SAFETY: `ptr` starts a live mapping of exactly `size` bytes, made above and never unmapped.
    let mapping = unsafe { builder.with_raw_mmap_pointer(ptr) }
        .build()
        .map_err(|e| io::Error::other(e.to_string()))?;
    GuestRegionMmap::new(mapping, base)
        .ok_or_else(|| io::Error::other("guest region would overflow the address space"))
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
    let map = |source| MemoryError::Map { mib, source };
    let regions = ram_ranges(mib)
        .into_iter()
        .map(|(base, size)| region(base, size))
        .collect::<io::Result<Vec<_>>>()
        .map_err(map)?;
    GuestMemoryMmap::from_regions(regions).map_err(|e| map(io::Error::other(e.to_string())))
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

    #[test]
    fn every_region_is_huge_page_aligned_and_usable() {
        use vm_memory::{Bytes, GuestMemoryRegion};
        let mem = create(4096).unwrap();
        assert_eq!(mem.num_regions(), 2);
        for r in mem.iter() {
            let host = r
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .unwrap();
            assert_eq!(host as usize % HUGE_PAGE, 0);
        }
        let top = GuestAddress(MMIO_GAP_END + (1 << 30) - 8);
        mem.write_obj(0x1234_5678_u64, top).unwrap();
        assert_eq!(mem.read_obj::<u64>(top).unwrap(), 0x1234_5678);
        assert!(mem.read_obj::<u64>(GuestAddress(MMIO_GAP_START)).is_err());
    }
}
