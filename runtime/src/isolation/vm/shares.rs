//! A VM container's mounts on the VM column's side: each bind mount or volume (a host
//! directory) becomes a virtio-fs device with its own tag, served by its own virtiofsd
//! ([`super::virtiofsd`]); each tmpfs is the guest's. The agent mounts them all, in order, from
//! the list this makes for `Start`.

use std::path::{Path, PathBuf};

use nook_agent::protocol::{GuestMount, SHARED_FILE};

use super::VmError;
use crate::isolation::mounts::MountSpec;

/// One host directory shared with the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The virtio-fs tag the guest mounts.
    pub tag: String,
    /// The host directory.
    pub source: PathBuf,
    /// Shared read-only (virtiofsd refuses writes; the guest mounts it read-only too).
    pub readonly: bool,
}

/// What the VM needs for a container's mounts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The directories to share, one device and one virtiofsd each.
    pub shares: Vec<Share>,
    /// What the agent mounts, in the container's order.
    pub guest: Vec<GuestMount>,
}

/// The tag of a container root shared from the host ([`super::Machine::host_root`]).
pub const ROOT_TAG: &str = "nookroot";

/// The tag of the `index`th shared directory.
pub fn tag(index: usize) -> String {
    format!("nook{index}")
}

/// Turns the container's mounts into shares and the agent's mount list. A directory is
/// shared as it is. A single file is shared through a directory of its own under `dir` (the
/// container's), `shared-files/<tag>/`, made afresh at each boot and holding the file alone:
/// a hard link to it, so writes on either side are the other's, as with a bind mount; sharing
/// the file's parent instead would hand the guest every file beside it. Where no hard link
/// can be made (another file system, a file the user may not link), a read-only file is
/// copied (a snapshot taken at boot) and a writable one is refused, saying why.
pub fn plan(mounts: &[MountSpec], dir: &Path) -> Result<Plan, VmError> {
    let mut plan = Plan::default();
    for m in mounts {
        match m {
            MountSpec::Bind {
                source,
                target,
                readonly,
                ..
            } => {
                let tag = tag(plan.shares.len());
                let file = !source.is_dir();
                let shared = if file {
                    stage_file(source, target, *readonly, &dir.join(FILES_DIR).join(&tag))?
                } else {
                    source.clone()
                };
                plan.shares.push(Share {
                    tag: tag.clone(),
                    source: shared,
                    readonly: *readonly,
                });
                plan.guest.push(GuestMount::Virtiofs {
                    tag,
                    target: target.clone(),
                    readonly: *readonly,
                    file,
                });
            }
            MountSpec::Tmpfs {
                target,
                size,
                mode,
                readonly,
            } => plan.guest.push(GuestMount::Tmpfs {
                target: target.clone(),
                size: *size,
                mode: *mode,
                readonly: *readonly,
            }),
        }
    }
    Ok(plan)
}

/// Where a container's single-file shares are staged, in its directory.
pub const FILES_DIR: &str = "shared-files";

