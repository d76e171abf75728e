//! Guest physical addresses: where the VMM puts boot structures, RAM and devices.
//!
//! The low megabyte follows what Linux expects from a PC: boot data below 0x9fc00, the MP table in
//! the last KiB of base memory (where the kernel scans for it), the kernel from 1 MiB. RAM stops
//! at the 32-bit MMIO gap and resumes at 4 GiB.

/// GDT used for the 32-bit protected-mode PVH entry.
pub const BOOT_GDT_START: u64 = 0x500;
/// Empty IDT loaded at entry (the kernel installs its own before enabling interrupts).
pub const BOOT_IDT_START: u64 = 0x520;
/// `hvm_start_info` for the PVH entry.
pub const PVH_INFO_START: u64 = 0x6000;
/// The initramfs module entry, right after the start info.
pub const MODLIST_START: u64 = 0x6040;
/// The PVH memory map (e820 entries).
pub const MEMMAP_START: u64 = 0x7000;
/// Most memory-map entries we ever write (low RAM, EBDA, high RAM, above-4G RAM, gap).
pub const MEMMAP_MAX_ENTRIES: usize = 8;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line accepted (the x86 kernel's COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the extended BIOS data area; the MP table goes here.
pub const EBDA_START: u64 = 0x9fc00;
/// Where the kernel is loaded from and where RAM resumes after the legacy hole.
pub const HIMEM_START: u64 = 0x10_0000;

/// Start of the 32-bit MMIO gap (no RAM between here and 4 GiB).
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO gap.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// First virtio-mmio device window.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// Size of each virtio-mmio device window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First IOAPIC pin handed to virtio devices (0-4 are the PIT, keyboard, cascade and serial).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Last IOAPIC pin (the in-kernel IOAPIC has 24).
pub const IRQ_MAX: u32 = 23;

/// In-kernel IOAPIC.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC of every vCPU.
pub const APIC_START: u64 = 0xfee0_0000;
/// KVM's TSS for real mode emulation on Intel: three pages just below the IOAPIC-free top.
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// COM1 ports and IRQ.
pub const SERIAL_PORT: u16 = 0x3f8;
/// Number of ports of an 8250.
pub const SERIAL_PORT_LEN: u16 = 8;
/// COM1's IRQ line.
pub const SERIAL_IRQ: u32 = 4;
/// The i8042 controller's data port; the command port is at 0x64.
pub const I8042_PORT: u16 = 0x60;
/// The i8042 spans 0x60..=0x64.
pub const I8042_PORT_LEN: u16 = 5;
