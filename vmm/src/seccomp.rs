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

/// Builds the filter for `action` on mismatch.
pub fn build(mismatch: SeccompAction) -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|nr| (*nr, Vec::new())).collect();
    let kvm_run = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, KVM_RUN)
        .map_err(SeccompError::Build)?;
    rules.insert(
        libc::SYS_ioctl,
        vec![SeccompRule::new(vec![kvm_run]).map_err(SeccompError::Build)?],
    );
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)?;
    Ok(filter.try_into()?)
}

/// The filter as configured by the environment (None when turned off).
pub fn from_env() -> Result<Option<Arc<BpfProgram>>, SeccompError> {
    let mode = std::env::var(MODE_ENV).unwrap_or_else(|_| "kill".into());
    let action = match mode.as_str() {
        "kill" => SeccompAction::KillProcess,
        "log" => SeccompAction::Log,
        "off" => return Ok(None),
        other => return Err(SeccompError::Mode(other.into())),
    };
    Ok(Some(Arc::new(build(action)?)))
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
