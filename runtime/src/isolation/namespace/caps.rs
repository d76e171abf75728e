//! Capabilities: the container's set (docker's default set, changed by `--cap-add`,
//! `--cap-drop` and `--privileged`, see [`crate::isolation::security`]) is kept, every other
//! capability is dropped from the bounding, effective, permitted, inheritable and ambient sets
//! before the workload runs.

use std::io;

/// Capabilities to drop from the bounding set: all known to the kernel but not kept.
pub fn to_drop(last_cap: u32, keep: u64) -> Vec<u32> {
    (0..=last_cap.min(63))
        .filter(|n| keep & (1 << n) == 0)
        .collect()
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops every capability outside `keep` from the bounding set and clears the ambient set.
/// Needs CAP_SETPCAP, so it runs before the switch to the workload's user.
pub fn drop_bounding(keep: u64) -> io::Result<()> {
    for cap in to_drop(last_cap(), keep) {
        // SAFETY: PR_CAPBSET_DROP takes a capability number; no pointers.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        // EINVAL: a capability this kernel does not know; nothing to drop.
        if ret < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Every capability a kernel whose last is `last_cap` knows, as a mask.
pub fn known(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// The process's capability sets, each its own (an OCI bundle's `process.capabilities`); the
/// bounding set is the confinement's mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// Sets the effective, permitted and inheritable sets to `mask`, which names only capabilities
/// the kernel knows (capset refuses others).
pub fn set(mask: u64) -> io::Result<()> {
    set_sets(&Sets {
        effective: mask,
        permitted: mask,
        inheritable: mask,
        ambient: 0,
    })
}

/// Sets the effective, permitted and inheritable sets of `sets`, then raises its ambient ones
/// (which the kernel allows only when they are permitted and inheritable).
pub fn set_sets(sets: &Sets) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |mask: u64, shift: u32| (mask >> shift) as u32;
    let data = [0, 32].map(|shift| CapData {
        effective: word(sets.effective, shift),
        permitted: word(sets.permitted, shift),
        inheritable: word(sets.inheritable, shift),
    });
    // SAFETY: header and data are valid, properly laid out (v3 takes two data words) and alive
    // for the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    for cap in (0..64).filter(|n| sets.ambient & (1 << n) != 0) {
        // SAFETY: PR_CAP_AMBIENT_RAISE takes a capability number; no pointers.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::security::default_caps as default_mask;

    #[test]
    fn the_default_set_is_dockers() {
        let mask = default_mask();
        assert_eq!(mask.count_ones(), 14);
        assert_ne!(mask & (1 << 0), 0, "CAP_CHOWN kept");
        assert_eq!(mask & (1 << 21), 0, "CAP_SYS_ADMIN dropped");
        assert_eq!(mask & (1 << 12), 0, "CAP_NET_ADMIN dropped");
        assert_eq!(mask & (1 << 19), 0, "CAP_SYS_PTRACE dropped");
    }

    #[test]
    fn everything_else_up_to_the_last_cap_is_dropped() {
        let drop = to_drop(40, default_mask());
        assert_eq!(drop.len(), 41 - 14);
        assert!(drop.contains(&21) && drop.contains(&40) && !drop.contains(&0));
        assert!(!drop.contains(&41));
        assert!(to_drop(40, known(40)).is_empty());
        assert_eq!(known(40).count_ones(), 41);
        assert_eq!(known(63), u64::MAX);
    }
}
