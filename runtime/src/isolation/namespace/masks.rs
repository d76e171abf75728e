//! The parts of /proc and /sys a container must not read or write, hidden as docker hides them:
//! kernel memory, keys, timers and firmware are masked (an empty file or an empty read-only
//! directory over them), and the kernel's tunables are read-only. The container's root owns its
//! user namespace, so without this it could read what the host's root left world-readable there
//! and write the sysctls its namespaces own.

use std::path::Path;

use super::sys::{MountError, Sys};

/// Hidden: docker's default `MaskedPaths`.
pub const MASKED: [&str; 11] = [
    "proc/asound",
    "proc/acpi",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Read-only: docker's default `ReadonlyPaths`.
pub const READ_ONLY: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

const RO: libc::c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Applies both lists under `root` (the new root, before pivot_root). A path this kernel does
/// not have is skipped: there is nothing to hide.
pub fn apply(sys: &dyn Sys, root: &Path) -> Result<(), MountError> {
    apply_lists(sys, root, &MASKED, &READ_ONLY)
}

/// Masks `masked` and makes `read_only` read-only under `root`: paths relative to it (an OCI
/// bundle's `maskedPaths` and `readonlyPaths` without their leading `/`).
pub fn apply_lists<S: AsRef<str>>(
    sys: &dyn Sys,
    root: &Path,
    masked: &[S],
    read_only: &[S],
) -> Result<(), MountError> {
    for rel in masked {
        let rel = rel.as_ref().trim_start_matches('/');
        let path = root.join(rel);
        // A file is covered by the host's /dev/null, a directory by an empty read-only tmpfs;
        // which one it is shows in the bind's error, so no stat of /proc is needed.
        let masked = match sys.mount("/dev/null", &path, None, libc::MS_BIND, None) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                sys.mount("tmpfs", &path, Some("tmpfs"), RO, Some("size=0"))
            }
            other => other,
        };
        match masked {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => r.map_err(|source| MountError {
                step: "mask",
                path: path.clone(),
                source,
            })?,
        }
    }
    for rel in read_only {
        let path = root.join(rel.as_ref().trim_start_matches('/'));
        let bound = sys.mount(
            &path.to_string_lossy(),
            &path,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        );
        match bound {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            r => r.map_err(|source| MountError {
                step: "bind-mount read-only",
                path: path.clone(),
                source,
            })?,
        }
        sys.mount(
            "none",
            &path,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | RO,
            None,
        )
        .map_err(|source| MountError {
            step: "remount read-only",
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::sys::recording::RecordingSys;
    use super::*;

    #[test]
    fn files_get_dev_null_and_directories_an_empty_read_only_tmpfs() {
        let sys = RecordingSys {
            fail: vec!["mount /dev/null /r/proc/acpi".into()],
            fail_errno: Some(libc::ENOTDIR),
            ..Default::default()
        };
        apply(&sys, Path::new("/r")).unwrap();
        let lines = sys.lines();
        assert!(lines
            .iter()
            .any(|l| l.starts_with("mount /dev/null /r/proc/kcore - 0x1000")));
        assert!(lines.contains(&format!("mount tmpfs /r/proc/acpi tmpfs {RO:#x} size=0")));
        let remount = libc::MS_REMOUNT | libc::MS_BIND | RO;
        for rel in READ_ONLY {
            assert!(lines.contains(&format!("mount none /r/{rel} - {remount:#x} -")));
        }
    }

    #[test]
    fn missing_paths_are_skipped_and_other_failures_named() {
        let sys = RecordingSys {
            fail: vec!["mount /dev/null /r/proc/keys".into()],
            fail_errno: Some(libc::ENOENT),
            ..Default::default()
        };
        apply(&sys, Path::new("/r")).unwrap();

        let sys = RecordingSys {
            fail: vec!["mount /dev/null /r/proc/keys".into()],
            fail_errno: Some(libc::EPERM),
            ..Default::default()
        };
        let err = apply(&sys, Path::new("/r")).unwrap_err();
        assert_eq!(err.to_string(), "cannot mask /r/proc/keys");
    }
}
