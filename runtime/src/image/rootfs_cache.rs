//! The flattened root filesystem of an image: one read-only EROFS image per layer chain,
//! `rootfs/<chain-id>.erofs` under the store, built once from the layer blobs and shared by every
//! container (and VM) of every image with that chain.
//!
//! Building takes `locks/rootfs-<chain-id>.lock` exclusively, so concurrent builders of the same
//! image wait for one another and find the finished file; the image is written to a temp file,
//! fsynced and renamed into place, so a reader never sees a partial one. Each layer blob is
//! checked against its digest while it streams into the builder.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::image::digest::{chain_id, Digest, Hasher};
use crate::image::layer::{self, Compression, LayerError};
use crate::image::store::{descriptor_digest, Image, Store, StoreError};
use crate::layers::erofs::{build_erofs, BuildStats, Layer, RootfsError};
use crate::util::atomic::{AtomicError, TempFile};
use crate::util::lock::{FileLock, LockError, LockMode};

/// Why an image's root filesystem could not be built or found.
#[derive(Debug, thiserror::Error)]
pub enum RootfsCacheError {
    #[error("image {image} has no layers, so it has no root filesystem")]
    NoLayers { image: String },
    #[error("image {image}: layer {layer}")]
    Layer {
        image: String,
        layer: String,
        #[source]
        source: LayerError,
    },
    #[error("image {image}: cannot build its EROFS root filesystem")]
    Build {
        image: String,
        #[source]
        source: RootfsError,
    },
    #[error("image {image}: layer blob {layer} does not match its digest (it hashes to {actual}); the store is damaged, remove and reload the image")]
    Corrupt {
        image: String,
        layer: Digest,
        actual: Digest,
    },
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Atomic(#[from] AtomicError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A built (or found) root filesystem.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub path: PathBuf,
    pub chain_id: Digest,
    /// Set when this call built it; `None` when it was already there.
    pub built: Option<BuildStats>,
}

/// The directory of the EROFS images.
pub fn rootfs_dir(store: &Store) -> PathBuf {
    store.root().join("rootfs")
}

/// Where the EROFS image of a layer chain lives.
pub fn rootfs_path(store: &Store, chain: &Digest) -> PathBuf {
    rootfs_dir(store).join(format!("{}.erofs", chain.hex()))
}

/// The layer chain id of an image.
pub fn image_chain_id(image: &Image) -> Result<Digest, RootfsCacheError> {
    chain_id(&image.diff_ids()?).ok_or_else(|| RootfsCacheError::NoLayers {
        image: image.display_name(),
    })
}

/// Returns the image's EROFS root filesystem, building it first if it is not there yet.
pub fn ensure_rootfs(store: &Store, image: &Image) -> Result<Rootfs, RootfsCacheError> {
    let chain = image_chain_id(image)?;
    let path = rootfs_path(store, &chain);
    if path.is_file() {
        return Ok(Rootfs {
            path,
            chain_id: chain,
            built: None,
        });
    }
    let dir = rootfs_dir(store);
    fs::create_dir_all(&dir).map_err(|source| RootfsCacheError::Io {
        path: dir.clone(),
        source,
    })?;
    // Shared: garbage collection must not remove the temp file or the blobs being read.
    let _store_lock = store.lock_store(LockMode::Shared)?;
    let _build_lock = FileLock::acquire(
        &store
            .locks_dir()
            .join(format!("rootfs-{}.lock", chain.hex())),
        LockMode::Exclusive,
    )?;
    if path.is_file() {
        // Another builder finished while this one waited.
        return Ok(Rootfs {
            path,
            chain_id: chain,
            built: None,
        });
    }
    let stats = build_into(store, image, &path)?;
    Ok(Rootfs {
        path,
        chain_id: chain,
        built: Some(stats),
    })
}

/// Builds the EROFS image of `image` at `target` (temp file, fsync, rename).
fn build_into(store: &Store, image: &Image, target: &Path) -> Result<BuildStats, RootfsCacheError> {
    let name = image.display_name();
    let mut taps = Vec::new();
    let mut layers = Vec::new();
    for descriptor in image.manifest.layers() {
        let digest = descriptor_digest(descriptor, &format!("the layers of image {name}"))?;
        let compression =
            Compression::from_media_type(descriptor.media_type().as_ref()).map_err(|source| {
                RootfsCacheError::Layer {
                    image: name.clone(),
                    layer: digest.to_string(),
                    source,
                }
            })?;
        let file = store.open_blob(&digest)?;
        let hashed = Rc::new(RefCell::new(Hasher::default()));
        let tap = Tap {
            inner: file,
            hasher: hashed.clone(),
        };
        let tar = layer::decompress(io::BufReader::new(tap), compression).map_err(|source| {
            RootfsCacheError::Layer {
                image: name.clone(),
                layer: digest.to_string(),
                source,
            }
        })?;
        taps.push((digest.clone(), hashed));
        layers.push(Layer {
            name: digest.to_string(),
            tar,
        });
    }
    let tmp = TempFile::new_in(&store.tmp_dir(), "rootfs-")?;
    let stats = build_erofs(layers, tmp.file()).map_err(|source| RootfsCacheError::Build {
        image: name.clone(),
        source,
    })?;
    // The builder may stop at the tar's end marker: hash what it left unread, then compare.
    for (digest, hasher) in taps {
        let path = store.blob_path(&digest);
        let io_err = |source| RootfsCacheError::Io {
            path: path.clone(),
            source,
        };
        let mut hasher = hasher.take();
        let mut rest = File::open(&path).map_err(io_err)?;
        rest.seek(SeekFrom::Start(hasher.len())).map_err(io_err)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rest.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = hasher.finish();
        if actual != digest {
            return Err(RootfsCacheError::Corrupt {
                image: name,
                layer: digest,
                actual,
            });
        }
    }
    tmp.file()
        .set_permissions(Permissions::from_mode(0o444))
        .map_err(|source| RootfsCacheError::Io {
            path: tmp.path().to_path_buf(),
            source,
        })?;
    tmp.persist(target)?;
    Ok(stats)
}

/// Removes the EROFS images of chains no image in the store has; returns the bytes freed.
pub fn prune_rootfs(store: &Store) -> Result<u64, RootfsCacheError> {
    let _lock = store.lock_store(LockMode::Exclusive)?;
    let keep: BTreeSet<String> = store
        .images()?
        .iter()
        .filter_map(|i| image_chain_id(i).ok())
        .map(|c| format!("{}.erofs", c.hex()))
        .collect();
    let dir = rootfs_dir(store);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(RootfsCacheError::Io { path: dir, source }),
    };
    let mut freed = 0;
    for entry in entries {
        let entry = entry.map_err(|source| RootfsCacheError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".erofs") && !keep.contains(&name) {
            let path = entry.path();
            freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|source| RootfsCacheError::Io { path, source })?;
        }
    }
    Ok(freed)
}

