//! Checkpoints of a VM container (`nook checkpoint create|ls|rm`, `nook start --checkpoint`):
//! the snapshot its VMM wrote when told to (vCPUs, devices, guest memory), the writable disk as
//! it was at that moment, and what the restore checks first.
//!
//! Every checkpointable VM boots with an empty `checkpoint.pending/` in the container's
//! directory, whose files its VMM creates before the guest runs. `create` pauses the agent's
//! channel between two frames, triggers the snapshot (the VMM ends), then moves that directory
//! to `checkpoints/NAME/` beside a copy of the writable disk and `meta.json`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nook_vmm::snapshot::file::FileIdentity;
use serde::{Deserialize, Serialize};

use super::boot::io;
use super::{disk, Machine, VmError};

/// The directory a running VM's snapshot is written into.
pub const PENDING: &str = "checkpoint.pending";
/// Where a container's checkpoints are kept.
const CHECKPOINTS: &str = "checkpoints";
const META: &str = "meta.json";
const UPPER: &str = "upper.ext4";
/// How long the VMM may take to write its snapshot and end.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

/// What a checkpoint records besides the snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    pub created: DateTime<Utc>,
    /// The agent stream of the main process, and the first stream no process uses.
    pub main_stream: u32,
    pub next_stream: u32,
    /// The image's EROFS disk the guest had open: a restore refuses any other.
    pub image_disk: PathBuf,
    pub image_identity: FileIdentity,
    /// Whether the container had a writable disk (else its layer lived in guest memory).
    pub upper_disk: bool,
}

/// One checkpoint, for `nook checkpoint ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub created: DateTime<Utc>,
}

/// The checkpoint a container starts from.
#[derive(Clone, Debug)]
pub struct Resume {
    pub dir: PathBuf,
    pub meta: Meta,
}

fn fail(name: &str, why: impl Into<String>) -> VmError {
    VmError::Checkpoint {
        name: name.to_string(),
        why: why.into(),
    }
}

/// docker's rule for checkpoint names.
pub fn check_name(name: &str) -> Result<(), VmError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(fail(
            name,
            "invalid name: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
        ))
    }
}

fn checkpoint_dir(dir: &Path, name: &str) -> Result<PathBuf, VmError> {
    check_name(name)?;
    Ok(dir.join(CHECKPOINTS).join(name))
}

/// Empties `checkpoint.pending/` for a VM about to boot; its VMM creates the files.
pub(super) fn fresh_pending(dir: &Path) -> Result<PathBuf, VmError> {
    let pending = dir.join(PENDING);
    match fs::remove_dir_all(&pending) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove", &pending)(e)),
    }
    fs::create_dir(&pending).map_err(io("create", &pending))?;
    Ok(pending)
}

/// Checks that `name` is free before a VM is paused for it.
pub fn check_free(dir: &Path, name: &str) -> Result<(), VmError> {
    if checkpoint_dir(dir, name)?.exists() {
        return Err(fail(name, "a checkpoint of that name exists"));
    }
    Ok(())
}

