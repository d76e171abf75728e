//! `nook load`: docker save archives (manifest.json) and OCI archives (oci-layout + index.json),
//! plain or gzip/zstd-compressed, several images per archive, tags kept.
//!
//! The archive streams once into a staging directory under the store's `tmp/` (each file hashed
//! on the way, links recorded, never followed on disk). Then everything is verified before the
//! store changes: every blob against its digest and size, every layer decompressed and checked
//! against the config's diff id, every media type known. Only then are the blobs renamed into
//! place and the tags written, so a bad archive leaves the store as it was.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

use super::stream::{printable, WriteFailure, WriteWatch};
use super::ArchiveError;
use crate::image::digest::{Digest, HashingReader, HashingWriter};
use crate::image::layer::{self, Compression, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::image::platform::{self, Platform, Unlabeled};
use crate::image::reference::Reference;
use crate::image::store::{entry_reference, is_manifest, Image, Store, MAX_JSON_BLOB};
use crate::util::lock::LockMode;

/// An image the archive held, now in the store, with the tags it was loaded under.
#[derive(Debug)]
pub struct Loaded {
    pub image: Image,
    pub tags: Vec<Reference>,
}

/// A regular file of the archive, staged under the store's tmp/.
#[derive(Debug, Clone)]
struct StagedFile {
    path: PathBuf,
    digest: Digest,
    size: u64,
}

/// The archive's files by normalized path, and its links (path -> normalized target).
struct Staged {
    archive: String,
    dir: StagingDir,
    files: HashMap<String, StagedFile>,
    links: HashMap<String, String>,
}

/// A directory under tmp/ removed on drop.
struct StagingDir(PathBuf);

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// How the manifest of a verified image gets into the store.
enum ManifestSource {
    /// An OCI archive's manifest blob, kept byte for byte.
    Verbatim { digest: Digest, size: u64 },
    /// A docker archive has no manifest blob: one is written from these descriptors.
    Build {
        config: Box<Descriptor>,
        layers: Vec<Descriptor>,
    },
}

struct Planned {
    manifest: ManifestSource,
    tags: Vec<Reference>,
    /// Staged files to move into the blobs, with their digests.
    blobs: Vec<(PathBuf, Digest)>,
}

/// Loads every image of the archive read from `input` (named `archive` in errors).
pub fn load(store: &Store, input: impl Read, archive: &str) -> Result<Vec<Loaded>, ArchiveError> {
    // Shared: garbage collection must not clear the staging directory or new blobs meanwhile.
    let _lock = store.lock_store(LockMode::Shared)?;
    let staged = stage(store, input, archive)?;
    let plans = if staged.lookup("index.json").is_some() && staged.lookup("oci-layout").is_some() {
        plan_oci(&staged)?
    } else if staged.lookup("manifest.json").is_some() {
        plan_docker(&staged)?
    } else {
        return Err(ArchiveError::UnknownFormat {
            archive: archive.to_string(),
        });
    };
    let mut loaded = Vec::new();
    for plan in &plans {
        for (path, digest) in &plan.blobs {
            store.adopt_blob(path, digest)?;
        }
        let (digest, size) = match &plan.manifest {
            ManifestSource::Verbatim { digest, size } => (digest.clone(), *size),
            ManifestSource::Build { config, layers } => {
                store.put_manifest(config, layers.clone())?
            }
        };
        store.set_tags(&digest, size, &plan.tags)?;
        let image = store.load_image(&digest, size, plan.tags.clone())?;
        loaded.push(Loaded {
            image,
            tags: plan.tags.clone(),
        });
    }
    Ok(loaded)
}

/// Reads the (possibly compressed) tar stream into a staging directory.
fn stage(store: &Store, input: impl Read, archive: &str) -> Result<Staged, ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        archive: archive.to_string(),
        source: printable(source),
    };
    let (compression, buffered) =
        layer::sniff_reader(input).map_err(|source| ArchiveError::Compression {
            archive: archive.to_string(),
            source,
        })?;
    let reader =
        layer::decompress(buffered, compression).map_err(|source| ArchiveError::Compression {
            archive: archive.to_string(),
            source,
        })?;
    let dir = store.tmp_dir().join(format!(
        "load-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    fs::create_dir(&dir).map_err(|source| ArchiveError::ReadStore {
        path: dir.clone(),
        source,
    })?;
    let mut staged = Staged {
        archive: archive.to_string(),
        dir: StagingDir(dir),
        files: HashMap::new(),
        links: HashMap::new(),
    };
    let mut tar = tar::Archive::new(reader);
    let mut count = 0u64;
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalize(archive, &raw)?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {}
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                count += 1;
                let target = staged.dir.0.join(format!("f{count}"));
                let file = File::create(&target).map_err(|source| ArchiveError::ReadStore {
                    path: target.clone(),
                    source,
                })?;
                let failure = WriteFailure::default();
                let mut writer = HashingWriter::new(io::BufWriter::new(WriteWatch {
                    inner: file,
                    failure: failure.clone(),
                }));
                let copied = io::copy(&mut entry, &mut writer);
                let (buffered, digest, size) = writer.finish();
                let synced = copied.and_then(|_| {
                    buffered
                        .into_inner()
                        .map_err(|e| e.into_error())
                        .and_then(|w| w.inner.sync_all().map_err(|e| w.failure.record(e)))
                });
                // A full disk shows up as a failed copy: report the store, not the archive.
                if let Some(source) = failure.take(&staged.dir.0) {
                    return Err(ArchiveError::StoreWrite {
                        archive: archive.to_string(),
                        source,
                    });
                }
                synced.map_err(read_err)?;
                staged.files.insert(
                    path,
                    StagedFile {
                        path: target,
                        digest,
                        size,
                    },
                );
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let bad = || ArchiveError::BadLink {
                    archive: archive.to_string(),
                    entry: raw.clone(),
                };
                let resolved = if kind == tar::EntryType::Link {
                    normalize(archive, &link).map_err(|_| bad())?
                } else {
                    resolve_symlink(&path, &link).ok_or_else(bad)?
                };
                staged.links.insert(path, resolved);
            }
            // PAX and GNU long-name headers are consumed by the tar reader itself.
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {}
            other => {
                return Err(ArchiveError::EntryType {
                    archive: archive.to_string(),
                    entry: raw,
                    kind: format!("{other:?}"),
                })
            }
        }
    }
    // Anything after the tar's end (compressed padding) is read so truncation shows up.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(read_err)?;
    Ok(staged)
}

