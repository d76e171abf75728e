//! Loading the guest: the ELF vmlinux through its PVH entry, the initramfs as the PVH module,
//! the command line, and the `hvm_start_info` with its memory map (the e820 of a PVH boot).

use std::fs::File;
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::elf::start_info::{XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_START_MAGIC_VALUE};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{
    CMDLINE_START, EBDA_START, HIMEM_START, MEMMAP_MAX_ENTRIES, MEMMAP_START, MMIO_GAP_END,
    MMIO_GAP_START, MODLIST_START, PVH_INFO_START,
};
use crate::memory::GuestMemory;

/// Errors while loading the guest, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A boot file cannot be opened or read.
    #[error("cannot read {what} {path}")]
    Open {
        /// "kernel" or "initramfs".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// linux-loader refused the kernel.
    #[error("cannot load kernel {path} (an uncompressed ELF vmlinux is expected)")]
    Kernel {
        /// The kernel file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The kernel has no PVH entry note.
    #[error("kernel {path} has no PVH entry point (build it with CONFIG_PVH=y)")]
    NoPvh {
        /// The kernel file.
        path: PathBuf,
    },
    /// The initramfs does not fit between the kernel and the end of low memory.
    #[error("initramfs {path} ({size} bytes) does not fit in guest memory above the kernel; give the VM more memory")]
    InitramfsTooBig {
        /// The initramfs file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Copying the initramfs into guest memory failed.
    #[error("cannot copy initramfs {path} into guest memory")]
    InitramfsCopy {
        /// The initramfs file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// The command line could not be written.
    #[error("cannot write the kernel command line into guest memory")]
    Cmdline(#[source] linux_loader::loader::Error),
    /// The start info could not be written.
    #[error("cannot write the PVH start info into guest memory")]
    StartInfo(#[source] vm_memory::GuestMemoryError),
}

/// Where the guest starts and what it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootInfo {
    /// The PVH entry point (32-bit protected mode).
    pub entry: u64,
    /// First byte after the kernel image.
    pub kernel_end: u64,
    /// Initramfs address and size, if any.
    pub initramfs: Option<(u64, u64)>,
}

fn open(what: &'static str, path: &Path) -> Result<File, BootError> {
    File::open(path).map_err(|source| BootError::Open {
        what,
        path: path.into(),
        source,
    })
}

/// Loads the kernel ELF and returns its PVH entry and end.
pub fn load_kernel(mem: &GuestMemory, path: &Path) -> Result<(u64, u64), BootError> {
    let mut file = open("kernel", path)?;
    let loaded =
        Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(|source| {
            BootError::Kernel {
                path: path.into(),
                source,
            }
        })?;
    match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) => Ok((entry.0, loaded.kernel_end)),
        _ => Err(BootError::NoPvh { path: path.into() }),
    }
}

/// End of the RAM below the MMIO gap.
fn low_ram_end(mem: &GuestMemory) -> u64 {
    (mem.last_addr().0 + 1).min(MMIO_GAP_START)
}

/// Copies the initramfs page-aligned at the top of low RAM, above `kernel_end`.
pub fn load_initramfs(
    mem: &GuestMemory,
    path: &Path,
    kernel_end: u64,
) -> Result<(u64, u64), BootError> {
    let mut file = open("initramfs", path)?;
    let size = file
        .metadata()
        .map_err(|source| BootError::Open {
            what: "initramfs",
            path: path.into(),
            source,
        })?
        .len();
    let too_big = || BootError::InitramfsTooBig {
        path: path.into(),
        size,
    };
    let addr = low_ram_end(mem).checked_sub(size).ok_or_else(too_big)? & !0xfff;
    if addr < kernel_end || addr < HIMEM_START {
        return Err(too_big());
    }
    let len = usize::try_from(size).map_err(|_| too_big())?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|source| BootError::InitramfsCopy {
            path: path.into(),
            source,
        })?;
    Ok((addr, size))
}

/// The PVH memory map: base memory below the EBDA, RAM from 1 MiB to the gap, RAM above 4 GiB.
pub fn memory_map(mem: &GuestMemory) -> Vec<(u64, u64)> {
    let end = mem.last_addr().0 + 1;
    let mut map = vec![
        (0, EBDA_START),
        (HIMEM_START, low_ram_end(mem) - HIMEM_START),
    ];
    if end > MMIO_GAP_END {
        map.push((MMIO_GAP_END, end - MMIO_GAP_END));
    }
    map
}

/// Encodes `hvm_start_info` (Xen's public start_info.h, version 1).
fn start_info(nr_modules: u32, memmap_entries: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(56);
    b.extend_from_slice(&XEN_HVM_START_MAGIC_VALUE.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // version
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    b.extend_from_slice(&nr_modules.to_le_bytes());
    b.extend_from_slice(&MODLIST_START.to_le_bytes());
    b.extend_from_slice(&CMDLINE_START.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // rsdp: no ACPI
    b.extend_from_slice(&MEMMAP_START.to_le_bytes());
    b.extend_from_slice(&memmap_entries.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// Writes the command line, the module list and the start info with its memory map.
pub fn write_boot_data(
    mem: &GuestMemory,
    cmdline: &Cmdline,
    initramfs: Option<(u64, u64)>,
) -> Result<(), BootError> {
    load_cmdline(mem, GuestAddress(CMDLINE_START), cmdline).map_err(BootError::Cmdline)?;
    let map = memory_map(mem);
    debug_assert!(map.len() <= MEMMAP_MAX_ENTRIES);
    let mut table = Vec::new();
    for (addr, size) in &map {
        table.extend_from_slice(&addr.to_le_bytes());
        table.extend_from_slice(&size.to_le_bytes());
        table.extend_from_slice(&XEN_HVM_MEMMAP_TYPE_RAM.to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
    }
    mem.write_slice(&table, GuestAddress(MEMMAP_START))
        .map_err(BootError::StartInfo)?;
    if let Some((addr, size)) = initramfs {
        let mut module = Vec::with_capacity(32);
        for v in [addr, size, 0, 0] {
            module.extend_from_slice(&v.to_le_bytes());
        }
        mem.write_slice(&module, GuestAddress(MODLIST_START))
            .map_err(BootError::StartInfo)?;
    }
    let info = start_info(u32::from(initramfs.is_some()), map.len() as u32);
    mem.write_slice(&info, GuestAddress(PVH_INFO_START))
        .map_err(BootError::StartInfo)
}

/// Loads kernel and initramfs and writes every boot structure.
pub fn load(
    mem: &GuestMemory,
    kernel: &Path,
    initramfs: Option<&Path>,
    cmdline: &Cmdline,
) -> Result<BootInfo, BootError> {
    let (entry, kernel_end) = load_kernel(mem, kernel)?;
    let initramfs = initramfs
        .map(|p| load_initramfs(mem, p, kernel_end))
        .transpose()?;
    write_boot_data(mem, cmdline, initramfs)?;
    Ok(BootInfo {
        entry,
        kernel_end,
        initramfs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn memory_map_skips_ebda_and_gap() {
        let mem = crate::memory::create(128, crate::memory::Backing::Private).unwrap();
        assert_eq!(
            memory_map(&mem),
            vec![(0, EBDA_START), (HIMEM_START, (128 << 20) - HIMEM_START)]
        );
    }

    #[test]
    fn start_info_and_initramfs_land_where_announced() {
        let mem = crate::memory::create(64, crate::memory::Backing::Private).unwrap();
        let mut initrd = tempfile::NamedTempFile::new().unwrap();
        initrd.write_all(&[0xab; 5000]).unwrap();
        let (addr, size) = load_initramfs(&mem, initrd.path(), 2 << 20).unwrap();
        assert_eq!(size, 5000);
        assert_eq!(addr % 4096, 0);
        assert!(addr + size <= 64 << 20);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(addr + 4999)).unwrap(), 0xab);

        let mut cmdline = Cmdline::new(256).unwrap();
        cmdline.insert_str("panic=-1").unwrap();
        write_boot_data(&mem, &cmdline, Some((addr, size))).unwrap();
        let magic: u32 = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(magic, XEN_HVM_START_MAGIC_VALUE);
        let nr_modules: u32 = mem.read_obj(GuestAddress(PVH_INFO_START + 12)).unwrap();
        assert_eq!(nr_modules, 1);
        let entries: u32 = mem.read_obj(GuestAddress(PVH_INFO_START + 48)).unwrap();
        assert_eq!(entries, 2);
        let module_addr: u64 = mem.read_obj(GuestAddress(MODLIST_START)).unwrap();
        assert_eq!(module_addr, addr);
        let mut text = [0u8; 9];
        mem.read_slice(&mut text, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&text, b"panic=-1\0");
    }

    #[test]
    fn oversized_initramfs_and_bad_kernels_are_named() {
        let mem = crate::memory::create(16, crate::memory::Backing::Private).unwrap();
        let big = tempfile::NamedTempFile::new().unwrap();
        big.as_file().set_len(15 << 20).unwrap();
        let err = load_initramfs(&mem, big.path(), 8 << 20).unwrap_err();
        assert!(matches!(err, BootError::InitramfsTooBig { .. }), "{err}");

        let mut not_elf = tempfile::NamedTempFile::new().unwrap();
        not_elf.write_all(b"#!/bin/sh\n").unwrap();
        let err = load_kernel(&mem, not_elf.path()).unwrap_err();
        assert!(err
            .to_string()
            .contains(&not_elf.path().display().to_string()));
        let err = load_kernel(&mem, Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(matches!(err, BootError::Open { what: "kernel", .. }));
    }
}
