//! Capabilities, no_new_privs and seccomp filters of a process about to run a container's
//! workload: one implementation for both columns (nook's namespace column runs it in the
//! container's init, the agent in each process it starts in the guest).
//!
//! Every call here runs between fork and exec and makes only system calls on data prepared
//! before the fork: no allocation, no file reads.

use std::io;

/// The highest capability number this kernel knows (read before a fork).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Every capability a kernel whose last is `last_cap` knows, as a mask.
pub fn known(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// Capabilities to drop from the bounding set: all known to the kernel but not kept.
pub fn to_drop(last_cap: u32, keep: u64) -> impl Iterator<Item = u32> {
    (0..=last_cap.min(63)).filter(move |n| keep & (1 << n) == 0)
}

/// Drops every capability outside `keep` from the bounding set and clears the ambient set.
/// Needs CAP_SETPCAP, so it runs before the switch to the workload's user.
pub fn drop_bounding(keep: u64, last_cap: u32) -> io::Result<()> {
    for cap in to_drop(last_cap, keep) {
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

/// The process's capability sets, each its own (an OCI bundle's `process.capabilities`); the
/// bounding set is dropped separately ([`drop_bounding`]).
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

/// Sets no_new_privs: nothing the process executes gains privileges (setuid bits, file
/// capabilities), and it may install seccomp filters without CAP_SYS_ADMIN.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs the seccomp filter `program` (classic BPF instructions). Needs no_new_privs, or
/// CAP_SYS_ADMIN in the process's user namespace; leaves no_new_privs as it is.
pub fn install_filter(program: &[libc::sock_filter]) -> io::Result<()> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at `len` valid instructions, alive for the call; the kernel copies
    // them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A BPF program as the protocol carries it: 8 bytes an instruction (`code` u16, `jt` u8,
/// `jf` u8, `k` u32, little-endian).
pub fn program_to_bytes(program: &[libc::sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for i in program {
        out.extend(i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend(i.k.to_le_bytes());
    }
    out
}

/// The inverse of [`program_to_bytes`]; none when the length is not a whole number of
/// instructions.
pub fn program_from_bytes(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bytes.len() % 8 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_else_up_to_the_last_cap_is_dropped() {
        let keep = 0b1011;
        let drop: Vec<u32> = to_drop(40, keep).collect();
        assert_eq!(drop.len(), 41 - 3);
        assert!(drop.contains(&2) && drop.contains(&40) && !drop.contains(&0));
        assert!(!drop.contains(&41));
        assert_eq!(to_drop(40, known(40)).count(), 0);
        assert_eq!(known(40).count_ones(), 41);
        assert_eq!(known(63), u64::MAX);
    }

    #[test]
    fn programs_survive_the_wire() {
        let program = vec![
            libc::sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            libc::sock_filter {
                code: 0x06,
                jt: 1,
                jf: 2,
                k: 0x7fff_0000,
            },
        ];
        let bytes = program_to_bytes(&program);
        assert_eq!(bytes.len(), 16);
        let back = program_from_bytes(&bytes).unwrap();
        assert_eq!(program_to_bytes(&back), bytes);
        assert!(program_from_bytes(&bytes[..15]).is_none());
    }
}
