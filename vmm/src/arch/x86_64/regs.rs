//! Registers at the PVH entry: 32-bit protected mode, paging off, flat segments from our GDT,
//! %ebx pointing at the start info. Plus the FPU and local APIC state firmware would leave.

use kvm_bindings::{kvm_fpu, kvm_regs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use super::gdt::{segment, BOOT_GDT, CODE_INDEX, DATA_INDEX, TSS_INDEX};
use super::ArchError;
use crate::layout::{BOOT_GDT_START, BOOT_IDT_START, PVH_INFO_START};
use crate::memory::GuestMemory;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn vcpu_err(id: u8, call: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> ArchError {
    move |source| ArchError::Vcpu {
        vcpu: id,
        call,
        source,
    }
}

/// Writes the boot GDT and an empty IDT into guest memory (once per VM).
pub fn write_gdt(mem: &GuestMemory) -> Result<(), ArchError> {
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(|source| ArchError::GuestWrite {
                what: "boot GDT",
                source,
            })?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|source| ArchError::GuestWrite {
            what: "boot IDT",
            source,
        })
}

/// Sets the general and segment registers of the boot vCPU for the PVH entry at `entry`.
pub fn setup_pvh_entry(vcpu: &VcpuFd, id: u8, entry: u64) -> Result<(), ArchError> {
    let regs = kvm_regs {
        rflags: 0x2,
        rip: entry,
        rbx: PVH_INFO_START,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(vcpu_err(id, "KVM_SET_REGS"))?;

    let mut sregs = vcpu.get_sregs().map_err(vcpu_err(id, "KVM_GET_SREGS"))?;
    let code = segment(BOOT_GDT[CODE_INDEX as usize], CODE_INDEX);
    let data = segment(BOOT_GDT[DATA_INDEX as usize], DATA_INDEX);
    sregs.cs = code;
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = segment(BOOT_GDT[TSS_INDEX as usize], TSS_INDEX);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs)
        .map_err(vcpu_err(id, "KVM_SET_SREGS"))
}

/// x87 and SSE control words as after FNINIT/reset.
pub fn setup_fpu(vcpu: &VcpuFd, id: u8) -> Result<(), ArchError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(vcpu_err(id, "KVM_SET_FPU"))
}

fn lapic_reg(regs: &[std::os::raw::c_char], offset: usize) -> u32 {
    let b = |i: usize| regs[offset + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn set_lapic_reg(regs: &mut [std::os::raw::c_char], offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        regs[offset + i] = byte as std::os::raw::c_char;
    }
}

fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// LINT0 delivers the PIC's ExtINT and LINT1 NMIs, as the MP table says (virtual wire mode).
pub fn setup_lint(vcpu: &VcpuFd, id: u8) -> Result<(), ArchError> {
    let mut lapic = vcpu.get_lapic().map_err(vcpu_err(id, "KVM_GET_LAPIC"))?;
    let lvt0 = lapic_reg(&lapic.regs, APIC_LVT0);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT0,
        with_delivery_mode(lvt0, APIC_MODE_EXTINT),
    );
    let lvt1 = lapic_reg(&lapic.regs, APIC_LVT1);
    set_lapic_reg(
        &mut lapic.regs,
        APIC_LVT1,
        with_delivery_mode(lvt1, APIC_MODE_NMI),
    );
    vcpu.set_lapic(&lapic)
        .map_err(vcpu_err(id, "KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_replaces_bits_8_to_10() {
        assert_eq!(with_delivery_mode(0x0001_0700, APIC_MODE_NMI), 0x0001_0400);
        let mut regs = [0 as std::os::raw::c_char; 0x400];
        set_lapic_reg(&mut regs, APIC_LVT0, 0xdead_beef);
        assert_eq!(lapic_reg(&regs, APIC_LVT0), 0xdead_beef);
    }

    #[test]
    fn gdt_lands_in_guest_memory() {
        let mem = crate::memory::create(16, crate::memory::Backing::Private).unwrap();
        write_gdt(&mem).unwrap();
        let code: u64 = mem.read_obj(GuestAddress(BOOT_GDT_START + 8)).unwrap();
        assert_eq!(code, BOOT_GDT[1]);
    }
}
