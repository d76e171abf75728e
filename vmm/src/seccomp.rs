//! The seccomp filter of every VMM thread: what a vCPU or device thread needs, nothing more.
//! No open, no exec, no new sockets; ioctl only for KVM_RUN.

use std::collections::BTreeMap;
use std::sync::Arc;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// `NOOK_VMM_SECCOMP=log` logs violations instead of killing; `off` disables the filter.
pub const MODE_ENV: &str = "NOOK_VMM_SECCOMP";

/// KVM_RUN = _IO(0xAE, 0x80).
const KVM_RUN: u64 = 0xae80;

/// Errors building the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler refused the rules.
    #[error("cannot build the seccomp filter")]
    Build(#[from] seccompiler::BackendError),
    /// The mode variable has an unknown value.
    #[error("{MODE_ENV}={0} is not one of kill, log, off")]
    Mode(String),
}

const ALLOWED: &[i64] = &[
    // I/O on descriptors the VMM already holds.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    // std's UnixStream reads and writes: the agent console and the passt socket of virtio-net.
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_close,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_fcntl,
    // Memory and threads (allocator, device threads started at activation).
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_prctl,
    libc::SYS_seccomp,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_getpid,
    // Signals (the vCPU kick) and time.
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

mod kvm_get {
    #![allow(non_snake_case)]
    use kvm_bindings::*;
    use vmm_sys_util::{ioctl_ior_nr, ioctl_iowr_nr};
    const KVMIO: u32 = 0xAE;
    ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
    ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
    ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
    ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_lapic_state);
    ioctl_iowr_nr!(KVM_GET_CPUID2, KVMIO, 0x91, kvm_cpuid2);
    ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_mp_state);
    ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
    ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_debugregs);
    ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_xsave);
    ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_xcrs);
    ioctl_iowr_nr!(KVM_GET_IRQCHIP, KVMIO, 0x62, kvm_irqchip);
    ioctl_ior_nr!(KVM_GET_CLOCK, KVMIO, 0x7c, kvm_clock_data);
    ioctl_ior_nr!(KVM_GET_PIT2, KVMIO, 0x9f, kvm_pit_state2);

    /// Every KVM_GET_* a snapshot makes.
    pub fn all() -> Vec<u64> {
        [
            KVM_GET_REGS(),
            KVM_GET_SREGS(),
            KVM_GET_MSRS(),
            KVM_GET_LAPIC(),
            KVM_GET_CPUID2(),
            KVM_GET_MP_STATE(),
            KVM_GET_VCPU_EVENTS(),
            KVM_GET_DEBUGREGS(),
            KVM_GET_XSAVE(),
            KVM_GET_XCRS(),
            KVM_GET_IRQCHIP(),
            KVM_GET_CLOCK(),
            KVM_GET_PIT2(),
        ]
        .to_vec()
    }
}

/// What a thread may do besides [`ALLOWED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    /// Nothing: device and vCPU threads.
    None,
    /// The main thread of a VMM told to write a snapshot: after the VM stopped it reads the
    /// vCPUs' and the VM's state (KVM_GET_* ioctls) and writes files it opened before the guest
    /// ran (fstat, ftruncate). Still no open, no exec, no socket.
    Snapshot,
}

/// Builds the filter for `action` on mismatch.
pub fn build(mismatch: SeccompAction) -> Result<BpfProgram, SeccompError> {
    build_with(mismatch, Extra::None)
}

/// [`build`] with the calls of `extra` allowed too.
pub fn build_with(mismatch: SeccompAction, extra: Extra) -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|nr| (*nr, Vec::new())).collect();
    let mut ioctls = vec![KVM_RUN];
    if extra == Extra::Snapshot {
        ioctls.extend(kvm_get::all());
        for nr in [
            libc::SYS_fstat,
            libc::SYS_newfstatat,
            libc::SYS_statx,
            libc::SYS_ftruncate,
        ] {
            rules.insert(nr, Vec::new());
        }
    }
    let mut ioctl_rules = Vec::new();
    for request in ioctls {
        let cond = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
            .map_err(SeccompError::Build)?;
        ioctl_rules.push(SeccompRule::new(vec![cond]).map_err(SeccompError::Build)?);
    }
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)?;
    Ok(filter.try_into()?)
}

/// The action on a mismatch as configured by the environment (None when turned off).
fn action_from_env() -> Result<Option<SeccompAction>, SeccompError> {
    let mode = std::env::var(MODE_ENV).unwrap_or_else(|_| "kill".into());
    Ok(Some(match mode.as_str() {
        "kill" => SeccompAction::KillProcess,
        "log" => SeccompAction::Log,
        "off" => return Ok(None),
        other => return Err(SeccompError::Mode(other.into())),
    }))
}

/// The filter as configured by the environment (None when turned off).
pub fn from_env() -> Result<Option<Arc<BpfProgram>>, SeccompError> {
    from_env_with(Extra::None)
}

/// [`from_env`] with the calls of `extra` allowed too.
pub fn from_env_with(extra: Extra) -> Result<Option<Arc<BpfProgram>>, SeccompError> {
    match action_from_env()? {
        Some(action) => Ok(Some(Arc::new(build_with(action, extra)?))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{ExitSignal, StopReason};

    #[test]
    fn filtered_thread_can_work_but_not_open_files() {
        // EPERM instead of a kill, so the test can observe the refusal.
        let filter = Arc::new(build(SeccompAction::Errno(libc::EPERM as u32)).unwrap());
        let exit = Arc::new(ExitSignal::new().unwrap());
        let handle = crate::thread::spawn("filtered", Some(filter), exit.clone(), || {
            let v: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
            std::hint::black_box(&v);
            std::fs::File::open("/etc/hostname").map(drop)
        })
        .unwrap();
        handle.join().unwrap();
        // The open's error reaches the stop reason: EPERM from the filter, not a kill.
        let Some(StopReason::Failed(e)) = exit.wait(None) else {
            panic!("the open must have failed");
        };
        let source = std::error::Error::source(&*e).expect("the open's error");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::EPERM), "{io}");
    }
}
