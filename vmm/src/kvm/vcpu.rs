//! One vCPU and its run loop: exits are dispatched to the buses until the VM stops.

use std::sync::Once;

use kvm_ioctls::{VcpuExit, VcpuFd};

use super::vm::Vm;
use super::{ioctl, KvmError};
use crate::bus::Bus;
use crate::exit::{ExitSignal, StopReason, VmExit};

use kvm_bindings::{KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};

/// Why a vCPU stopped running the guest: the guest or KVM broke.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// VM entry failed.
    #[error(
        "vCPU {id}: KVM could not enter the guest (hardware reason {reason:#x} on host CPU {cpu})"
    )]
    FailEntry {
        /// vCPU index.
        id: u8,
        /// hardware_entry_failure_reason.
        reason: u64,
        /// Host CPU.
        cpu: u32,
    },
    /// KVM reported an internal error.
    #[error("vCPU {id}: KVM internal error (suberror {suberror}, data {data:x?})")]
    Internal {
        /// vCPU index.
        id: u8,
        /// KVM_INTERNAL_ERROR_* code.
        suberror: u32,
        /// The data words KVM gave.
        data: Vec<u64>,
    },
    /// An exit the VMM does not handle.
    #[error("vCPU {id}: unexpected exit {exit}")]
    UnexpectedExit {
        /// vCPU index.
        id: u8,
        /// The exit, as KVM reported it.
        exit: String,
    },
    /// The KVM_RUN ioctl failed.
    #[error("vCPU {id}: KVM_RUN failed")]
    Run {
        /// vCPU index.
        id: u8,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// The port I/O and MMIO buses every vCPU dispatches to.
#[derive(Clone, Default)]
pub struct Buses {
    /// x86 I/O ports.
    pub pio: Bus,
    /// Memory-mapped I/O.
    pub mmio: Bus,
}

/// A vCPU file descriptor with its index.
pub struct Vcpu {
    id: u8,
    fd: VcpuFd,
}

impl Vcpu {
    /// Creates vCPU `id` in `vm`.
    pub fn new(vm: &Vm, id: u8) -> Result<Self, KvmError> {
        let fd = vm
            .fd()
            .create_vcpu(u64::from(id))
            .map_err(ioctl("KVM_CREATE_VCPU"))?;
        Ok(Self { id, fd })
    }

    /// The vCPU index (also its APIC id).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The vCPU file descriptor, for register setup.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// Runs the guest until the VM stops. Returns an error for exits that mean the guest or KVM
    /// broke; the caller turns it into the VM's failure.
    pub fn run(&mut self, buses: &Buses, exit: &ExitSignal) -> Result<(), VcpuError> {
        let id = self.id;
        // NOOK_VMM_EXIT_STATS=1 counts userspace exits per port / MMIO page, printed at the end:
        // each one is a round trip through the VMM, the first thing to look at when boots are slow.
        let mut stats = std::env::var_os("NOOK_VMM_EXIT_STATS").map(|_| ExitStats::default());
        let result = self.run_loop(buses, exit, &mut stats);
        if let Some(stats) = stats {
            stats.print(id);
        }
        result
    }

    fn run_loop(
        &mut self,
        buses: &Buses,
        exit: &ExitSignal,
        stats: &mut Option<ExitStats>,
    ) -> Result<(), VcpuError> {
        let id = self.id;
        while !exit.is_stopping() {
            match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    count(stats, "pio", u64::from(port));
                    buses.pio.read(u64::from(port), data);
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    count(stats, "pio", u64::from(port));
                    buses.pio.write(u64::from(port), data);
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    count(stats, "mmio", addr & !0xfff);
                    buses.mmio.read(addr, data);
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    count(stats, "mmio", addr & !0xfff);
                    buses.mmio.write(addr, data);
                }
                Ok(VcpuExit::Hlt) => exit.stop(StopReason::Exit(VmExit::Halted)),
                // A triple fault: what `reboot=t` does, and what a crashing early kernel does.
                Ok(VcpuExit::Shutdown) => exit.stop(StopReason::Exit(VmExit::Reset)),
                Ok(VcpuExit::SystemEvent(kind, _))
                    if kind == KVM_SYSTEM_EVENT_RESET || kind == KVM_SYSTEM_EVENT_SHUTDOWN =>
                {
                    exit.stop(StopReason::Exit(VmExit::Reset))
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    return Err(VcpuError::FailEntry { id, reason, cpu })
                }
                Ok(VcpuExit::InternalError) => return Err(self.internal_error()),
                Ok(other) => {
                    return Err(VcpuError::UnexpectedExit {
                        id,
                        exit: format!("{other:?}"),
                    })
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    // Kicked by `kick` or any signal: re-check the stop flag.
                }
                Err(source) => return Err(VcpuError::Run { id, source }),
            }
        }
        Ok(())
    }

    /// Lets KVM finish what the last exit left pending (the data of a port or MMIO read is
    /// only taken in on the next entry) without running guest code, so that the state read
    /// next is whole: `KVM_RUN` with `immediate_exit` set returns before entering the guest.
    pub fn settle(&mut self) -> Result<(), VcpuError> {
        self.fd.set_kvm_immediate_exit(1);
        let result = self.fd.run().map(|_| ());
        self.fd.set_kvm_immediate_exit(0);
        match result {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Ok(()) => Ok(()),
            Err(source) => Err(VcpuError::Run {
                id: self.id,
                source,
            }),
        }
    }

    fn internal_error(&mut self) -> VcpuError {
        let run = self.fd.get_kvm_run();
        // SAFETY: KVM filled the `internal` member of the union for KVM_EXIT_INTERNAL_ERROR.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let n = (internal.ndata as usize).min(internal.data.len());
        VcpuError::Internal {
            id: self.id,
            suberror: internal.suberror,
            data: internal.data[..n].to_vec(),
        }
    }
}

/// Userspace exits by kind and address (port, or MMIO page).
#[derive(Default)]
struct ExitStats(std::collections::BTreeMap<(&'static str, u64), u64>);

impl ExitStats {
    fn print(&self, id: u8) {
        let mut top: Vec<_> = self.0.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        let total: u64 = self.0.values().sum();
        let lines: Vec<String> = top
            .iter()
            .take(12)
            .map(|((kind, addr), n)| format!("{kind} {addr:#x}: {n}"))
            .collect();
        eprintln!(
            "nook-vmm: vCPU {id}: {total} userspace exits; {}",
            lines.join(", ")
        );
    }
}

fn count(stats: &mut Option<ExitStats>, kind: &'static str, addr: u64) {
    if let Some(stats) = stats {
        *stats.0.entry((kind, addr)).or_default() += 1;
    }
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The signal used to pull a vCPU thread out of KVM_RUN.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

/// Installs the (empty) handler of the kick signal, once per process. Without a handler the
/// signal would kill the process; with one, KVM_RUN returns EINTR.
pub fn install_kick_handler() -> Result<(), KvmError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .map_err(|e| KvmError::Ioctl {
                call: "sigaction(SIGRTMIN)",
                source: kvm_ioctls::Error::new(e.errno()),
            });
    });
    result
}

/// Interrupts `thread` if it sits in KVM_RUN.
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: the thread id comes from a JoinHandle that has not been joined yet, so it is valid;
    // the signal has a handler installed by `install_kick_handler`.
    unsafe { libc::pthread_kill(thread, kick_signal()) };
}