/// Makes `staging` a directory holding `source` (a regular file, symlinks followed as a bind
/// mount follows them) alone, as [`SHARED_FILE`]: a hard link, or a copy when read-only and
/// no link can be made.
fn stage_file(
    source: &Path,
    target: &str,
    readonly: bool,
    staging: &Path,
) -> Result<PathBuf, VmError> {
    let refuse = |why: &str, e: std::io::Error| VmError::ShareFile {
        path: source.to_path_buf(),
        target: target.to_owned(),
        why: why.to_owned(),
        source: e,
    };
    let real = std::fs::canonicalize(source).map_err(|e| refuse("cannot resolve it", e))?;
    let meta = std::fs::metadata(&real).map_err(|e| refuse("cannot read it", e))?;
    if !meta.is_file() {
        return Err(VmError::ShareNotDir {
            path: source.to_path_buf(),
            target: target.to_owned(),
        });
    }
    // Afresh: a file replaced on the host (renamed over) since the last boot is linked anew.
    match std::fs::remove_dir_all(staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse("cannot clear its staging directory", e)),
    }
    std::fs::create_dir_all(staging).map_err(|e| refuse("cannot make its staging directory", e))?;
    let staged = staging.join(SHARED_FILE);
    match std::fs::hard_link(&real, &staged) {
        Ok(()) => {}
        Err(_) if readonly => {
            std::fs::copy(&real, &staged).map_err(|e| refuse("cannot copy it", e))?;
        }
        Err(e) => {
            return Err(refuse(
                "a writable single file is shared through a hard link, and none could be \
                 made in the container's directory (it must be on the same file system as \
                 nook's store, and yours to link); mount it read-only (a copy is shared \
                 then) or bind its directory",
                e,
            ))
        }
    }
    Ok(staging.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_become_tagged_shares_and_tmpfs_stays_in_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        let mounts = vec![
            MountSpec::Bind {
                source: dir.path().into(),
                target: "/host".into(),
                readonly: true,
                volume: None,
            },
            MountSpec::Tmpfs {
                target: "/tmp".into(),
                size: Some(1 << 20),
                mode: Some(0o700),
                readonly: false,
            },
            MountSpec::Bind {
                source: vol.clone(),
                target: "/data".into(),
                readonly: false,
                volume: Some("data".into()),
            },
        ];
        let plan = plan(&mounts, dir.path()).unwrap();
        assert_eq!(
            plan.shares,
            [
                Share {
                    tag: "nook0".into(),
                    source: dir.path().into(),
                    readonly: true
                },
                Share {
                    tag: "nook1".into(),
                    source: vol,
                    readonly: false
                },
            ]
        );
        assert_eq!(
            plan.guest,
            [
                GuestMount::Virtiofs {
                    tag: "nook0".into(),
                    target: "/host".into(),
                    readonly: true,
                    file: false
                },
                GuestMount::Tmpfs {
                    target: "/tmp".into(),
                    size: Some(1 << 20),
                    mode: Some(0o700),
                    readonly: false
                },
                GuestMount::Virtiofs {
                    tag: "nook1".into(),
                    target: "/data".into(),
                    readonly: false,
                    file: false
                },
            ]
        );
    }

    #[test]
    fn a_single_file_is_shared_alone_through_a_hard_link_made_afresh_at_each_boot() {
        use std::os::unix::fs::MetadataExt;
        let host = tempfile::tempdir().unwrap();
        let container = tempfile::tempdir().unwrap();
        let file = host.path().join("app.conf");
        std::fs::write(&file, "v1").unwrap();
        std::fs::write(host.path().join("secret"), "not shared").unwrap();
        // Through a symlink, as a bind mount follows it.
        let link = host.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let mounts = [MountSpec::Bind {
            source: link,
            target: "/etc/app.conf".into(),
            readonly: false,
            volume: None,
        }];
        let p = plan(&mounts, container.path()).unwrap();
        let staging = container.path().join(FILES_DIR).join("nook0");
        assert_eq!(
            p.shares,
            [Share {
                tag: "nook0".into(),
                source: staging.clone(),
                readonly: false
            }]
        );
        assert_eq!(
            p.guest,
            [GuestMount::Virtiofs {
                tag: "nook0".into(),
                target: "/etc/app.conf".into(),
                readonly: false,
                file: true
            }]
        );
        let names: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SHARED_FILE], "the file alone");
        let staged = staging.join(SHARED_FILE);
        assert_eq!(
            std::fs::metadata(&staged).unwrap().ino(),
            std::fs::metadata(&file).unwrap().ino(),
            "the host file itself, not a copy"
        );
        std::fs::write(&staged, "from the guest").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "from the guest");
        // Replaced on the host by a rename: the next boot shares the new file.
        let new = host.path().join("new");
        std::fs::write(&new, "v2").unwrap();
        std::fs::rename(&new, &file).unwrap();
        plan(&mounts, container.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&staged).unwrap(), "v2");
    }

    #[test]
    fn what_is_neither_a_directory_nor_a_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let e = plan(
            &[MountSpec::Bind {
                source: missing.clone(),
                target: "/f".into(),
                readonly: true,
                volume: None,
            }],
            dir.path(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
        let e = plan(
            &[MountSpec::Bind {
                source: "/dev/null".into(),
                target: "/null".into(),
                readonly: false,
                volume: None,
            }],
            dir.path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/dev/null"), "{e}");
        assert!(!dir
            .path()
            .join(FILES_DIR)
            .join("nook0")
            .join(SHARED_FILE)
            .exists());
    }
}
