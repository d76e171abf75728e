//! The image store: an OCI image layout at the store root (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) that skopeo and umoci read as well.
//!
//! Each tag is one `index.json` entry pointing at an image manifest, annotated with
//! `org.opencontainers.image.ref.name` = the familiar reference (`busybox:latest`, the form
//! `skopeo inspect oci:$NOOK_ROOT:busybox:latest` matches) and `io.containerd.image.name` = the
//! fully qualified one (`docker.io/library/busybox:latest`). An image without tags keeps one
//! entry without annotations (docker's `<none>`), until `nook image prune` removes it.
//!
//! Crash safety: blobs are written to `tmp/`, fsynced, verified against their digest and renamed
//! into `blobs/`; `index.json` is replaced the same way, under `locks/index.lock`, and only after
//! every blob it names is in place. Writers of blobs hold `locks/store.lock` shared; garbage
//! collection holds it exclusive, so it never deletes a blob that is about to be referenced.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
    OciLayout,
};

use super::digest::{Digest, DigestError, Hasher};
use super::layer::OCI_MANIFEST;
use super::reference::{Reference, ReferenceError};
use crate::util::atomic::{self, AtomicError, TempFile};
use crate::util::lock::{FileLock, LockError, LockMode};

/// The annotation skopeo, umoci and `nook` match a tag against.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The fully qualified name, as containerd and docker write it in OCI archives.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Largest manifest, index or config nook reads into memory.
pub const MAX_JSON_BLOB: u64 = 16 << 20;

/// Errors of the image store; each names the file, blob or image concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    #[error("{path} is not an OCI image layout (bad oci-layout file)")]
    NotALayout {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("{path} is malformed")]
    MalformedIndex {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("the manifest {digest} of image {image} is malformed")]
    MalformedManifest {
        image: String,
        digest: Digest,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("the config {digest} of image {image} is malformed")]
    MalformedConfig {
        image: String,
        digest: Digest,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("a digest in {what} is not valid")]
    BadDigest {
        what: String,
        #[source]
        source: DigestError,
    },
    #[error("blob {digest} is missing from the store")]
    MissingBlob { digest: Digest },
    #[error("blob {path} does not match its digest {expected} (its content hashes to {actual})")]
    Corrupt {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} is {actual} bytes, but {expected} bytes were expected")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} is larger than {MAX_JSON_BLOB} bytes")]
    TooLarge { what: String },
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("the image id prefix {0:?} matches more than one image")]
    Ambiguous(String),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot encode {what}")]
    Encode {
        what: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One image in the store: a manifest, its config, and the tags pointing at it.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest: ImageManifest,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    /// Tags in the order of `index.json`; empty for an untagged image.
    pub tags: Vec<Reference>,
}

impl Image {
    /// The name errors use for this image: its first tag, else its id.
    pub fn display_name(&self) -> String {
        self.tags
            .first()
            .map(Reference::familiar)
            .unwrap_or_else(|| self.config_digest.to_string())
    }

    /// The layers' uncompressed digests, as the config lists them.
    pub fn diff_ids(&self) -> Result<Vec<Digest>, StoreError> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| {
                Digest::parse(d).map_err(|source| StoreError::BadDigest {
                    what: format!("the diff ids of image {}", self.display_name()),
                    source,
                })
            })
            .collect()
    }

    /// The layer blobs' digests, base layer first.
    pub fn layer_digests(&self) -> Result<Vec<Digest>, StoreError> {
        self.manifest
            .layers()
            .iter()
            .map(|l| descriptor_digest(l, &format!("the layers of image {}", self.display_name())))
            .collect()
    }

    /// Bytes the image's blobs take in the store (config and layers, as stored).
    pub fn size(&self) -> u64 {
        self.manifest.config().size() + self.manifest.layers().iter().map(|l| l.size()).sum::<u64>()
    }
}

