//! One vCPU's state as KVM holds it, captured and set back in the orders KVM needs (as
//! Firecracker and Cloud Hypervisor do): `KVM_GET_MP_STATE` first, since it lets the local APIC
//! accept pending events; `KVM_GET_VCPU_EVENTS` last; on restore the CPUID first, since every
//! later call is checked against it, and the events last.

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs,
    kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuFd};
use serde::{Deserialize, Serialize};

use super::{kvm, SnapshotError};

/// How many MSRs one `KVM_GET_MSRS`/`KVM_SET_MSRS` call carries.
const MSR_BATCH: usize = 64;

/// Everything KVM keeps for one vCPU.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// The vCPU index (its APIC id).
    pub id: u8,
    /// The CPUID the guest saw.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// Running, halted, waiting for INIT/SIPI.
    pub mp_state: kvm_mp_state,
    /// General registers.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers.
    pub sregs: kvm_sregs,
    /// FPU, SSE and AVX state.
    pub xsave: kvm_xsave,
    /// XCR0 (absent when KVM lacks KVM_CAP_XCRS).
    pub xcrs: Option<kvm_xcrs>,
    /// Debug registers (absent when KVM lacks KVM_CAP_DEBUGREGS).
    pub debugregs: Option<kvm_debugregs>,
    /// The local APIC's registers.
    pub lapic: kvm_lapic_state,
    /// Every MSR KVM lets a VMM save, with its value.
    pub msrs: Vec<kvm_msr_entry>,
    /// Pending exceptions, interrupts, NMIs and SMIs.
    pub events: kvm_vcpu_events,
}

/// The MSRs worth saving: the list KVM gives for this purpose (`KVM_GET_MSR_INDEX_LIST`).
pub fn msrs_to_save(kvm_handle: &Kvm) -> Result<Vec<u32>, SnapshotError> {
    let list = kvm_handle
        .get_msr_index_list()
        .map_err(kvm("KVM", "KVM_GET_MSR_INDEX_LIST"))?;
    Ok(list.as_slice().to_vec())
}

fn msrs_of(entries: &[kvm_msr_entry], id: u8) -> Result<Msrs, SnapshotError> {
    Msrs::from_entries(entries).map_err(|_| SnapshotError::Msrs {
        vcpu: id,
        done: 0,
        wanted: entries.len(),
        index: entries.first().map_or(0, |e| e.index),
    })
}

/// Reads `indices` from the vCPU. An MSR the list names but this vCPU cannot read (some depend
/// on CPUID bits the guest was not given) is left out: KVM stops a batch at the first one.
fn read_msrs(fd: &VcpuFd, id: u8, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, SnapshotError> {
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let batch: Vec<kvm_msr_entry> = rest[..rest.len().min(MSR_BATCH)]
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = msrs_of(&batch, id)?;
        let read = fd
            .get_msrs(&mut msrs)
            .map_err(kvm(format!("vCPU {id}"), "KVM_GET_MSRS"))?;
        out.extend_from_slice(&msrs.as_slice()[..read]);
        // Skip the one that stopped the batch, if any.
        let consumed = if read < batch.len() { read + 1 } else { read };
        rest = &rest[consumed..];
    }
    Ok(out)
}

