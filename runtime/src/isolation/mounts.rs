//! What a container mounts on top of its root filesystem (`-v`, `--mount`, `--tmpfs`), resolved
//! at `create` into host paths, so that each column only applies it: the namespace column binds
//! the source inside the container's mount namespace, the VM column shares it over virtio-fs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One mount of a container, in the order the container gets them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountSpec {
    /// A host directory or file at `target`: a bind mount, or a volume's data directory.
    Bind {
        /// The absolute host path, checked to exist at `create`.
        source: PathBuf,
        /// The absolute path inside the container.
        target: String,
        readonly: bool,
        /// The volume's name, when `source` is a named or anonymous volume's data directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        volume: Option<String>,
    },
    /// A fresh tmpfs at `target`, gone with the container's process.
    Tmpfs {
        target: String,
        /// `tmpfs-size` / `size=`, in bytes; none: the file system's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// `tmpfs-mode` / `mode=`; none: 1777.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        readonly: bool,
    },
}

impl MountSpec {
    /// The absolute path inside the container.
    pub fn target(&self) -> &str {
        match self {
            MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => target,
        }
    }

    pub fn readonly(&self) -> bool {
        match self {
            MountSpec::Bind { readonly, .. } | MountSpec::Tmpfs { readonly, .. } => *readonly,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_mounts_by_type() {
        let mounts = vec![
            MountSpec::Bind {
                source: "/srv/data".into(),
                target: "/data".into(),
                readonly: true,
                volume: Some("data".into()),
            },
            MountSpec::Tmpfs {
                target: "/run".into(),
                size: Some(1 << 20),
                mode: None,
                readonly: false,
            },
        ];
        let text = serde_json::to_string(&mounts).unwrap();
        assert!(text.contains(r#""type":"bind""#) && text.contains(r#""type":"tmpfs""#));
        let back: Vec<MountSpec> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, mounts);
        assert_eq!(back[0].target(), "/data");
        assert!(back[0].readonly() && !back[1].readonly());
    }
}
