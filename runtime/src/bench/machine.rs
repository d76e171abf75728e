//! The machine a bench ran on, named generically (CPU model, cores, kernel), and whether its
//! figures come from a nested or emulated environment, which must be said next to them.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_mib: u64,
    /// What /dev/kvm is: "hardware" (VT-x/AMD-V), "pvm", or "none".
    pub kvm: String,
    /// Why these figures are nested/emulated; None on a plain host.
    pub nested: Option<String>,
}

/// The raw facts, so the decision is testable.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub cpuinfo: String,
    pub pvm_module: bool,
    pub kvm_device: bool,
    /// `NOOK_IN_RIG=1`: the nested rig's L1 (tests/rig) sets it.
    pub in_rig: bool,
    /// /sys/class/dmi/id/sys_vendor (e.g. "QEMU").
    pub dmi_vendor: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let facts = Facts {
            cpuinfo: std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
            pvm_module: Path::new("/sys/module/kvm_pvm").exists(),
            kvm_device: Path::new("/dev/kvm").exists(),
            in_rig: std::env::var("NOOK_IN_RIG").is_ok_and(|v| v == "1"),
            dmi_vendor: std::fs::read_to_string("/sys/class/dmi/id/sys_vendor")
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let mut m = Machine::from_facts(&facts);
        m.kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        m.memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
            / 1024;
        m
    }

    pub fn from_facts(f: &Facts) -> Machine {
        let cpu_model = f
            .cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown CPU".to_string(), |(_, v)| v.trim().to_string());
        let cores = f
            .cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let flag = |name: &str| {
            f.cpuinfo
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|w| w == name))
        };
        let hw_virt = flag("vmx") || flag("svm");
        let kvm = if !f.kvm_device {
            "none"
        } else if f.pvm_module {
            "pvm"
        } else if hw_virt {
            "hardware"
        } else {
            "unknown"
        };
        let nested = if f.in_rig {
            Some(format!(
                "nested QEMU TCG rig: L1 runs under TCG emulation ({}), its /dev/kvm is emulated AMD SVM",
                if f.dmi_vendor.is_empty() { "vendor unknown" } else { &f.dmi_vendor }
            ))
        } else if f.pvm_module {
            Some("/dev/kvm is PVM (kvm_pvm): this host is itself a guest and cannot boot standard VM guests".into())
        } else if flag("hypervisor") {
            Some(format!(
                "this host is a virtual machine (cpuinfo hypervisor flag{}): the vm column runs nested",
                if f.dmi_vendor.is_empty() { String::new() } else { format!(", {}", f.dmi_vendor) }
            ))
        } else {
            None
        };
        Machine {
            cpu_model,
            cores,
            kernel: String::new(),
            memory_mib: 0,
            kvm: kvm.into(),
            nested,
        }
    }

    /// One line naming the machine.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} cores, {} MiB, Linux {}, /dev/kvm: {}",
            self.cpu_model, self.cores, self.memory_mib, self.kernel, self.kvm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: &str = "processor\t: 0\nmodel name\t: AMD EPYC-v3 Processor\nflags\t\t: fpu svm hypervisor\n\
                       processor\t: 1\nmodel name\t: AMD EPYC-v3 Processor\nflags\t\t: fpu svm hypervisor\n";

    #[test]
    fn the_rig_is_labelled_nested() {
        let m = Machine::from_facts(&Facts {
            cpuinfo: CPU.into(),
            kvm_device: true,
            in_rig: true,
            dmi_vendor: "QEMU".into(),
            ..Facts::default()
        });
        assert_eq!(
            (m.cpu_model.as_str(), m.cores, m.kvm.as_str()),
            ("AMD EPYC-v3 Processor", 2, "hardware")
        );
        assert!(m.nested.unwrap().contains("nested QEMU TCG rig"));
    }

    #[test]
    fn pvm_and_plain_hosts() {
        let pvm = Machine::from_facts(&Facts {
            cpuinfo: "processor: 0\nflags: fpu hypervisor\n".into(),
            kvm_device: true,
            pvm_module: true,
            ..Facts::default()
        });
        assert_eq!(pvm.kvm, "pvm");
        assert!(pvm.nested.unwrap().contains("PVM"));
        let bare = Machine::from_facts(&Facts {
            cpuinfo: "processor: 0\nflags: fpu vmx\n".into(),
            kvm_device: true,
            ..Facts::default()
        });
        assert_eq!((bare.kvm.as_str(), bare.nested), ("hardware", None));
    }
}