impl VcpuState {
    /// Reads vCPU `id`, which must be out of KVM_RUN with no port or MMIO access pending
    /// (see [`crate::kvm::vcpu::Vcpu::settle`]), while no other vCPU of its VM runs.
    pub fn capture(fd: &VcpuFd, id: u8, msr_indices: &[u32]) -> Result<Self, SnapshotError> {
        let what = || format!("vCPU {id}");
        let mp_state = fd.get_mp_state().map_err(kvm(what(), "KVM_GET_MP_STATE"))?;
        let regs = fd.get_regs().map_err(kvm(what(), "KVM_GET_REGS"))?;
        let sregs = fd.get_sregs().map_err(kvm(what(), "KVM_GET_SREGS"))?;
        let xsave = fd.get_xsave().map_err(kvm(what(), "KVM_GET_XSAVE"))?;
        let xcrs = optional(fd.get_xcrs()).map_err(kvm(what(), "KVM_GET_XCRS"))?;
        let debugregs = optional(fd.get_debug_regs()).map_err(kvm(what(), "KVM_GET_DEBUGREGS"))?;
        let lapic = fd.get_lapic().map_err(kvm(what(), "KVM_GET_LAPIC"))?;
        let msrs = read_msrs(fd, id, msr_indices)?;
        let cpuid = fd
            .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm(what(), "KVM_GET_CPUID2"))?
            .as_slice()
            .to_vec();
        let events = fd
            .get_vcpu_events()
            .map_err(kvm(what(), "KVM_GET_VCPU_EVENTS"))?;
        Ok(Self {
            id,
            cpuid,
            mp_state,
            regs,
            sregs,
            xsave,
            xcrs,
            debugregs,
            lapic,
            msrs,
            events,
        })
    }

    /// Sets the state into a fresh vCPU of a VM whose VM-wide state is already restored.
    pub fn restore(&self, fd: &VcpuFd) -> Result<(), SnapshotError> {
        let id = self.id;
        let what = || format!("vCPU {id}");
        // More entries than KVM takes: refused as KVM would refuse them.
        let cpuid = CpuId::from_entries(&self.cpuid).map_err(|_| SnapshotError::Kvm {
            what: format!("vCPU {id}: {} CPUID entries", self.cpuid.len()),
            call: "KVM_SET_CPUID2",
            source: kvm_ioctls::Error::new(libc::E2BIG),
        })?;
        fd.set_cpuid2(&cpuid)
            .map_err(kvm(what(), "KVM_SET_CPUID2"))?;
        fd.set_mp_state(self.mp_state)
            .map_err(kvm(what(), "KVM_SET_MP_STATE"))?;
        fd.set_regs(&self.regs)
            .map_err(kvm(what(), "KVM_SET_REGS"))?;
        fd.set_sregs(&self.sregs)
            .map_err(kvm(what(), "KVM_SET_SREGS"))?;
        // SAFETY: `xsave` is a whole `kvm_xsave` of the legacy size, which is what
        // KVM_SET_XSAVE reads on a host without extended (AMX) state; such a host's state could
        // not have been captured by KVM_GET_XSAVE either.
        unsafe { fd.set_xsave(&self.xsave) }.map_err(kvm(what(), "KVM_SET_XSAVE"))?;
        if let Some(xcrs) = &self.xcrs {
            fd.set_xcrs(xcrs).map_err(kvm(what(), "KVM_SET_XCRS"))?;
        }
        if let Some(debugregs) = &self.debugregs {
            fd.set_debug_regs(debugregs)
                .map_err(kvm(what(), "KVM_SET_DEBUGREGS"))?;
        }
        fd.set_lapic(&self.lapic)
            .map_err(kvm(what(), "KVM_SET_LAPIC"))?;
        for batch in self.msrs.chunks(MSR_BATCH) {
            let msrs = msrs_of(batch, id)?;
            let done = fd.set_msrs(&msrs).map_err(kvm(what(), "KVM_SET_MSRS"))?;
            if done != batch.len() {
                return Err(SnapshotError::Msrs {
                    vcpu: id,
                    done,
                    wanted: batch.len(),
                    index: batch[done].index,
                });
            }
        }
        fd.set_vcpu_events(&self.events)
            .map_err(kvm(what(), "KVM_SET_VCPU_EVENTS"))?;
        Ok(())
    }
}

/// An optional part: KVM without the capability answers EINVAL (or ENOTTY).
fn optional<T>(r: Result<T, kvm_ioctls::Error>) -> Result<Option<T>, kvm_ioctls::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.errno() == libc::EINVAL || e.errno() == libc::ENOTTY => Ok(None),
        Err(e) => Err(e),
    }
}
