//! The default seccomp profile: a deny-list in the spirit of docker's default profile. The
//! syscalls docker refuses to a container with its default capabilities fail with EPERM;
//! `clone3` fails with ENOSYS so that libc falls back to `clone`, whose namespace flags can be
//! checked; `socket` and `personality` are refused for the arguments docker refuses.
//!
//! Docker's profile is an allow-list; a deny-list is simpler to audit and blocks the same
//! dangerous calls, at the cost of allowing syscalls newer than this list. The comparison with
//! docker's list is in docs/containers.md.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Syscalls refused outright.
pub const DENIED: &[(&str, i64)] = &[
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("bpf", libc::SYS_bpf),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_settime", libc::SYS_clock_settime),
    ("delete_module", libc::SYS_delete_module),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("finit_module", libc::SYS_finit_module),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("init_module", libc::SYS_init_module),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("kcmp", libc::SYS_kcmp),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("mbind", libc::SYS_mbind),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("move_pages", libc::SYS_move_pages),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("pivot_root", libc::SYS_pivot_root),
    ("process_madvise", libc::SYS_process_madvise),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("reboot", libc::SYS_reboot),
    ("request_key", libc::SYS_request_key),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
    ("setdomainname", libc::SYS_setdomainname),
    ("sethostname", libc::SYS_sethostname),
    ("setns", libc::SYS_setns),
    ("settimeofday", libc::SYS_settimeofday),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("sysfs", libc::SYS_sysfs),
    ("syslog", libc::SYS_syslog),
    ("umount2", libc::SYS_umount2),
    ("unshare", libc::SYS_unshare),
    ("uselib", libc::SYS_uselib),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("ustat", libc::SYS_ustat),
    ("vhangup", libc::SYS_vhangup),
    ("_sysctl", libc::SYS__sysctl),
];

/// `clone` flags that create namespaces: refused, as in docker's profile.
pub const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// The socket family docker refuses: `socket(AF_VSOCK, ...)` reaches the hypervisor's sockets.
pub const DENIED_SOCKET_FAMILY: u32 = libc::AF_VSOCK as u32;

/// The `personality` values docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32
/// and the query 0xffffffff. Any other (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...) is refused.
pub const ALLOWED_PERSONALITIES: &[u32] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn socket_rules() -> Result<Vec<SeccompRule>, seccompiler::Error> {
    Ok(vec![SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        DENIED_SOCKET_FAMILY.into(),
    )?])?])
}

/// One rule whose conditions all hold when the persona is none of the allowed values.
fn personality_rules() -> Result<Vec<SeccompRule>, seccompiler::Error> {
    let conditions = ALLOWED_PERSONALITIES
        .iter()
        .map(|p| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, (*p).into()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![SeccompRule::new(conditions)?])
}

fn clone_rules() -> Result<Vec<SeccompRule>, seccompiler::Error> {
    let mut rules = Vec::new();
    for bit in 0..64 {
        let flag = 1u64 << bit;
        if CLONE_NAMESPACE_FLAGS & flag != 0 {
            rules.push(SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?])?);
        }
    }
    Ok(rules)
}

/// The default profile as two programs: the deny-list (EPERM) and the clone3 refusal
/// (ENOSYS). Two filters because one seccompiler filter has one match action.
pub fn default_filters() -> Result<[BpfProgram; 2], seccompiler::Error> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    deny.insert(libc::SYS_clone, clone_rules()?);
    deny.insert(libc::SYS_socket, socket_rules()?);
    deny.insert(libc::SYS_personality, personality_rules()?);
    let deny: BpfProgram = SeccompFilter::new(
        deny,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )?
    .try_into()?;
    let clone3: BpfProgram = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        TargetArch::x86_64,
    )?
    .try_into()?;
    Ok([deny, clone3])
}

/// Installs `filters` in order. Needs no_new_privs, or CAP_SYS_ADMIN in the process's user
/// namespace. Unlike `seccompiler::apply_filter`, it leaves no_new_privs as it is: whether it is
/// set is the container's choice (`--security-opt no-new-privileges=false`).
pub fn apply(filters: &[BpfProgram]) -> std::io::Result<()> {
    for filter in filters {
        nook_agent::confine::install_filter(as_kernel(filter))?;
    }
    Ok(())
}

/// seccompiler's instructions as the kernel's (`struct sock_filter`, libc's type): the same
/// layout (tested below).
pub fn as_kernel(program: &BpfProgram) -> &[libc::sock_filter] {
    // SAFETY: seccompiler's sock_filter is `#[repr(C)]` with the kernel's fields in the
    // kernel's order, the size and alignment of libc's (the test checks both); the slice
    // borrows `program`.
    unsafe { std::slice::from_raw_parts(program.as_ptr().cast(), program.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccompilers_instructions_are_the_kernels() {
        assert_eq!(
            std::mem::size_of::<seccompiler::sock_filter>(),
            std::mem::size_of::<libc::sock_filter>()
        );
        assert_eq!(
            std::mem::align_of::<seccompiler::sock_filter>(),
            std::mem::align_of::<libc::sock_filter>()
        );
    }

    #[test]
    fn the_profile_compiles_and_covers_the_dangerous_calls() {
        let [deny, clone3] = default_filters().unwrap();
        assert!(!deny.is_empty() && !clone3.is_empty());
        for name in [
            "kexec_load",
            "init_module",
            "mount",
            "unshare",
            "setns",
            "bpf",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
        ] {
            assert!(DENIED.iter().any(|(n, _)| *n == name), "{name}");
        }
        for allowed in [
            "clone",
            "execve",
            "socket",
            "personality",
            "ptrace",
            "chroot",
        ] {
            assert!(!DENIED.iter().any(|(n, _)| *n == allowed), "{allowed}");
        }
    }
}