/// The digest a descriptor names, checked to be sha256.
pub fn descriptor_digest(d: &Descriptor, what: &str) -> Result<Digest, StoreError> {
    Digest::try_from(d.digest()).map_err(|source| StoreError::BadDigest {
        what: what.to_string(),
        source,
    })
}

/// The store, rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating an empty OCI layout if there is none.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [
            store.root.clone(),
            store.blobs_dir(),
            store.tmp_dir(),
            store.locks_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let layout = store.root.join("oci-layout");
        if layout.exists() {
            OciLayout::from_file(&layout).map_err(|source| StoreError::NotALayout {
                path: layout.clone(),
                source,
            })?;
        } else {
            atomic::write_file(
                &store.tmp_dir(),
                &layout,
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        }
        if !store.index_path().exists() {
            let _lock = store.lock_index()?;
            if !store.index_path().exists() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// Temp files live here: the same filesystem as the blobs, so renames are atomic.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Held (shared) by everything that writes blobs or temp files; exclusive for GC.
    pub fn lock_store(&self, mode: LockMode) -> Result<FileLock, StoreError> {
        Ok(FileLock::acquire(
            &self.locks_dir().join("store.lock"),
            mode,
        )?)
    }

    fn lock_index(&self) -> Result<FileLock, StoreError> {
        Ok(FileLock::acquire(
            &self.locks_dir().join("index.lock"),
            LockMode::Exclusive,
        )?)
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob {
                    digest: digest.clone(),
                }
            } else {
                StoreError::Io { path, source }
            }
        })
    }

    /// Reads a small (JSON) blob whole and checks it against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let mut data = Vec::new();
        file.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut data)
            .map_err(io_err(&path))?;
        if data.len() as u64 > MAX_JSON_BLOB {
            return Err(StoreError::TooLarge {
                what: format!("blob {digest}"),
            });
        }
        let actual = Digest::of(&data);
        if &actual != digest {
            return Err(StoreError::Corrupt {
                path,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Starts writing a blob; the caller must hold the store lock (shared) until the blob is
    /// referenced from `index.json`.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        Ok(BlobWriter {
            tmp: TempFile::new_in(&self.tmp_dir(), "blob-")?,
            hasher: Hasher::default(),
            blobs: self.blobs_dir(),
        })
    }

    /// Writes `data` as a blob and returns its digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(data);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(data).map_err(io_err(&self.tmp_dir()))?;
        w.commit(Some(&digest))
    }

    /// Moves an already verified file (on this filesystem) into the blobs as `digest`.
    pub fn adopt_blob(&self, file: &Path, digest: &Digest) -> Result<(), StoreError> {
        let target = self.blob_path(digest);
        if target.is_file() {
            return Ok(());
        }
        File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(io_err(file))?;
        fs::rename(file, &target).map_err(|source| AtomicError::Rename {
            from: file.to_path_buf(),
            to: target.clone(),
            source,
        })?;
        Ok(atomic::sync_parent(&target)?)
    }

    /// The current `index.json` (always replaced whole, so no lock is needed to read it).
    pub fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.index_path();
        ImageIndex::from_file(&path).map_err(|source| StoreError::MalformedIndex { path, source })
    }

    fn write_index(&self, manifests: &[Descriptor]) -> Result<(), StoreError> {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests.to_vec())
            .build()
            .map_err(|source| StoreError::Encode {
                what: "index.json".into(),
                source,
            })?;
        let data = index
            .to_string_pretty()
            .map_err(|source| StoreError::Encode {
                what: "index.json".into(),
                source,
            })?;
        Ok(atomic::write_file(
            &self.tmp_dir(),
            &self.index_path(),
            data.as_bytes(),
        )?)
    }

    /// Read-modify-write of the index entries under the index lock.
    pub fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock_index()?;
        let mut manifests = self.read_index()?.manifests().clone();
        let before = manifests.clone();
        let out = f(&mut manifests)?;
        if manifests != before {
            self.write_index(&manifests)?;
        }
        Ok(out)
    }

    /// Reads and parses the manifest and config of the image whose manifest is `digest`.
    pub fn load_image(
        &self,
        digest: &Digest,
        manifest_size: u64,
        tags: Vec<Reference>,
    ) -> Result<Image, StoreError> {
        let name = tags
            .first()
            .map(Reference::familiar)
            .unwrap_or_else(|| digest.to_string());
        let data = self.read_blob(digest)?;
        let manifest = ImageManifest::from_reader(&data[..]).map_err(|source| {
            StoreError::MalformedManifest {
                image: name.clone(),
                digest: digest.clone(),
                source,
            }
        })?;
        let config_digest =
            descriptor_digest(manifest.config(), &format!("the manifest of image {name}"))?;
        let data = self.read_blob(&config_digest)?;
        let config = ImageConfiguration::from_reader(&data[..]).map_err(|source| {
            StoreError::MalformedConfig {
                image: name.clone(),
                digest: config_digest.clone(),
                source,
            }
        })?;
        Ok(Image {
            manifest_digest: digest.clone(),
            manifest_size,
            manifest,
            config_digest,
            config,
            tags,
        })
    }

    /// Every image manifest the index names, with its tags, in index order.
    pub fn images(&self) -> Result<Vec<Image>, StoreError> {
        let index = self.read_index()?;
        let mut order: Vec<(Digest, u64)> = Vec::new();
        let mut tags: HashMap<Digest, Vec<Reference>> = HashMap::new();
        for entry in index.manifests() {
            if !is_manifest(entry.media_type()) {
                continue;
            }
            let digest = descriptor_digest(entry, "index.json")?;
            if !tags.contains_key(&digest) {
                order.push((digest.clone(), entry.size()));
            }
            let list = tags.entry(digest).or_default();
            if let Some(r) = entry_reference(entry) {
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        }
        order
            .into_iter()
            .map(|(digest, size)| {
                let t = tags.remove(&digest).unwrap_or_default();
                self.load_image(&digest, size, t)
            })
            .collect()
    }

    /// Finds an image by reference (`busybox`, `busybox:1`, `name@sha256:..`), by image id
    /// (`sha256:<hex>`), or by a unique prefix of its id, in docker's order.
    pub fn resolve(&self, s: &str) -> Result<Image, StoreError> {
        let images = self.images()?;
        let id_hex = s.strip_prefix("sha256:");
        if id_hex.is_none() {
            if let Ok(reference) = Reference::parse(s) {
                for image in &images {
                    let hit = match (reference.tag(), reference.digest()) {
                        (_, Some(digest)) => {
                            &image.manifest_digest == digest
                                && (image.tags.is_empty()
                                    || image.tags.iter().any(|t| t.name() == reference.name()))
                        }
                        (Some(_), None) => image.tags.contains(&reference),
                        (None, None) => false,
                    };
                    if hit {
                        return Ok(image.clone());
                    }
                }
            }
        }
        let prefix = id_hex.unwrap_or(s);
        let hex_prefix = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if hex_prefix {
            let mut found: Vec<&Image> = Vec::new();
            for image in &images {
                let by_id = image.config_digest.hex().starts_with(prefix);
                let by_manifest = id_hex.is_some() && image.manifest_digest.hex() == prefix;
                if (by_id || by_manifest)
                    && !found.iter().any(|f| f.config_digest == image.config_digest)
                {
                    found.push(image);
                }
            }
            match found.len() {
                0 => {}
                1 => return Ok(found[0].clone()),
                _ => return Err(StoreError::Ambiguous(s.to_string())),
            }
        }
        let shown = Reference::parse(s)
            .map(|r| r.familiar())
            .unwrap_or_else(|_| s.to_string());
        Err(StoreError::NoSuchImage(shown))
    }

    /// The media type an index entry gives a manifest: the one the manifest declares (a docker
    /// schema 2 manifest pulled from a registry keeps its own), else OCI's. Readers of the layout
    /// (skopeo, umoci) parse the blob by the entry's type.
    fn manifest_media_type(&self, digest: &Digest) -> MediaType {
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let declared = self
            .read_blob(digest)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Head>(&bytes).ok())
            .and_then(|h| h.media_type);
        match declared {
            Some(t) if t == super::layer::DOCKER_MANIFEST => MediaType::from(t.as_str()),
            _ => MediaType::ImageManifest,
        }
    }

    /// Writes a manifest blob for `config` and `layers` (all already stored) and returns its
    /// digest and size.
    pub fn put_manifest(
        &self,
        config: &Descriptor,
        layers: Vec<Descriptor>,
    ) -> Result<(Digest, u64), StoreError> {
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config.clone())
            .layers(layers)
            .build()
            .map_err(|source| StoreError::Encode {
                what: "an image manifest".into(),
                source,
            })?;
        let data = manifest
            .to_string_pretty()
            .map_err(|source| StoreError::Encode {
                what: "an image manifest".into(),
                source,
            })?;
        let digest = self.put_blob(data.as_bytes())?;
        Ok((digest, data.len() as u64))
    }

    /// Points each of `tags` at the manifest (moving tags that pointed elsewhere); with no tags,
    /// records the image untagged unless it is already in the index. An image that loses its
    /// last tag stays in the index untagged, as docker keeps it as `<none>`.
    pub fn set_tags(
        &self,
        manifest_digest: &Digest,
        manifest_size: u64,
        tags: &[Reference],
    ) -> Result<(), StoreError> {
        let media_type = self.manifest_media_type(manifest_digest);
        self.update_index(|entries| {
            let target_digest: oci_spec::image::Digest = manifest_digest.into();
            for tag in tags {
                if let Some(pos) = entries
                    .iter()
                    .position(|e| entry_reference(e).as_ref() == Some(tag))
                {
                    let old = entries.remove(pos);
                    let old_digest = old.digest().clone();
                    let still_listed = entries.iter().any(|e| e.digest() == &old_digest);
                    if !still_listed && old_digest != target_digest {
                        entries.insert(pos, untagged_entry(&old));
                    }
                }
            }
            // The untagged entry of this image is superseded by its tags.
            if !tags.is_empty() {
                entries.retain(|e| !(e.digest() == &target_digest && entry_reference(e).is_none()));
            }
            for tag in tags {
                entries.push(tagged_entry(
                    media_type.clone(),
                    &target_digest,
                    manifest_size,
                    tag,
                ));
            }
            if tags.is_empty() && !entries.iter().any(|e| e.digest() == &target_digest) {
                entries.push(Descriptor::new(
                    media_type.clone(),
                    manifest_size,
                    target_digest.clone(),
                ));
            }
            Ok(())
        })
    }

    /// Removes the tag `reference`; returns whether the image it named is now without tags.
    pub fn untag(&self, reference: &Reference) -> Result<Option<Digest>, StoreError> {
        self.update_index(|entries| {
            let pos = entries
                .iter()
                .position(|e| entry_reference(e).as_ref() == Some(reference))
                .ok_or_else(|| StoreError::NoSuchImage(reference.familiar()))?;
            let removed = entries.remove(pos);
            let orphan = !entries.iter().any(|e| e.digest() == removed.digest());
            Ok(if orphan {
                Some(descriptor_digest(&removed, "index.json")?)
            } else {
                None
            })
        })
    }

    /// Removes every index entry of the manifest `digest` (all its tags).
    pub fn remove_image(&self, digest: &Digest) -> Result<Vec<Reference>, StoreError> {
        let target: oci_spec::image::Digest = digest.into();
        self.update_index(|entries| {
            let removed = entries
                .iter()
                .filter(|e| e.digest() == &target)
                .filter_map(entry_reference)
                .collect();
            entries.retain(|e| e.digest() != &target);
            Ok(removed)
        })
    }

    /// Removes every tag of the manifest `digest` but keeps the image, untagged (what `rmi -f`
    /// does to an image a container still uses); returns the tags removed.
    pub fn untag_all(&self, digest: &Digest) -> Result<Vec<Reference>, StoreError> {
        let target: oci_spec::image::Digest = digest.into();
        self.update_index(|entries| {
            let Some(first) = entries.iter().position(|e| e.digest() == &target) else {
                return Ok(Vec::new());
            };
            let removed = entries
                .iter()
                .filter(|e| e.digest() == &target)
                .filter_map(entry_reference)
                .collect();
            let untagged = untagged_entry(&entries[first]);
            entries.retain(|e| e.digest() != &target);
            entries.insert(first.min(entries.len()), untagged);
            Ok(removed)
        })
    }

    /// Removes untagged images from the index, except those in `keep` (manifest digests, e.g.
    /// of images containers use); returns the manifest digests removed.
    pub fn remove_dangling(&self, keep: &BTreeSet<Digest>) -> Result<Vec<Digest>, StoreError> {
        self.update_index(|entries| {
            let tagged: BTreeSet<String> = entries
                .iter()
                .filter(|e| entry_reference(e).is_some())
                .map(|e| e.digest().to_string())
                .collect();
            let mut removed = Vec::new();
            let mut kept = Vec::new();
            for e in entries.drain(..) {
                let digest = descriptor_digest(&e, "index.json")?;
                if is_manifest(e.media_type())
                    && entry_reference(&e).is_none()
                    && !tagged.contains(&e.digest().to_string())
                    && !keep.contains(&digest)
                {
                    removed.push(digest);
                } else {
                    kept.push(e);
                }
            }
            *entries = kept;
            Ok(removed)
        })
    }
}

