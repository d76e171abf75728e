//! The MSR values every vCPU starts with (what firmware would leave behind).

use kvm_bindings::{kvm_msr_entry, Msrs};
use kvm_ioctls::VcpuFd;

use super::ArchError;

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;

/// Fast string operations on, like firmware leaves them.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled with write-back as the default type: without it the kernel maps RAM uncached.
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;

/// The boot MSR list. The TSC is left alone: KVM starts every vCPU of a VM in sync, and writing
/// it per vCPU at different moments makes the guest declare its TSCs unsynchronized.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

/// Writes the boot MSRs into vCPU `id`.
pub fn setup(vcpu: &VcpuFd, id: u8) -> Result<(), ArchError> {
    let entries = boot_msrs();
    let msrs = Msrs::from_entries(&entries).map_err(|_| ArchError::Msrs {
        vcpu: id,
        set: 0,
        wanted: entries.len(),
    })?;
    let set = vcpu.set_msrs(&msrs).map_err(|source| ArchError::Vcpu {
        vcpu: id,
        call: "KVM_SET_MSRS",
        source,
    })?;
    if set != entries.len() {
        return Err(ArchError::Msrs {
            vcpu: id,
            set,
            wanted: entries.len(),
        });
    }
    Ok(())
}
