//! Can this host's KVM boot a standard Linux guest? Said up front, instead of a guest that dies
//! or hangs in early boot.

use std::path::Path;

/// Set to 1 to start VMs even where this check says they cannot boot (for experiments).
pub const OVERRIDE_ENV: &str = "NOOK_VMM_ALLOW_UNSUPPORTED_KVM";

/// Why the host cannot run standard guests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// /dev/kvm is missing.
    #[error("/dev/kvm does not exist: load the kvm module (kvm_intel or kvm_amd) on a host with hardware virtualization")]
    NoKvm,
    /// KVM is provided by PVM.
    #[error(
        "this host's /dev/kvm is provided by kvm_pvm (PVM, pagetable-based virtualization): it only runs \
         PVM-enabled guest kernels, and a standard Linux guest dies in early boot. Run nook VMs on a host \
         with hardware virtualization (Intel VT-x or AMD-V, e.g. bare metal or a cloud VM with nested \
         virtualization), or inside the nested KVM rig (tests/vm/). Set {OVERRIDE_ENV}=1 to try anyway"
    )]
    Pvm,
    /// The CPU shows no VT-x or AMD-V.
    #[error(
        "the CPU advertises neither vmx (Intel VT-x) nor svm (AMD-V) in /proc/cpuinfo, so this /dev/kvm \
         cannot run a standard guest. Run nook VMs on a host with hardware virtualization, or inside the \
         nested KVM rig (tests/vm/). Set {OVERRIDE_ENV}=1 to try anyway"
    )]
    NoHardwareVirtualization,
}

/// What the check looks at, gathered from the system (or made up by tests).
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// /dev/kvm exists.
    pub kvm_device: bool,
    /// /sys/module/kvm_pvm exists.
    pub pvm_module: bool,
    /// Some CPU in /proc/cpuinfo has the vmx or svm flag.
    pub hw_virt_flag: bool,
    /// The override variable is set to 1.
    pub overridden: bool,
}

impl HostFacts {
    /// Reads the facts of this machine.
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hw_virt_flag = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        Self {
            kvm_device: Path::new("/dev/kvm").exists(),
            pvm_module: Path::new("/sys/module/kvm_pvm").exists(),
            hw_virt_flag,
            overridden: std::env::var(OVERRIDE_ENV).is_ok_and(|v| v == "1"),
        }
    }
}

/// Decides from `facts`.
pub fn check_facts(facts: &HostFacts) -> Result<(), HostError> {
    if !facts.kvm_device {
        return Err(HostError::NoKvm);
    }
    if facts.overridden {
        return Ok(());
    }
    if facts.pvm_module {
        return Err(HostError::Pvm);
    }
    if !facts.hw_virt_flag {
        return Err(HostError::NoHardwareVirtualization);
    }
    Ok(())
}

/// Checks this machine.
pub fn check() -> Result<(), HostError> {
    check_facts(&HostFacts::probe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_is_refused_unless_overridden() {
        let pvm = HostFacts {
            kvm_device: true,
            pvm_module: true,
            ..Default::default()
        };
        let err = check_facts(&pvm).unwrap_err();
        assert_eq!(err, HostError::Pvm);
        assert!(err.to_string().contains("VT-x") && err.to_string().contains(OVERRIDE_ENV));
        assert!(check_facts(&HostFacts {
            overridden: true,
            ..pvm
        })
        .is_ok());
    }

    #[test]
    fn hardware_virtualization_passes() {
        let ok = HostFacts {
            kvm_device: true,
            hw_virt_flag: true,
            ..Default::default()
        };
        assert!(check_facts(&ok).is_ok());
        let none = HostFacts {
            kvm_device: true,
            ..Default::default()
        };
        assert_eq!(check_facts(&none), Err(HostError::NoHardwareVirtualization));
        assert_eq!(check_facts(&HostFacts::default()), Err(HostError::NoKvm));
    }
}
