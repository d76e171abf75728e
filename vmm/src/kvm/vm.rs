//! The VM: /dev/kvm, guest memory slots, the in-kernel irqchip and PIT, eventfd wiring.

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::{ioctl, KvmError};
use crate::layout::KVM_TSS_ADDRESS;
use crate::memory::GuestMemory;

/// An open KVM VM.
pub struct Vm {
    kvm: Kvm,
    fd: VmFd,
}

impl Vm {
    /// Opens /dev/kvm and creates an empty VM.
    pub fn new() -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(KvmError::ApiVersion(version));
        }
        for (cap, name) in [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::Irqfd, "KVM_CAP_IRQFD"),
            (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap(name));
            }
        }
        let fd = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        Ok(Self { kvm, fd })
    }

    /// The system /dev/kvm handle (supported CPUID, MSR lists).
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The VM file descriptor.
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// Registers every region of `mem` as a memory slot.
    pub fn map_memory(&self, mem: &GuestMemory) -> Result<(), KvmError> {
        for (slot, region) in mem.iter().enumerate() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|_| KvmError::MissingCap("host mapping of guest memory"))?;
            let region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region describes a live mapping owned by `mem`, which the caller keeps
            // alive for as long as the VM runs (the VM is dropped before the memory).
            unsafe { self.fd.set_user_memory_region(region) }
                .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }

    /// Creates the in-kernel IOAPIC + PIC + local APICs and the PIT. Must precede vCPU creation.
    pub fn create_irqchip(&self) -> Result<(), KvmError> {
        self.fd
            .set_tss_address(KVM_TSS_ADDRESS)
            .map_err(ioctl("KVM_SET_TSS_ADDR"))?;
        self.fd
            .create_irq_chip()
            .map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd.create_pit2(pit).map_err(ioctl("KVM_CREATE_PIT2"))
    }

    /// Makes a guest write to `addr` (MMIO) signal `event` inside the kernel, without a vCPU exit.
    pub fn register_mmio_ioevent(
        &self,
        event: &EventFd,
        addr: u64,
        data: u32,
    ) -> Result<(), KvmError> {
        self.fd
            .register_ioevent(event, &IoEventAddress::Mmio(addr), data)
            .map_err(ioctl("KVM_IOEVENTFD"))
    }

    /// Makes a write to `event` raise IOAPIC pin `gsi`.
    pub fn register_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), KvmError> {
        self.fd
            .register_irqfd(event, gsi)
            .map_err(ioctl("KVM_IRQFD"))
    }
}
