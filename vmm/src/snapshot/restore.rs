//! Resuming a VM from a snapshot: the files are read and checked against the VM's config
//! before anything is built, then the VM's state, the vCPUs and the devices are set back.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::file::{self, Snapshot};
use super::SnapshotError;
use crate::config::VmConfig;
use crate::devices::virtio::mmio::MmioTransport;
use crate::kvm::vcpu::Vcpu;
use crate::kvm::vm::Vm;
use crate::VmmError;

fn mismatch(dir: &Path, why: String) -> SnapshotError {
    SnapshotError::Invalid {
        path: dir.to_path_buf(),
        why,
    }
}

/// Reads the snapshot in `dir` and checks that it is of a VM shaped like `config`.
pub fn open(dir: &Path, config: &VmConfig) -> Result<(Snapshot, File), SnapshotError> {
    let (snap, memory) = file::read(dir)?;
    if snap.memory_mib != config.memory_mib {
        return Err(mismatch(
            dir,
            format!(
                "it is of a VM with {} MiB of memory, this one has {}",
                snap.memory_mib, config.memory_mib
            ),
        ));
    }
    if snap.vcpus.len() != usize::from(config.vcpus) {
        return Err(mismatch(
            dir,
            format!(
                "it is of a VM with {} vCPUs, this one has {}",
                snap.vcpus.len(),
                config.vcpus
            ),
        ));
    }
    let devices = config.disks.len()
        + usize::from(config.agent_socket.is_some())
        + usize::from(config.net.is_some());
    if snap.devices.len() != devices {
        return Err(mismatch(
            dir,
            format!(
                "it has {} virtio devices, this VM {devices}",
                snap.devices.len()
            ),
        ));
    }
    Ok((snap, memory))
}

/// Makes the snapshot's vCPUs with their state, sets the VM's state (after the vCPUs', as
/// Firecracker does: the IOAPIC then delivers to local APICs that are already set), and sets
/// each transport's state back (activating its device).
pub fn machine(
    dir: &Path,
    snap: &Snapshot,
    vm: &Vm,
    transports: &[Arc<Mutex<MmioTransport>>],
) -> Result<Vec<Vcpu>, VmmError> {
    let mut vcpus = Vec::with_capacity(snap.vcpus.len());
    for state in &snap.vcpus {
        let vcpu = Vcpu::new(vm, state.id)?;
        state.restore(vcpu.fd())?;
        vcpus.push(vcpu);
    }
    snap.vm.restore(vm.fd())?;
    for (transport, state) in transports.iter().zip(&snap.devices) {
        transport
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .restore(state)
            .map_err(|e| {
                VmmError::Snapshot(SnapshotError::Invalid {
                    path: dir.to_path_buf(),
                    why: e.to_string(),
                })
            })?;
    }
    Ok(vcpus)
}
