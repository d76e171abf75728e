//! Guest RAM: anonymous private mappings laid around the 32-bit MMIO gap, 2 MiB-aligned and
//! advised for transparent huge pages; or, when a vhost-user backend (virtiofsd) must map the
//! guest's memory too, memfd files mapped shared, whose descriptors the VMM hands to it.
//!
//! Alignment is what lets KVM map the guest with 2 MiB pages: a huge page is only used where the
//! guest-physical and host-virtual addresses agree modulo 2 MiB. Without it every 4 KiB the guest
//! touches first costs a nested-paging fault, which QEMU (which aligns and advises its RAM the
//! same way) does not pay; under nested virtualization that alone made the same kernel boot
//! several times slower in nook-vmm than in QEMU.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

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

/// How guest RAM is backed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous private memory: only this process maps it.
    Private,
    /// One memfd per range, mapped `MAP_SHARED`: another process (a vhost-user backend) can map
    /// the same pages from the descriptors ([`vm_memory::GuestMemoryRegion::file_offset`]).
    Shared,
}

/// Maps `size` bytes of anonymous private memory at a 2 MiB-aligned address and asks for
/// transparent huge pages there (a host without them keeps 4 KiB pages). With `file`, the kept
/// part is then replaced (`MAP_FIXED`) by a shared mapping of that file from offset 0.
///
/// The mapping is never unmapped: vm-memory does not own a region it did not map itself, and a
/// VMM process runs one VM, whose memory lives until the process ends.
fn map_aligned(size: usize, file: Option<(&File, u64, libc::c_int)>) -> io::Result<*mut u8> {
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
    if let Some((file, offset, sharing)) = file {
        // SAFETY: replaces exactly the kept range of the reservation made above, which nothing
        // refers to yet, with a mapping of `file` (at least `offset + size` bytes long).
        let shared = unsafe {
            libc::mmap(
                aligned as *mut libc::c_void,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                sharing | libc::MAP_FIXED | libc::MAP_NORESERVE,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if shared == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: the reservation is ours and unused.
            unsafe { libc::munmap(aligned as *mut libc::c_void, size) };
            return Err(e);
        }
    }
    // SAFETY: advice on the kept part of our own mapping. Failure (THP disabled, or shmem THP
    // off for a memfd) only means 4 KiB pages.
    unsafe { libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE) };
    Ok(aligned as *mut u8)
}

/// A memfd of `size` bytes for the guest range at `base`.
fn memfd(base: GuestAddress, size: usize) -> io::Result<File> {
    let name = format!("nook-guest-ram-{:#x}\0", base.0);
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr().cast(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size as u64)?;
    Ok(file)
}

fn region(base: GuestAddress, size: usize, backing: Backing) -> io::Result<GuestRegionMmap> {
    let file = match backing {
        Backing::Private => None,
        Backing::Shared => Some(memfd(base, size)?),
    };
    let ptr = map_aligned(size, file.as_ref().map(|f| (f, 0, libc::MAP_SHARED)))?;
    let mut builder =
        MmapRegionBuilder::new(size).with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE);
    builder = match file {
        None => {
            builder.with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE)
        }
        Some(file) => builder
            .with_mmap_flags(libc::MAP_SHARED | libc::MAP_NORESERVE)
            .with_file_offset(FileOffset::new(file, 0)),
    };
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
pub fn create(mib: u32, backing: Backing) -> Result<GuestMemory, MemoryError> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(MemoryError::Size { mib });
    }
    let map = |source| MemoryError::Map { mib, source };
    let regions = ram_ranges(mib)
        .into_iter()
        .map(|(base, size)| region(base, size, backing))
        .collect::<io::Result<Vec<_>>>()
        .map_err(map)?;
    GuestMemoryMmap::from_regions(regions).map_err(|e| map(io::Error::other(e.to_string())))
}

/// Maps guest memory of `mib` MiB from a snapshot's memory file, private: every page reads
/// as the file has it until the guest writes it, and the guest's writes stay in this process
/// (the page cache holds one copy for every VM mapping the same file).
pub fn from_snapshot(mib: u32, file: &File) -> Result<GuestMemory, MemoryError> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mib) {
        return Err(MemoryError::Size { mib });
    }
    let map = |source| MemoryError::Map { mib, source };
    let mut offset = 0u64;
    let mut regions = Vec::new();
    for (base, size) in ram_ranges(mib) {
        let ptr = map_aligned(size, Some((file, offset, libc::MAP_PRIVATE))).map_err(map)?;
        let builder = MmapRegionBuilder::new(size)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE);
        // SAFETY: `ptr` starts a live mapping of exactly `size` bytes, made above and never
        // unmapped.
        let mapping = unsafe { builder.with_raw_mmap_pointer(ptr) }
            .build()
            .map_err(|e| map(io::Error::other(e.to_string())))?;
        regions.push(
            GuestRegionMmap::new(mapping, base)
                .ok_or_else(|| map(io::Error::other("guest region overflows")))?,
        );
        offset += size as u64;
    }
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
        assert!(matches!(
            create(1, Backing::Private),
            Err(MemoryError::Size { mib: 1 })
        ));
        let mem = create(16, Backing::Private).unwrap();
        assert_eq!(mem.num_regions(), 1);
    }

    #[test]
    fn every_region_is_huge_page_aligned_and_usable() {
        use vm_memory::{Bytes, GuestMemoryRegion};
        for backing in [Backing::Private, Backing::Shared] {
            let mem = create(4096, backing).unwrap();
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

    #[test]
    fn shared_memory_is_seen_through_its_descriptor() {
        use std::os::unix::fs::FileExt;
        use vm_memory::{Bytes, GuestMemoryRegion};
        let mem = create(16, Backing::Shared).unwrap();
        mem.write_obj(0xfeed_u32, GuestAddress(0x1000)).unwrap();
        let region = mem.iter().next().unwrap();
        let file = region
            .file_offset()
            .expect("a shared region has its file")
            .file();
        let mut word = [0u8; 4];
        file.read_exact_at(&mut word, 0x1000).unwrap();
        assert_eq!(u32::from_le_bytes(word), 0xfeed);
        // Private memory has no descriptor to share.
        let private = create(16, Backing::Private).unwrap();
        assert!(private.iter().next().unwrap().file_offset().is_none());
    }
}
