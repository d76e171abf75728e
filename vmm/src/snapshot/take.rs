//! Taking the snapshot a VMM was told to write, once the guest rang the doorbell and every
//! thread stopped: the files are opened before the guest runs, and written afterwards by a
//! thread that may no longer open anything.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::file::{self, Snapshot};
use super::vcpu::VcpuState;
use super::vm::VmState;
use super::SnapshotError;
use crate::devices::virtio::mmio::{MmioStateError, MmioTransport};
use crate::kvm::vcpu::Vcpu;
use crate::kvm::vm::Vm;
use crate::memory::GuestMemory;

/// How long device workers may take to park their queues once the VM stopped.
const PARK_GRACE: Duration = Duration::from_secs(2);

/// Where the snapshot goes: the two files, created empty before the guest runs.
pub struct Destination {
    dir: PathBuf,
    state: File,
    memory: File,
}

impl Destination {
    /// Creates `dir/state` and `dir/memory`, which must not exist.
    pub fn open(dir: &Path) -> Result<Self, SnapshotError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            state: file::create(&dir.join(file::STATE))?,
            memory: file::create(&dir.join(file::MEMORY))?,
        })
    }
}

/// What the VM was made of, for its snapshot.
pub struct Parts<'a> {
    /// The VM.
    pub vm: &'a Vm,
    /// Its vCPUs, by index, out of KVM_RUN.
    pub vcpus: Vec<Vcpu>,
    /// Its virtio transports, by slot.
    pub transports: &'a [Arc<Mutex<MmioTransport>>],
    /// Guest memory.
    pub mem: &'a GuestMemory,
    /// Its size.
    pub memory_mib: u32,
    /// The MSRs to save (read from /dev/kvm before the guest ran).
    pub msrs: &'a [u32],
}

/// Writes the snapshot of the stopped VM.
pub fn take(dest: &Destination, parts: Parts<'_>) -> Result<(), SnapshotError> {
    let Parts {
        vm,
        vcpus,
        transports,
        mem,
        memory_mib,
        msrs,
    } = parts;
    let mut states = Vec::with_capacity(vcpus.len());
    for mut vcpu in vcpus {
        vcpu.settle().map_err(|e| SnapshotError::Invalid {
            path: dest.dir.clone(),
            why: format!("cannot settle vCPU {}: {e}", vcpu.id()),
        })?;
        states.push(VcpuState::capture(vcpu.fd(), vcpu.id(), msrs)?);
    }
    let vm_state = VmState::capture(vm.fd())?;
    let deadline = Instant::now() + PARK_GRACE;
    let mut devices = Vec::with_capacity(transports.len());
    for transport in transports {
        let state = loop {
            let result = transport
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .snapshot();
            match result {
                Err(MmioStateError::NotParked(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => {
                    break other.map_err(|e| SnapshotError::Invalid {
                        path: dest.dir.clone(),
                        why: e.to_string(),
                    })?
                }
            }
        };
        devices.push(state);
    }
    let mut snap = Snapshot {
        vmm_version: env!("CARGO_PKG_VERSION").into(),
        memory_mib,
        vm: vm_state,
        vcpus: states,
        devices,
        memory_file: Default::default(),
    };
    file::write_files(&dest.dir, &dest.state, &dest.memory, &mut snap, mem)
}
