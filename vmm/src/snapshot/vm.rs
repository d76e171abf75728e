//! The VM-wide state KVM keeps: the two 8259 PICs, the IOAPIC, the PIT and the KVM clock.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_CLOCK_TSC_STABLE, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::{kvm, SnapshotError};

/// The in-kernel devices of a VM made by [`crate::kvm::vm::Vm::create_irqchip`], and its clock.
#[derive(Clone, Serialize, Deserialize)]
pub struct VmState {
    /// Master and slave PIC, then the IOAPIC.
    pub irqchips: Vec<kvm_irqchip>,
    /// The PIT's channels.
    pub pit: kvm_pit_state2,
    /// kvmclock at the time of the capture.
    pub clock: kvm_clock_data,
}

const CHIPS: [u32; 3] = [
    KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQCHIP_IOAPIC,
];

impl VmState {
    /// Reads the state of a VM whose vCPUs are all out of KVM_RUN.
    pub fn capture(vm: &VmFd) -> Result<Self, SnapshotError> {
        let mut irqchips = Vec::with_capacity(CHIPS.len());
        for chip_id in CHIPS {
            let mut chip = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            vm.get_irqchip(&mut chip)
                .map_err(kvm("the VM", "KVM_GET_IRQCHIP"))?;
            irqchips.push(chip);
        }
        let pit = vm.get_pit2().map_err(kvm("the VM", "KVM_GET_PIT2"))?;
        let mut clock = vm.get_clock().map_err(kvm("the VM", "KVM_GET_CLOCK"))?;
        // KVM_SET_CLOCK refuses this flag: it only reports a property of the host.
        clock.flags &= !KVM_CLOCK_TSC_STABLE;
        Ok(Self {
            irqchips,
            pit,
            clock,
        })
    }

    /// Sets the state back into a VM that has its irqchip and PIT and no running vCPU.
    pub fn restore(&self, vm: &VmFd) -> Result<(), SnapshotError> {
        vm.set_pit2(&self.pit)
            .map_err(kvm("the VM", "KVM_SET_PIT2"))?;
        vm.set_clock(&self.clock)
            .map_err(kvm("the VM", "KVM_SET_CLOCK"))?;
        for chip in &self.irqchips {
            vm.set_irqchip(chip)
                .map_err(kvm("the VM", "KVM_SET_IRQCHIP"))?;
        }
        Ok(())
    }

    /// Whether the state has the chips a VM of this VMM has, in order.
    pub fn check(&self) -> Result<(), String> {
        let ids: Vec<u32> = self.irqchips.iter().map(|c| c.chip_id).collect();
        if ids != CHIPS {
            return Err(format!("irqchip ids {ids:?}, expected {CHIPS:?}"));
        }
        Ok(())
    }
}
