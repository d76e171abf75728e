//! A VM container's mounts on the VM column's side: each bind mount or volume (a host
//! directory) becomes a virtio-fs device with its own tag, served by its own virtiofsd
//! ([`super::virtiofsd`]); each tmpfs is the guest's. The agent mounts them all, in order, from
//! the list this makes for `Start`.

use std::path::PathBuf;

use nook_agent::protocol::GuestMount;

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

/// Turns the container's mounts into shares and the agent's mount list. A bind mount of a
/// single file is refused: virtiofsd shares directories, and sharing the file's parent would
/// hand the guest every file beside it.
pub fn plan(mounts: &[MountSpec]) -> Result<Plan, VmError> {
    let mut plan = Plan::default();
    for m in mounts {
        match m {
            MountSpec::Bind {
                source,
                target,
                readonly,
                ..
            } => {
                if !source.is_dir() {
                    return Err(VmError::ShareNotDir {
                        path: source.clone(),
                        target: target.clone(),
                    });
                }
                let tag = tag(plan.shares.len());
                plan.shares.push(Share {
                    tag: tag.clone(),
                    source: source.clone(),
                    readonly: *readonly,
                });
                plan.guest.push(GuestMount::Virtiofs {
                    tag,
                    target: target.clone(),
                    readonly: *readonly,
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
        let plan = plan(&mounts).unwrap();
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
                    readonly: true
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
                    readonly: false
                },
            ]
        );
    }

    #[test]
    fn a_file_bind_mount_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let e = plan(&[MountSpec::Bind {
            source: file.clone(),
            target: "/f".into(),
            readonly: false,
            volume: None,
        }])
        .unwrap_err();
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    }
}
