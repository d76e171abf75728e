//! Snapshots of a paused VM: what KVM holds for each vCPU and for the VM (the in-kernel
//! irqchip, PIT and clock), and guest memory, written so that a new VMM process can map the
//! memory copy-on-write and resume the guest where it stopped.
//!
//! - [`vcpu`]: one vCPU's registers, FPU/xsave, control registers, local APIC, MSRs, pending
//!   events and multiprocessing state, captured and set back in the orders KVM requires.
//! - [`vm`]: the PIC pair, the IOAPIC, the PIT and the KVM clock.
//! - [`file`]: the on-disk form: a versioned, checksummed state file beside a raw memory file,
//!   checked before anything of it reaches KVM.
//!
//! Devices are not captured here: each device's own state is added by the device.

pub mod file;
pub mod restore;
pub mod take;
pub mod trigger;
pub mod vcpu;
pub mod vm;

#[cfg(test)]
mod tests;

/// Why a snapshot could not be taken, read or set back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A KVM call while capturing or restoring.
    #[error("{what}: KVM call {call} failed")]
    Kvm {
        /// vCPU n, or the VM.
        what: String,
        /// The ioctl.
        call: &'static str,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM read or wrote fewer MSRs than asked.
    #[error("vCPU {vcpu}: KVM set {done} of {wanted} MSRs (it refused MSR {index:#x})")]
    Msrs {
        /// vCPU index.
        vcpu: u8,
        /// How many were done.
        done: usize,
        /// How many were asked.
        wanted: usize,
        /// The first one refused.
        index: u32,
    },
    /// A snapshot file could not be read or written.
    #[error("snapshot file {path}: {what}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What was being done.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file is not one this VMM can load: damaged, of another version, of another
    /// machine shape. Never loaded: the caller rebuilds or refuses.
    #[error("snapshot {path} cannot be used: {why}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// Shorthand for a failed KVM call on `what`.
pub(crate) fn kvm(
    what: impl Into<String>,
    call: &'static str,
) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Kvm { what, call, source }
}