/// A blob being written: bytes go to a temp file and a hasher; `commit` verifies and renames.
pub struct BlobWriter {
    tmp: TempFile,
    hasher: Hasher,
    blobs: PathBuf,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Checks the content against `expected` (when given) and moves it into the store.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let actual = self.hasher.finish();
        if let Some(expected) = expected {
            if expected != &actual {
                return Err(StoreError::Corrupt {
                    path: self.tmp.path().to_path_buf(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let target = self.blobs.join(actual.hex());
        if !target.is_file() {
            self.tmp.persist(&target)?;
        }
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tmp.file_mut().write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.file_mut().flush()
    }
}

/// Whether a descriptor's media type is an image manifest (OCI or docker v2 schema 2).
pub fn is_manifest(media_type: &MediaType) -> bool {
    let m = media_type.to_string();
    m == OCI_MANIFEST || m == super::layer::DOCKER_MANIFEST
}

/// The tag an index entry carries: the fully qualified containerd name if present, else the
/// OCI ref name when it is a whole reference (a bare tag like `latest` names no repository).
pub fn entry_reference(entry: &Descriptor) -> Option<Reference> {
    let annotations = entry.annotations().as_ref()?;
    let candidates = [
        annotations.get(ANNOTATION_IMAGE_NAME),
        annotations.get(ANNOTATION_REF_NAME),
    ];
    candidates.into_iter().flatten().find_map(|name| {
        let bare_tag = !name.contains(['/', ':', '@']);
        if bare_tag {
            return None;
        }
        Reference::parse(name).ok().filter(|r| r.tag().is_some())
    })
}

fn tagged_entry(
    media_type: MediaType,
    digest: &oci_spec::image::Digest,
    size: u64,
    tag: &Reference,
) -> Descriptor {
    let mut d = Descriptor::new(media_type, size, digest.clone());
    d.set_annotations(Some(HashMap::from([
        (ANNOTATION_REF_NAME.to_string(), tag.familiar()),
        (ANNOTATION_IMAGE_NAME.to_string(), tag.to_string()),
    ])));
    d
}

fn untagged_entry(old: &Descriptor) -> Descriptor {
    Descriptor::new(old.media_type().clone(), old.size(), old.digest().clone())
}

#[cfg(test)]
mod tests;
