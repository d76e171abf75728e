//! x86_64: segments, registers, CPUID, MSRs and the MP table a PVH-booted Linux expects.

pub mod cpuid;
pub mod gdt;
pub mod mptable;
pub mod msr;
pub mod regs;

/// Errors of the x86_64 vCPU setup, naming the vCPU and the step.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// A KVM vCPU ioctl failed.
    #[error("vCPU {vcpu}: {call} failed")]
    Vcpu {
        /// vCPU index.
        vcpu: u8,
        /// What was attempted.
        call: &'static str,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM accepted fewer MSRs than asked.
    #[error("vCPU {vcpu}: KVM set {set} of {wanted} boot MSRs")]
    Msrs {
        /// vCPU index.
        vcpu: u8,
        /// MSRs set.
        set: usize,
        /// MSRs asked for.
        wanted: usize,
    },
    /// Reading KVM's supported CPUID failed.
    #[error("cannot read KVM's supported CPUID")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    /// Writing boot structures into guest memory failed.
    #[error("cannot write the {what} into guest memory")]
    GuestWrite {
        /// Which structure.
        what: &'static str,
        /// Cause.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// Too many vCPUs for the MP table.
    #[error("{0} vCPUs do not fit in the MP table (at most {max})", max = mptable::MAX_VCPUS)]
    TooManyVcpus(u8),
}