/// Archive paths are relative; `./x` and `x` are the same; `..` and absolute paths are refused.
fn normalize(archive: &str, raw: &str) -> Result<String, ArchiveError> {
    let unsafe_path = || ArchiveError::UnsafePath {
        archive: archive.to_string(),
        entry: raw.to_string(),
    };
    if raw.starts_with('/') {
        return Err(unsafe_path());
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(unsafe_path()),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// A relative symlink target, resolved against the link's directory, kept inside the archive.
fn resolve_symlink(path: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl Staged {
    /// The file at `path`, following links (at most 16 hops).
    fn lookup(&self, path: &str) -> Option<&StagedFile> {
        let mut p = path.trim_start_matches("./").to_string();
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    fn require(&self, path: &str) -> Result<&StagedFile, ArchiveError> {
        self.lookup(path).ok_or_else(|| ArchiveError::Missing {
            archive: self.archive.clone(),
            file: path.to_string(),
        })
    }

    /// A small JSON file, read whole.
    fn read_json(&self, path: &str) -> Result<Vec<u8>, ArchiveError> {
        let file = self.require(path)?;
        if file.size > MAX_JSON_BLOB {
            return Err(ArchiveError::TooLarge {
                archive: self.archive.clone(),
                file: path.to_string(),
                limit: MAX_JSON_BLOB,
            });
        }
        fs::read(&file.path).map_err(|source| ArchiveError::ReadStore {
            path: file.path.clone(),
            source,
        })
    }

    /// The blob a descriptor names, checked against its digest and size.
    fn blob(&self, d: &Descriptor, what: &str) -> Result<(Digest, StagedFile), ArchiveError> {
        let digest = Digest::try_from(d.digest()).map_err(|source| ArchiveError::BadDigest {
            archive: self.archive.clone(),
            what: what.to_string(),
            source,
        })?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let file = self.lookup(&path).ok_or_else(|| ArchiveError::Missing {
            archive: self.archive.clone(),
            file: format!("{path} ({what})"),
        })?;
        if file.digest != digest {
            return Err(ArchiveError::DigestMismatch {
                archive: self.archive.clone(),
                what: format!("{path} ({what})"),
                expected: digest,
                actual: file.digest.clone(),
            });
        }
        if file.size != d.size() {
            return Err(ArchiveError::SizeMismatch {
                archive: self.archive.clone(),
                what: format!("{path} ({what})"),
                expected: d.size(),
                actual: file.size,
            });
        }
        Ok((digest, file.clone()))
    }

    /// Decompresses a staged layer and checks it against its diff id.
    fn check_layer(
        &self,
        file: &StagedFile,
        compression: Compression,
        diff_id: &Digest,
        what: &str,
    ) -> Result<(), ArchiveError> {
        let opened = File::open(&file.path).map_err(|source| ArchiveError::ReadStore {
            path: file.path.clone(),
            source,
        })?;
        let decompressed =
            layer::decompress(io::BufReader::new(opened), compression).map_err(|source| {
                ArchiveError::Layer {
                    archive: self.archive.clone(),
                    what: what.to_string(),
                    source,
                }
            })?;
        let (actual, _) = HashingReader::new(decompressed).drain().map_err(|source| {
            ArchiveError::Decompress {
                archive: self.archive.clone(),
                what: what.to_string(),
                source,
            }
        })?;
        if &actual != diff_id {
            return Err(ArchiveError::DigestMismatch {
                archive: self.archive.clone(),
                what: format!("the uncompressed content of {what} (its diff id)"),
                expected: diff_id.clone(),
                actual,
            });
        }
        Ok(())
    }

    fn parse_diff_ids(
        &self,
        config: &ImageConfiguration,
        name: &str,
    ) -> Result<Vec<Digest>, ArchiveError> {
        config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| {
                Digest::parse(d).map_err(|source| ArchiveError::BadDigest {
                    archive: self.archive.clone(),
                    what: format!("a diff id in the config of image {name}"),
                    source,
                })
            })
            .collect()
    }

    fn parse_tags(&self, tags: &[String], name: &str) -> Result<Vec<Reference>, ArchiveError> {
        tags.iter()
            .map(|t| {
                Reference::parse(t).map_err(|source| ArchiveError::BadTag {
                    archive: self.archive.clone(),
                    image: name.to_string(),
                    tag: t.clone(),
                    source: Box::new(source),
                })
            })
            .collect()
    }
}

fn invalid(archive: &str, what: String) -> ArchiveError {
    ArchiveError::Invalid {
        archive: archive.to_string(),
        what,
    }
}

/// Plans the images of an OCI archive.
fn plan_oci(staged: &Staged) -> Result<Vec<Planned>, ArchiveError> {
    let archive = &staged.archive;
    let layout = staged.read_json("oci-layout")?;
    let layout: serde_json::Value =
        serde_json::from_slice(&layout).map_err(|source| ArchiveError::Malformed {
            archive: archive.clone(),
            file: "oci-layout".into(),
            source,
        })?;
    if layout["imageLayoutVersion"].as_str() != Some("1.0.0") {
        return Err(invalid(
            archive,
            format!(
                "oci-layout has the unsupported imageLayoutVersion {}",
                layout["imageLayoutVersion"]
            ),
        ));
    }
    let index = staged.read_json("index.json")?;
    let index =
        ImageIndex::from_reader(&index[..]).map_err(|source| ArchiveError::MalformedOci {
            archive: archive.clone(),
            file: "index.json".into(),
            source,
        })?;
    // Entries naming the same manifest become one image with several tags.
    let mut plans: Vec<Planned> = Vec::new();
    for (i, entry) in index.manifests().iter().enumerate() {
        let tags: Vec<Reference> = entry_reference(entry).into_iter().collect();
        let manifest_desc = if is_manifest(entry.media_type()) {
            entry.clone()
        } else if is_index(entry.media_type()) {
            pick_platform(staged, entry, i)?
        } else {
            return Err(invalid(
                archive,
                format!(
                    "index.json entry {} has the unknown media type {:?}",
                    i + 1,
                    entry.media_type().to_string()
                ),
            ));
        };
        let digest =
            Digest::try_from(manifest_desc.digest()).map_err(|source| ArchiveError::BadDigest {
                archive: archive.clone(),
                what: format!("index.json entry {}", i + 1),
                source,
            })?;
        if let Some(existing) = plans.iter_mut().find(|p| match &p.manifest {
            ManifestSource::Verbatim { digest: d, .. } => d == &digest,
            ManifestSource::Build { .. } => false,
        }) {
            for t in tags {
                if !existing.tags.contains(&t) {
                    existing.tags.push(t);
                }
            }
            continue;
        }
        let name = tags
            .first()
            .map(Reference::familiar)
            .unwrap_or_else(|| digest.to_string());
        plans.push(plan_oci_manifest(staged, &manifest_desc, &name, tags)?);
    }
    Ok(plans)
}

fn is_index(media_type: &MediaType) -> bool {
    let m = media_type.to_string();
    m == OCI_INDEX || m == DOCKER_MANIFEST_LIST
}

/// From a multi-platform index, the manifest for linux on this machine's architecture (or, as
/// older tools write single-image indexes, the one without a platform).
fn pick_platform(
    staged: &Staged,
    entry: &Descriptor,
    i: usize,
) -> Result<Descriptor, ArchiveError> {
    let what = format!("the image index of index.json entry {}", i + 1);
    let (_, file) = staged.blob(entry, &what)?;
    let data = staged.read_json(&format!("blobs/sha256/{}", file.digest.hex()))?;
    let nested =
        ImageIndex::from_reader(&data[..]).map_err(|source| ArchiveError::MalformedOci {
            archive: staged.archive.clone(),
            file: what.clone(),
            source,
        })?;
    let host = Platform::host();
    let chosen = platform::select(&nested, &host, Unlabeled::LastResort).ok_or_else(|| {
        invalid(
            &staged.archive,
            format!("{what} has no manifest for {host}"),
        )
    })?;
    Ok(chosen.clone())
}

fn plan_oci_manifest(
    staged: &Staged,
    desc: &Descriptor,
    name: &str,
    tags: Vec<Reference>,
) -> Result<Planned, ArchiveError> {
    let archive = &staged.archive;
    let (manifest_digest, manifest_file) =
        staged.blob(desc, &format!("the manifest of image {name}"))?;
    let data = staged.read_json(&format!("blobs/sha256/{}", manifest_digest.hex()))?;
    let manifest =
        ImageManifest::from_reader(&data[..]).map_err(|source| ArchiveError::MalformedOci {
            archive: archive.clone(),
            file: format!("the manifest {manifest_digest} of image {name}"),
            source,
        })?;
    let (config_digest, config_file) =
        staged.blob(manifest.config(), &format!("the config of image {name}"))?;
    let config_data = staged.read_json(&format!("blobs/sha256/{}", config_digest.hex()))?;
    let config = ImageConfiguration::from_reader(&config_data[..]).map_err(|source| {
        ArchiveError::MalformedOci {
            archive: archive.clone(),
            file: format!("the config {config_digest} of image {name}"),
            source,
        }
    })?;
    let diff_ids = staged.parse_diff_ids(&config, name)?;
    let layers = manifest.layers();
    if layers.len() != diff_ids.len() {
        return Err(invalid(
            archive,
            format!(
                "image {name} has {} layers but its config lists {} diff ids",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut blobs = vec![
        (manifest_file.path.clone(), manifest_digest.clone()),
        (config_file.path.clone(), config_digest),
    ];
    for (i, (layer, diff_id)) in layers.iter().zip(&diff_ids).enumerate() {
        let what = format!("layer {} ({}) of image {name}", i + 1, layer.digest());
        let compression =
            Compression::from_media_type(layer.media_type().as_ref()).map_err(|source| {
                ArchiveError::Layer {
                    archive: archive.clone(),
                    what: what.clone(),
                    source,
                }
            })?;
        let (digest, file) = staged.blob(layer, &what)?;
        staged.check_layer(&file, compression, diff_id, &what)?;
        blobs.push((file.path.clone(), digest));
    }
    Ok(Planned {
        manifest: ManifestSource::Verbatim {
            digest: manifest_digest,
            size: manifest_file.size,
        },
        tags,
        blobs,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The hex digest a docker archive file name claims (`<hex>.json`, `blobs/sha256/<hex>`).
fn claimed_digest(path: &str) -> Option<Digest> {
    let name = path.rsplit('/').next()?;
    let name = name.strip_suffix(".json").unwrap_or(name);
    Digest::from_hex(name).ok()
}

/// Plans the images of a docker save archive.
fn plan_docker(staged: &Staged) -> Result<Vec<Planned>, ArchiveError> {
    let archive = &staged.archive;
    let data = staged.read_json("manifest.json")?;
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&data).map_err(|source| ArchiveError::Malformed {
            archive: archive.clone(),
            file: "manifest.json".into(),
            source,
        })?;
    let mut plans = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let raw_tags = entry.repo_tags.clone().unwrap_or_default();
        let name = raw_tags
            .first()
            .cloned()
            .unwrap_or_else(|| format!("manifest.json entry {}", i + 1));
        let tags = staged.parse_tags(&raw_tags, &name)?;
        let config_path = normalize(archive, &entry.config)?;
        let config_file = staged.require(&config_path)?.clone();
        if let Some(claimed) = claimed_digest(&config_path) {
            if claimed != config_file.digest {
                return Err(ArchiveError::DigestMismatch {
                    archive: archive.clone(),
                    what: format!("{config_path} (the config of image {name})"),
                    expected: claimed,
                    actual: config_file.digest,
                });
            }
        }
        let config_data = staged.read_json(&config_path)?;
        let config = ImageConfiguration::from_reader(&config_data[..]).map_err(|source| {
            ArchiveError::MalformedOci {
                archive: archive.clone(),
                file: format!("{config_path} (the config of image {name})"),
                source,
            }
        })?;
        let diff_ids = staged.parse_diff_ids(&config, &name)?;
        if entry.layers.len() != diff_ids.len() {
            return Err(invalid(
                archive,
                format!(
                    "image {name} has {} layers but its config lists {} diff ids",
                    entry.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut blobs = vec![(config_file.path.clone(), config_file.digest.clone())];
        let mut layers = Vec::new();
        for (j, (layer_path, diff_id)) in entry.layers.iter().zip(&diff_ids).enumerate() {
            let layer_path = normalize(archive, layer_path)?;
            let what = format!("layer {} ({layer_path}) of image {name}", j + 1);
            let file = staged.require(&layer_path)?.clone();
            if let Some(claimed) = claimed_digest(&layer_path) {
                if claimed != file.digest {
                    return Err(ArchiveError::DigestMismatch {
                        archive: archive.clone(),
                        what,
                        expected: claimed,
                        actual: file.digest,
                    });
                }
            }
            let mut head = [0u8; 8];
            let n = File::open(&file.path)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|source| ArchiveError::ReadStore {
                    path: file.path.clone(),
                    source,
                })?;
            let compression =
                Compression::sniff(&head[..n]).map_err(|source| ArchiveError::Layer {
                    archive: archive.clone(),
                    what: what.clone(),
                    source,
                })?;
            staged.check_layer(&file, compression, diff_id, &what)?;
            layers.push(Descriptor::new(
                MediaType::from(compression.oci_media_type()),
                file.size,
                oci_spec::image::Digest::from(&file.digest),
            ));
            blobs.push((file.path.clone(), file.digest.clone()));
        }
        plans.push(Planned {
            manifest: ManifestSource::Build {
                config: Box::new(Descriptor::new(
                    MediaType::ImageConfig,
                    config_file.size,
                    oci_spec::image::Digest::from(&config_file.digest),
                )),
                layers,
            },
            tags,
            blobs,
        });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests;
