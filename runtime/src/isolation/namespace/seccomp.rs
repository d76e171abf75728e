//! The default seccomp profile: a deny-list in the spirit of docker's default profile. The
//! syscalls docker refuses to a container without extra capabilities fail with EPERM; `clone3`
//! fails with ENOSYS so that libc falls back to `clone`, whose namespace flags can be checked.
//!
//! Docker's profile is an allow-list; a deny-list is simpler to audit and blocks the same
//! dangerous calls, at the cost of allowing syscalls newer than this list.

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
    ("finit_module", libc::SYS_finit_module),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("init_module", libc::SYS_init_module),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pivot_root", libc::SYS_pivot_root),
    ("quotactl", libc::SYS_quotactl),
    ("reboot", libc::SYS_reboot),
    ("request_key", libc::SYS_request_key),
    ("setns", libc::SYS_setns),
    ("settimeofday", libc::SYS_settimeofday),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("syslog", libc::SYS_syslog),
    ("umount2", libc::SYS_umount2),
    ("unshare", libc::SYS_unshare),
    ("uselib", libc::SYS_uselib),
    ("userfaultfd", libc::SYS_userfaultfd),
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

/// Installs the default profile. no_new_privs must be set first.
pub fn apply(filters: &[BpfProgram; 2]) -> Result<(), seccompiler::Error> {
    for filter in filters {
        seccompiler::apply_filter(filter)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert!(DENIED.iter().any(|(n, _)| *n == name), "{name}");
        }
        assert!(!DENIED.iter().any(|(n, _)| *n == "clone" || *n == "execve"));
    }
}
