//! What the record of a VM container keeps: the VM's size and its disks.

use std::path::{Path, PathBuf};

use super::{disk, VmSettings};
use crate::isolation::{ImageSource, IsolationError, RootfsOptions};
use crate::paths::{self, ProcessEnv};

/// The VM column's root filesystem: the image's EROFS disk, shared read-only by every
/// container of the image, and the container's own writable ext4 disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disks {
    /// The image's EROFS disk (vda).
    pub image: PathBuf,
    /// The writable disk file (vdb). When it does not exist (`--rm`), the guest's writable
    /// layer is a tmpfs.
    pub upper: PathBuf,
    /// `--read-only`: the guest mounts the container's root read-only.
    pub read_only: bool,
}

/// A VM container's machine: its size and its disks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub settings: VmSettings,
    pub disks: Disks,
    /// A host directory that is the container's root as it is (an OCI bundle's root, which
    /// the caller made), shared through virtio-fs: the VM then has no disk at all, and
    /// `disks.read_only` alone of `disks` counts.
    pub host_root: Option<PathBuf>,
}

impl Machine {
    /// A new container's machine: the image's EROFS disk (the one `nook image rootfs` builds,
    /// made on first use) and, unless `--rm`, an empty ext4 disk in its directory `dir`.
    pub fn prepare(
        settings: &VmSettings,
        image: &ImageSource<'_>,
        dir: &Path,
        opts: RootfsOptions,
    ) -> Result<Machine, IsolationError> {
        let erofs = crate::image::rootfs_cache::ensure_rootfs(image.store, image.image)?.path;
        Ok(Machine {
            settings: settings.clone(),
            disks: Disks {
                image: erofs,
                upper: dir.join("upper.ext4"),
                read_only: opts.read_only,
            },
            host_root: None,
        })
    }

    /// The machine of a container whose root is the host directory `root`, shared with the
    /// guest as it is (read-only with `read_only`).
    pub fn with_host_root(settings: &VmSettings, root: &Path, read_only: bool) -> Machine {
        Machine {
            settings: settings.clone(),
            disks: Disks {
                image: PathBuf::new(),
                upper: PathBuf::new(),
                read_only,
            },
            host_root: Some(root.to_path_buf()),
        }
    }

    /// Makes the container's empty writable disk (a sparse copy of a cached empty ext4
    /// image); with `--rm` the guest uses a tmpfs instead, which dies with the VM anyway.
    pub fn create_disk(&self, auto_remove: bool) -> Result<(), IsolationError> {
        if auto_remove {
            return Ok(());
        }
        disk::ensure_template(&paths::cache_dir(&ProcessEnv), disk::DEFAULT_DISK_BYTES)
            .and_then(|t| disk::sparse_copy(&t, &self.disks.upper))
            .map_err(IsolationError::from)
    }
}
