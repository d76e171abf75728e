//! `nook pull`: a manifest (or an index and the manifest of the chosen platform), then the
//! config and layers into the store, then the tag. Blobs are in place, verified, before the
//! manifest that names them, and the manifest before the tag, so a failed pull never leaves a
//! tag pointing at something incomplete.

use oci_spec::image::{Descriptor, ImageConfiguration};

use crate::image::digest::Digest;
use crate::image::layer::Compression;
use crate::image::reference::Reference;
use crate::image::store::descriptor_digest;
use crate::image::{Image, Store};
use crate::util::lock::LockMode;

use super::client::Client;
use super::credentials::AuthFiles;
use super::download::{self, BlobRef, Outcome};
use super::endpoint::Endpoint;
use super::error::RegistryError;
use super::manifest::{self, Kind, Platform};
use super::progress::{Mode, Progress};
use super::session::Session;
use super::workers;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// `--tls-verify`, if given.
    pub tls_verify: Option<bool>,
    pub auth: AuthFiles,
}

/// What a pull did.
#[derive(Debug)]
pub struct Pulled {
    /// The digest the reference resolved to on the registry (an index's, for a multi-platform
    /// image), as docker prints it.
    pub digest: crate::image::Digest,
    /// The image now in the store.
    pub image: Image,
    /// The tag already pointed at this image and every blob was there.
    pub up_to_date: bool,
}

/// Pulls `reference` into `store`, showing progress on `progress`.
pub fn pull(
    store: &Store,
    client: &Client,
    reference: &Reference,
    options: &PullOptions,
    progress: &Progress,
) -> Result<Pulled, RegistryError> {
    let _lock = store.lock_store(LockMode::Shared)?;
    let endpoint = Endpoint::new(reference.domain(), options.tls_verify);
    let cred = options
        .auth
        .lookup(reference.domain(), reference.path())?
        .map(|(c, _)| c);
    let session = Session::open(client, &endpoint, reference.path(), Some("pull"), cred)?;
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => crate::image::reference::DEFAULT_TAG.to_string(),
    };
    let top = manifest::fetch(&session, &wanted)?;
    let image_manifest = match top.kind {
        Kind::Image => top.clone(),
        Kind::Index => {
            let index = top.index(&session, &wanted)?;
            let chosen = manifest::select(&index, &options.platform).ok_or_else(|| {
                RegistryError::NoPlatform {
                    repo: session.repo.clone(),
                    reference: wanted.clone(),
                    platform: options.platform.to_string(),
                    available: manifest::platforms(&index),
                }
            })?;
            manifest::fetch(&session, chosen.digest().as_ref())?
        }
    };
    let shown = image_manifest.digest.to_string();
    let parsed = image_manifest.image(&session, &shown)?;
    let malformed = |reason: String| RegistryError::MalformedManifest {
        repo: session.repo.clone(),
        reference: shown.clone(),
        reason,
    };
    let blob_of = |d: &Descriptor, what: &str| -> Result<Digest, RegistryError> {
        descriptor_digest(d, what).map_err(|e| malformed(e.to_string()))
    };
    // Every layer's media type must be one nook can unpack, before anything is fetched.
    let mut compressions = Vec::new();
    for d in parsed.layers() {
        compressions.push(
            Compression::from_media_type(d.media_type().as_ref()).map_err(|source| {
                RegistryError::Layer {
                    repo: session.repo.clone(),
                    reference: shown.clone(),
                    digest: d.digest().to_string(),
                    source,
                }
            })?,
        );
    }
    let config = BlobRef {
        digest: blob_of(parsed.config(), "the config of the manifest")?,
        size: parsed.config().size(),
        layer: None,
    };

    let tags: Vec<Reference> = reference
        .tag()
        .map(|_| reference.clone())
        .into_iter()
        .collect();
    let up_to_date = store.has_blob(&image_manifest.digest)
        && store.images()?.iter().any(|i| {
            i.manifest_digest == image_manifest.digest
                && (tags.is_empty() || tags.iter().all(|t| i.tags.contains(t)))
        });
    match reference.tag() {
        Some(tag) => progress.line(&format!("{tag}: Pulling from {}", reference.path())),
        None => progress.line(&format!("Pulling from {}", reference.path())),
    }

    // The config first: it names the diff id each layer must decompress to.
    let quiet = Progress::new(Mode::Quiet, Box::new(std::io::sink()));
    download::download(
        &session,
        store,
        &config,
        &quiet.task(&config.digest, config.size),
    )?;
    let config_bytes = store.read_blob(&config.digest)?;
    let parsed_config = ImageConfiguration::from_reader(&config_bytes[..])
        .map_err(|e| malformed(format!("its config {} is malformed: {e}", config.digest)))?;
    let diff_ids = parsed_config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d).map_err(|e| malformed(format!("a diff id of its config: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != parsed.layers().len() {
        return Err(malformed(format!(
            "it has {} layers but its config lists {} diff ids",
            parsed.layers().len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for ((d, compression), diff_id) in parsed.layers().iter().zip(compressions).zip(diff_ids) {
        layers.push(BlobRef {
            digest: blob_of(d, "a layer of the manifest")?,
            size: d.size(),
            layer: Some((compression, diff_id)),
        });
    }
    let tasks: Vec<_> = layers
        .iter()
        .map(|l| {
            let task = progress.task(&l.digest, l.size);
            if !store.has_blob(&l.digest) {
                task.status("Pulling fs layer");
            }
            (l, task)
        })
        .collect();
    workers::for_each(&tasks, workers::PARALLEL, |(layer, task)| {
        match download::download(&session, store, layer, task)? {
            Outcome::Existed => task.finish("Already exists"),
            Outcome::Downloaded { .. } => task.finish("Pull complete"),
        }
        Ok::<(), RegistryError>(())
    })?;
    drop(tasks);

    let stored = store.put_blob(&image_manifest.bytes)?;
    debug_assert_eq!(stored, image_manifest.digest);
    let size = image_manifest.bytes.len() as u64;
    store.set_tags(&image_manifest.digest, size, &tags)?;
    let image = store.load_image(&image_manifest.digest, size, tags)?;
    Ok(Pulled {
        digest: top.digest,
        image,
        up_to_date,
    })
}
