//! The namespace column's volumes, bind mounts and tmpfs mounts ([`MountSpec`]), applied by the
//! container's init in its own user and mount namespaces, after the root is built and before
//! `pivot_root`. Every target is resolved inside the container's root with
//! `openat2(RESOLVE_IN_ROOT)` ([`Rooted`]), so a symlink in the image or the writable layer can
//! never put a mount outside it; a missing target is made in the writable layer and recorded
//! beside it (`nook_agent::layer::targets`), so that `diff` and `commit` leave it out. An empty
//! volume mounted over a directory of the image is first filled with that directory's files,
//! owners kept (docker's copy-up). `ro` is a read-only remount that keeps the flags the kernel
//! locks in a user namespace; the container cannot undo it (no `CAP_SYS_ADMIN`, no `mount` in
//! its seccomp profile).

use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use nook_agent::guest::mounts::{MountOps, SysMounts};
use nook_agent::layer::targets::{MountTargets, TargetKind};

use super::rooted::{fd_path, Rooted};
use crate::isolation::copy::{self, IntoSink, Owners, Sink};
use crate::isolation::mounts::MountSpec;

/// Applies `mounts` in order over the root `ops` opens; the targets made are added to the
/// record at `record`. Returns why a mount failed.
pub fn apply(ops: &mut Rooted, mounts: &[MountSpec], record: &Path) -> Result<(), String> {
    for m in mounts {
        apply_one(ops, m, record).map_err(|e| format!("cannot mount {}: {e}", describe(m)))?;
    }
    Ok(())
}

fn describe(m: &MountSpec) -> String {
    match m {
        MountSpec::Bind {
            source,
            target,
            volume: Some(v),
            ..
        } => format!("volume {v} ({}) on {target}", source.display()),
        MountSpec::Bind { source, target, .. } => format!("{} on {target}", source.display()),
        MountSpec::Tmpfs { target, .. } => format!("a tmpfs on {target}"),
    }
}