/// Hashes the compressed bytes as the decompressor pulls them.
struct Tap {
    inner: File,
    hasher: Rc<RefCell<Hasher>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::config::empty_config;
    use crate::image::import::{import, ImportOptions};
    use crate::image::Reference;

    fn imported(store: &Store, content: &str, tag: &str, compress: bool) -> Image {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "hello.txt", content.as_bytes())
            .unwrap();
        let mut data = b.into_inner().unwrap();
        if compress {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut gz, &data).unwrap();
            data = gz.finish().unwrap();
        }
        let options = ImportOptions {
            config: empty_config(),
            created: "2024-01-01T00:00:00Z".into(),
            comment: String::new(),
            created_by: None,
            tags: vec![Reference::parse(tag).unwrap()],
        };
        import(store, &data[..], "-", options).unwrap()
    }

    #[test]
    fn builds_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = imported(&store, "hi\n", "a", true);
        let first = ensure_rootfs(&store, &image).unwrap();
        assert!(first.built.is_some());
        assert_eq!(first.chain_id, image.diff_ids().unwrap()[0]);
        let data = fs::read(&first.path).unwrap();
        // The EROFS superblock magic at offset 1024.
        assert_eq!(&data[1024..1028], &0xE0F5_E1E2u32.to_le_bytes());
        let second = ensure_rootfs(&store, &image).unwrap();
        assert!(second.built.is_none());
        assert_eq!(second.path, first.path);
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        // Unused once the image is gone.
        store.remove_image(&image.manifest_digest).unwrap();
        assert!(prune_rootfs(&store).unwrap() > 0);
        assert!(!first.path.exists());
    }

    #[test]
    fn a_damaged_layer_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let image = imported(&store, "hi\n", "a", false);
        let layer = image.layer_digests().unwrap().remove(0);
        let path = store.blob_path(&layer);
        let mut data = fs::read(&path).unwrap();
        // Damage past the tar's end marker: the tree reads fine, but the blob no longer matches
        // its digest, which only the digest check notices.
        let last = data.len() - 1;
        data[last] ^= 0x01;
        fs::write(&path, &data).unwrap();
        let err = ensure_rootfs(&store, &image).unwrap_err();
        assert!(matches!(err, RootfsCacheError::Corrupt { .. }), "{err:?}");
        let chain = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(chain.contains("image a:latest"), "{chain}");
        assert!(!rootfs_path(&store, &image_chain_id(&image).unwrap()).exists());
    }
}
