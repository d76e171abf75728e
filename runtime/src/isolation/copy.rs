//! Copies of file trees between the host and a container's root (`nook cp`, and a volume's
//! first fill from the image, docker's copy-up): the agent crate's one implementation
//! ([`nook_agent::copy`]), which the guest agent runs too.

use std::path::{Component, Path, PathBuf};

pub use nook_agent::copy::*;

use super::mounts::MountSpec;

/// Why a copy into a container is refused before anything is read or written.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CopyRefused {
    /// The destination lies in the container's own root, which `--read-only` made read-only.
    #[error("container rootfs is marked read-only")]
    ReadOnlyRoot,
    /// The destination lies in a bind mount or volume mounted `ro`.
    #[error("mounted volume is marked read-only")]
    ReadOnlyVolume,
}

/// docker's check before a copy into a container, the same whether it runs or not: a
/// destination in a bind mount or volume goes there (refused when it is `ro`), anything else
/// goes into the container's root (refused when the root is read-only). `dst` is taken as the
/// container would resolve it lexically (`..` stops at `/`); the copy itself then resolves it
/// below the root, where a read-only root or mount refuses any write this check let through.
pub fn check_destination(
    read_only_root: bool,
    mounts: &[MountSpec],
    dst: &str,
) -> Result<(), CopyRefused> {
    let dst = lexical(Path::new(dst));
    // The deepest mount that holds the destination decides, as the deepest one hides the others.
    let mut deepest: Option<(usize, bool)> = None;
    for m in mounts {
        let MountSpec::Bind {
            target, readonly, ..
        } = m
        else {
            // docker's tmpfs mounts are not volumes: a copy there counts as one into the root.
            continue;
        };
        let target = lexical(Path::new(target));
        if dst.starts_with(&target) {
            let depth = target.components().count();
            if deepest.is_none_or(|(d, _)| depth > d) {
                deepest = Some((depth, *readonly));
            }
        }
    }
    match deepest {
        Some((_, true)) => Err(CopyRefused::ReadOnlyVolume),
        Some((_, false)) => Ok(()),
        None if read_only_root => Err(CopyRefused::ReadOnlyRoot),
        None => Ok(()),
    }
}

/// `path` as an absolute path without `.`, `..` (which stops at `/`) or repeated slashes.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(target: &str, readonly: bool) -> MountSpec {
        MountSpec::Bind {
            source: PathBuf::from("/srv/x"),
            target: target.into(),
            readonly,
            volume: None,
        }
    }

    #[test]
    fn a_read_only_root_takes_copies_only_into_its_writable_volumes() {
        let mounts = [
            bind("/data", false),
            bind("/data/ro", true),
            bind("/conf", true),
            MountSpec::Tmpfs {
                target: "/tmp".into(),
                size: None,
                mode: None,
                readonly: false,
            },
        ];
        let check = |ro, dst| check_destination(ro, &mounts, dst);
        assert_eq!(check(true, "/"), Err(CopyRefused::ReadOnlyRoot));
        assert_eq!(check(true, "/etc/x"), Err(CopyRefused::ReadOnlyRoot));
        assert_eq!(check(true, "/tmp"), Err(CopyRefused::ReadOnlyRoot));
        assert_eq!(check(true, "/database"), Err(CopyRefused::ReadOnlyRoot));
        assert_eq!(check(true, "/data"), Ok(()));
        assert_eq!(check(true, "/data/sub/./f"), Ok(()));
        assert_eq!(check(true, "/data/../etc"), Err(CopyRefused::ReadOnlyRoot));
        assert_eq!(check(true, "/../../data/x"), Ok(()));
        assert_eq!(check(true, "/data/ro/x"), Err(CopyRefused::ReadOnlyVolume));
        assert_eq!(check(false, "/conf"), Err(CopyRefused::ReadOnlyVolume));
        assert_eq!(check(false, "/data/ro"), Err(CopyRefused::ReadOnlyVolume));
        assert_eq!(check(false, "/etc"), Ok(()));
        assert_eq!(check(false, "/data/x"), Ok(()));
    }
}
