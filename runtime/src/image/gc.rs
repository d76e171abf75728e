//! Garbage collection of the store: blobs no image references, and what killed image writers
//! left in `tmp/`. It holds the store lock exclusively, so no writer is in flight meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::digest::Digest;
use super::layer::{DOCKER_MANIFEST_LIST, OCI_INDEX};
use super::store::{io_err, is_manifest, Store, StoreError};
use crate::util::atomic::{process_gone, temp_file_owner};
use crate::util::lock::LockMode;

/// Temp files of blob and rootfs writers, which hold the store lock while they exist.
const GC_TEMP_PREFIXES: [&str; 2] = ["blob-", "rootfs-"];
/// Age after which a lock-free temp file is a leftover, not a write in progress.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// The bytes `path` takes on disk (allocated blocks, each inode once), for what prune
/// reports; parts it cannot read (directories of other owners) are not counted.
pub fn disk_usage(path: &Path) -> u64 {
    fn walk(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return 0;
        };
        let mut bytes = 0;
        if meta.nlink() == 1 || meta.is_dir() || seen.insert((meta.dev(), meta.ino())) {
            bytes += meta.blocks() * 512;
        }
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(path) {
                for entry in entries.flatten() {
                    bytes += walk(&entry.path(), seen);
                }
            }
        }
        bytes
    }
    walk(path, &mut HashSet::new())
}

fn is_stale(entry: &fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_TEMP)
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    pub bytes: u64,
}

impl Store {
    /// The blobs reachable from `index.json`: manifests, nested indexes, configs and layers.
    pub fn referenced_blobs(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let mut seen = BTreeSet::new();
        let mut queue: Vec<Descriptor> = self.read_index()?.manifests().clone();
        while let Some(d) = queue.pop() {
            let Ok(digest) = Digest::try_from(d.digest()) else {
                continue;
            };
            if !seen.insert(digest.clone()) {
                continue;
            }
            let media = d.media_type().to_string();
            if !self.has_blob(&digest) {
                continue;
            }
            if is_manifest(d.media_type()) {
                let data = self.read_blob(&digest)?;
                let m = ImageManifest::from_reader(&data[..]).map_err(|source| {
                    StoreError::MalformedManifest {
                        image: digest.to_string(),
                        digest: digest.clone(),
                        source,
                    }
                })?;
                queue.push(m.config().clone());
                queue.extend(m.layers().iter().cloned());
            } else if media == OCI_INDEX || media == DOCKER_MANIFEST_LIST {
                let data = self.read_blob(&digest)?;
                let i = ImageIndex::from_reader(&data[..]).map_err(|source| {
                    StoreError::MalformedIndex {
                        path: self.blob_path(&digest),
                        source,
                    }
                })?;
                queue.extend(i.manifests().iter().cloned());
            }
        }
        Ok(seen)
    }

    /// Deletes every blob no image references and every leftover temp file, under the
    /// exclusive store lock (no writer is active, so nothing in flight is lost).
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _lock = self.lock_store(LockMode::Exclusive)?;
        let keep = self.referenced_blobs()?;
        let mut report = GcReport::default();
        let dir = self.blobs_dir();
        let mut unreferenced: BTreeMap<Digest, PathBuf> = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let Some(digest) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) else {
                continue;
            };
            if !keep.contains(&digest) {
                unreferenced.insert(digest, entry.path());
            }
        }
        for (digest, path) in unreferenced {
            let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(io_err(&path))?;
            report.bytes += size;
            report.blobs.push(digest);
        }
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let entry = entry.map_err(io_err(&tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            // Only what image writers leave: they hold the store lock, so none is in flight.
            // Other parts of nook keep their own temp files (and mount points) here too.
            let is_dir = if name.starts_with("load-") {
                true
            } else if GC_TEMP_PREFIXES.iter().any(|p| name.starts_with(p))
                || (name.starts_with("write-")
                    && (temp_file_owner(&name, "write-").is_some_and(process_gone)
                        || is_stale(&entry)))
            {
                // Atomic writes of small files run without the store lock: only those of
                // processes that are gone (or old ones) are leftovers.
                false
            } else {
                continue;
            };
            let bytes = disk_usage(&path);
            if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .map_err(io_err(&path))?;
            report.bytes += bytes;
        }
        Ok(report)
    }
}