/// Waits for the VMM `vmm` to end once its snapshot was triggered.
pub(super) fn wait_vmm_gone(name: &str, vmm: i32) -> Result<(), VmError> {
    let start = std::time::Instant::now();
    // SAFETY: kill with signal 0 only checks that the process exists.
    while unsafe { libc::kill(vmm, 0) } == 0 {
        if start.elapsed() > SNAPSHOT_TIMEOUT {
            return Err(fail(
                name,
                format!("the VMM (pid {vmm}) did not end within {SNAPSHOT_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Keeps the snapshot the stopped VM wrote into `checkpoint.pending/` as checkpoint `name`,
/// with a copy of the writable disk. A snapshot that does not read back whole is not kept.
pub(super) fn keep(
    dir: &Path,
    name: &str,
    machine: &Machine,
    paused: (u32, u32),
) -> Result<(), VmError> {
    let pending = dir.join(PENDING);
    nook_vmm::snapshot::file::read(&pending)
        .map_err(|e| fail(name, format!("the VM's snapshot is unusable: {e}")))?;
    let image = &machine.disks.image;
    let image_meta = fs::metadata(image).map_err(io("stat", image))?;
    let upper_disk = machine.disks.upper.is_file();
    let target = checkpoint_dir(dir, name)?;
    let parent = dir.join(CHECKPOINTS);
    fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    fs::rename(&pending, &target).map_err(io("keep the snapshot as", &target))?;
    let kept = (|| {
        if upper_disk {
            disk::sparse_copy(&machine.disks.upper, &target.join(UPPER))?;
        }
        let meta = Meta {
            name: name.to_string(),
            created: Utc::now(),
            main_stream: paused.0,
            next_stream: paused.1,
            image_disk: image.clone(),
            image_identity: FileIdentity::of(&image_meta),
            upper_disk,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| fail(name, e.to_string()))?;
        let path = target.join(META);
        fs::write(&path, json).map_err(io("write", &path))
    })();
    if kept.is_err() {
        let _ = fs::remove_dir_all(&target);
    }
    kept
}

fn read_meta(dir: &Path, name: &str) -> Result<Meta, VmError> {
    let path = checkpoint_dir(dir, name)?.join(META);
    let raw = match fs::read(&path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(name, "no such checkpoint"));
        }
        Err(e) => return Err(io("read", &path)(e)),
    };
    serde_json::from_slice(&raw).map_err(|e| fail(name, format!("{}: {e}", path.display())))
}

/// The container's checkpoints, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Listed>, VmError> {
    let parent = dir.join(CHECKPOINTS);
    let entries = match fs::read_dir(&parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", &parent)(e)),
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("read", &parent))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(meta) = read_meta(dir, &name) {
            listed.push(Listed {
                name,
                created: meta.created,
            });
        }
    }
    listed.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    Ok(listed)
}

/// Deletes checkpoint `name`.
pub fn remove(dir: &Path, name: &str) -> Result<(), VmError> {
    let target = checkpoint_dir(dir, name)?;
    if !target.is_dir() {
        return Err(fail(name, "no such checkpoint"));
    }
    fs::remove_dir_all(&target).map_err(io("remove", &target))
}

/// Checks checkpoint `name` against the container's machine and puts its writable disk back:
/// what the VM then resumes from.
pub(super) fn prepare(dir: &Path, name: &str, machine: &Machine) -> Result<Resume, VmError> {
    let meta = read_meta(dir, name)?;
    let cdir = checkpoint_dir(dir, name)?;
    let image = &machine.disks.image;
    match fs::metadata(image) {
        Ok(m) if *image == meta.image_disk && FileIdentity::of(&m) == meta.image_identity => {}
        Ok(_) => {
            return Err(fail(
                name,
                format!(
                    "the image's disk {} changed since the checkpoint was taken: the guest's \
                     file system would not match its memory",
                    image.display()
                ),
            ))
        }
        Err(_) => {
            return Err(fail(
                name,
                format!(
                    "the image's disk {} is gone (was the image removed?)",
                    image.display()
                ),
            ))
        }
    }
    nook_vmm::snapshot::file::read(&cdir)
        .map_err(|e| fail(name, format!("its snapshot is unusable: {e}")))?;
    if meta.upper_disk {
        let upper = &machine.disks.upper;
        let staged = upper.with_extension("ext4.restore");
        let _ = fs::remove_file(&staged);
        disk::sparse_copy(&cdir.join(UPPER), &staged)?;
        fs::rename(&staged, upper).map_err(io("put back", upper))?;
    }
    Ok(Resume { dir: cdir, meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        for good in ["c1", "A.b-c_d", "0"] {
            check_name(good).unwrap();
        }
        for bad in ["", ".x", "-x", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_checkpoint_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = remove(dir.path(), "nope").unwrap_err().to_string();
        assert!(
            e.contains("nope") && e.contains("no such checkpoint"),
            "{e}"
        );
        assert!(list(dir.path()).unwrap().is_empty());
        let pending = fresh_pending(dir.path()).unwrap();
        fs::write(pending.join("state"), b"x").unwrap();
        let pending = fresh_pending(dir.path()).unwrap();
        assert!(fs::read_dir(pending).unwrap().next().is_none());
    }
}