fn apply_one(ops: &mut Rooted, m: &MountSpec, record: &Path) -> Result<(), String> {
    let target = Path::new(m.target());
    let dir_target = match m {
        MountSpec::Bind { source, .. } => std::fs::metadata(source)
            .map_err(|e| format!("{}: {e}", source.display()))?
            .is_dir(),
        MountSpec::Tmpfs { .. } => true,
    };
    make_target(ops, target, dir_target, record)?;
    match m {
        MountSpec::Bind {
            source,
            volume,
            readonly,
            ..
        } => {
            if volume.is_some() {
                copy_up(ops, source, target)?;
            }
            let at = ops
                .open(target, libc::O_PATH, 0)
                .map_err(|e| e.to_string())?;
            SysMounts
                .mount(
                    &source.to_string_lossy(),
                    &fd_path(&at),
                    "",
                    libc::MS_BIND | libc::MS_REC,
                    "",
                )
                .map_err(|e| e.to_string())?;
            if *readonly {
                remount_read_only(ops, target)?;
            }
        }
        MountSpec::Tmpfs {
            size,
            mode,
            readonly,
            ..
        } => {
            let mut data = format!("mode={:o}", mode.unwrap_or(0o1777));
            if let Some(size) = size {
                data.push_str(&format!(",size={size}"));
            }
            let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
            if *readonly {
                flags |= libc::MS_RDONLY;
            }
            let at = ops
                .open(target, libc::O_PATH, 0)
                .map_err(|e| e.to_string())?;
            SysMounts
                .mount("tmpfs", &fd_path(&at), "tmpfs", flags, &data)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Makes `target` (a directory, or an empty file for a file's bind mount) where it is missing,
/// its missing parents too, and records what was made.
pub(super) fn make_target(
    ops: &mut Rooted,
    target: &Path,
    dir: bool,
    record: &Path,
) -> Result<(), String> {
    if ops.exists(target) {
        return Ok(());
    }
    let mut made: Vec<(PathBuf, TargetKind)> = target
        .ancestors()
        .skip(1)
        .filter(|d| d.parent().is_some())
        .take_while(|d| !ops.exists(d))
        .map(|d| (d.to_path_buf(), TargetKind::Dir))
        .collect();
    made.reverse();
    let fail = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| format!("cannot create {p}: {e}")
    };
    if dir {
        ops.mkdir_all(target).map_err(fail(target))?;
        made.push((target.to_path_buf(), TargetKind::Dir));
    } else {
        if let Some(parent) = target.parent() {
            ops.mkdir_all(parent).map_err(fail(parent))?;
        }
        ops.touch(target).map_err(fail(target))?;
        made.push((target.to_path_buf(), TargetKind::File));
    }
    let why = |e: &dyn std::error::Error| {
        format!(
            "cannot record the mount targets made: {}",
            crate::errors::chain(e)
        )
    };
    let mut targets = MountTargets::load(record).map_err(|e| why(&e))?;
    for (path, kind) in &made {
        targets.insert(path, *kind).map_err(|e| why(&e))?;
    }
    targets.save(record).map_err(|e| why(&e))
}

/// docker's copy-up: an empty volume mounted over a directory the root has files in gets them
/// (and the directory's owner and mode), read through descriptors below the root.
fn copy_up(ops: &Rooted, data: &Path, target: &Path) -> Result<(), String> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| format!("copy-up: {what}: {e}")
    };
    let empty = std::fs::read_dir(data)
        .map_err(io("read the volume"))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    let src = match ops.open(
        target,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    ) {
        Ok(fd) => fd,
        // Not a directory (or a symlink): nothing to copy.
        Err(_) => return Ok(()),
    };
    let mut has_entries = std::fs::read_dir(fd_path(&src))
        .map_err(io("read the image's directory"))?
        .peekable();
    if has_entries.peek().is_none() {
        return Ok(());
    }
    let dst = std::fs::File::open(data).map_err(io("open the volume"))?;
    let mut sink = Sink::new(dst.into(), Owners::Keep);
    nook_agent::layer::walk::walk(
        src.as_fd(),
        nook_agent::layer::walk::Mode::Plain,
        &MountTargets::default(),
        &mut IntoSink {
            sink: &mut sink,
            base: PathBuf::new(),
        },
    )
    .map_err(|e| format!("copy-up: {}", crate::errors::chain(&e)))?;
    let stat = copy::stat_fd(src.as_fd()).map_err(io("stat the image's directory"))?;
    sink.put(Path::new(""), &copy::Meta::of(&stat), copy::Content::Dir)
        .map_err(io("set the volume's owner"))?;
    sink.finish().map_err(io("set times")).map(drop)
}

/// Makes the mount at `target` read-only, keeping the flags a user namespace locks (`nosuid`,
/// `nodev`, `noexec`, the atime ones): a remount that drops one is refused with EPERM.
fn remount_read_only(ops: &Rooted, target: &Path) -> Result<(), String> {
    remount_with(ops, target, libc::MS_RDONLY).map_err(|e| format!("cannot make it read-only: {e}"))
}

/// Remounts the bind mount at `target` with `flags` (`MS_RDONLY`, `MS_NOSUID`, ...) added to
/// the ones a user namespace locks.
pub(super) fn remount_with(
    ops: &Rooted,
    target: &Path,
    flags: libc::c_ulong,
) -> Result<(), String> {
    // Opened again: the descriptor from before the bind names the directory under the mount.
    let at = ops
        .open(target, libc::O_PATH, 0)
        .map_err(|e| e.to_string())?;
    // SAFETY: statvfs is plain data; fstatvfs fills it from an open descriptor.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatvfs(at.as_raw_fd(), &mut st) } < 0 {
        return Err(format!(
            "cannot read the mount's flags: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut flags = libc::MS_REMOUNT | libc::MS_BIND | flags;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    if st.f_flag & (libc::ST_NOATIME | libc::ST_RELATIME) == 0
        && flags & (libc::MS_NOATIME | libc::MS_RELATIME) == 0
    {
        // Without an atime flag a remount means relatime, a change of a locked flag.
        flags |= libc::MS_STRICTATIME;
    }
    SysMounts
        .mount("none", &fd_path(&at), "", flags, "")
        .map_err(|e| e.to_string())
}
