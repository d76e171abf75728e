//! CPUID: KVM's supported set, filtered so every vCPU sees a consistent topology (its own APIC
//! id, `vcpus` cores in one package, no SMT), a hypervisor bit, and no features we do not offer
//! (nested virtualization, a PMU).

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

use super::ArchError;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_POWER: u32 = 0x6;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
const LEAF_EXT_SIZES: u32 = 0x8000_0008;

const ECX_VMX: u32 = 1 << 5;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const ECX_EPB: u32 = 1 << 3;
const ECX_SVM: u32 = 1 << 2;

/// KVM's supported CPUID, read once and shared by every vCPU.
pub fn supported(kvm: &Kvm) -> Result<CpuId, ArchError> {
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(ArchError::SupportedCpuid)
}

/// Bits needed to number `count` items (the x2APIC id shift of a level).
fn id_bits(count: u8) -> u32 {
    u32::from(count.max(1)).next_power_of_two().trailing_zeros()
}

/// Rewrites `entries` for vCPU `id` of `vcpus`. `tsc_deadline` says whether KVM emulates the
/// TSC-deadline timer, which KVM_GET_SUPPORTED_CPUID never reports by itself.
pub fn filter(entries: &mut [kvm_cpuid_entry2], id: u8, vcpus: u8, tsc_deadline: bool) {
    let apic_id = u32::from(id);
    let count = u32::from(vcpus.max(1));
    for e in entries.iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                // EBX: APIC id in 31:24, logical processors per package in 23:16.
                e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | ((count & 0xff) << 16);
                e.ecx = (e.ecx | ECX_HYPERVISOR) & !ECX_VMX;
                if tsc_deadline {
                    e.ecx |= ECX_TSC_DEADLINE;
                }
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE => {
                // EAX 31:26 = cores per package - 1; 25:14 = threads sharing the cache - 1.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { count - 1 } else { 0 };
                e.eax = (e.eax & 0x3fff) | ((count - 1) << 26) | ((sharing & 0xfff) << 14);
            }
            LEAF_POWER => e.ecx &= !ECX_EPB,
            LEAF_PMU => (e.eax, e.ebx, e.ecx, e.edx) = (0, 0, 0, 0),
            LEAF_TOPOLOGY => {
                e.edx = apic_id;
                match e.index {
                    // SMT level: one thread per core.
                    0 => (e.eax, e.ebx, e.ecx) = (0, 1, 1 << 8),
                    // Core level: every vCPU a core of one package.
                    1 => (e.eax, e.ebx, e.ecx) = (id_bits(vcpus), count, (2 << 8) | 1),
                    n => (e.eax, e.ebx, e.ecx) = (0, 0, n),
                }
            }
            LEAF_EXT_FEATURES => e.ecx &= !ECX_SVM,
            LEAF_EXT_SIZES => e.ecx = (e.ecx & !0xf0ff) | ((count - 1) & 0xff),
            _ => {}
        }
    }
}

/// Sets the filtered CPUID of vCPU `id`.
pub fn setup(
    vcpu: &VcpuFd,
    supported: &CpuId,
    id: u8,
    vcpus: u8,
    tsc_deadline: bool,
) -> Result<(), ArchError> {
    let mut cpuid = supported.clone();
    filter(cpuid.as_mut_slice(), id, vcpus, tsc_deadline);
    vcpu.set_cpuid2(&cpuid).map_err(|source| ArchError::Vcpu {
        vcpu: id,
        call: "KVM_SET_CPUID2",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0xffff_ffff,
            edx: 0xffff_ffff,
            ..Default::default()
        }
    }

    #[test]
    fn topology_names_each_vcpu() {
        let mut e = vec![
            leaf(1, 0),
            leaf(0xb, 0),
            leaf(0xb, 1),
            leaf(0xb, 2),
            leaf(0xa, 0),
        ];
        filter(&mut e, 2, 3, true);
        assert_ne!(e[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_eq!(e[0].ebx >> 24, 2);
        assert_eq!((e[0].ebx >> 16) & 0xff, 3);
        assert_eq!(e[0].ecx & ECX_VMX, 0);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_eq!((e[1].eax, e[1].ebx, e[1].edx), (0, 1, 2));
        assert_eq!((e[2].eax, e[2].ebx, e[2].ecx), (2, 3, 0x201));
        assert_eq!((e[3].ebx, e[3].ecx), (0, 2));
        assert_eq!((e[4].eax, e[4].edx), (0, 0));
    }

    #[test]
    fn one_vcpu_has_no_htt() {
        let mut e = vec![leaf(1, 0), leaf(0x8000_0001, 0)];
        filter(&mut e, 0, 1, false);
        assert_eq!(e[0].edx & EDX_HTT, 0);
        assert_eq!(e[1].ecx & ECX_SVM, 0);
    }

    #[test]
    fn kvm_supported_set_filters_on_this_machine() {
        let Ok(kvm) = Kvm::new() else {
            eprintln!("!!!! SKIPPED: no /dev/kvm, KVM's supported CPUID was NOT checked !!!!");
            return;
        };
        let mut cpuid = supported(&kvm).unwrap();
        filter(cpuid.as_mut_slice(), 1, 2, false);
        let l1 = cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == 1)
            .expect("leaf 1");
        assert_eq!(l1.ebx >> 24, 1);
    }
}
