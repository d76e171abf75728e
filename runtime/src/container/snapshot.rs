//! A container's filesystem turned into something else: `docker diff` lines, a new image whose
//! top layer is the writable layer (`commit`), or one tar of the whole filesystem (`export`).
//! The container's isolation backend reads its layer; this module makes the image.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use chrono::{SecondsFormat, Utc};
use oci_spec::image::{Descriptor, History, MediaType};

use super::engine::Engine;
use super::store::{Container, ContainerError};
use crate::image::config::apply_change;
use crate::image::{Image, Reference, Store};
use crate::isolation::ImageSource;
use crate::layers::changes::Change;
use crate::util::atomic::TempFile;
use crate::util::lock::{FileLock, LockMode};

/// Whether `container` runs now. A stopped container's layer is read under its lock (a VM's
/// disk is read by booting it), which keeps `start` away meanwhile; the returned lock is held
/// until the reading ends.
fn running(
    engine: &Engine,
    container: &Container,
) -> Result<(bool, Option<FileLock>), ContainerError> {
    let lock = engine.containers.lock(container.id())?;
    let running = engine
        .containers
        .load(container.id())?
        .status()
        .is_running();
    Ok((running, (!running).then_some(lock)))
}

/// The writable layer's changes, sorted by path.
pub fn diff(engine: &Engine, container: &Container) -> Result<Vec<Change>, ContainerError> {
    let store = Store::open(&engine.root)?;
    let image = store.resolve(&container.config.image_id)?;
    let (running, _lock) = running(engine, container)?;
    let source = ImageSource {
        store: &store,
        image: &image,
    };
    Ok(engine.backend(container).diff(&source, running)?)
}

/// What `commit` records in the new image.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    pub tags: Vec<Reference>,
    pub comment: Option<String>,
    pub author: Option<String>,
    /// Dockerfile instructions (`CMD ["sh"]`, `ENV A=1`) applied to the image config.
    pub changes: Vec<String>,
}

/// Makes a new image: the container's image plus its writable layer on top.
pub fn commit(
    engine: &Engine,
    container: &Container,
    opts: &CommitOptions,
) -> Result<Image, ContainerError> {
    let store = Store::open(&engine.root)?;
    let base = store.resolve(&container.config.image_id)?;
    let mut config = base.config.clone();
    let mut runtime = config.config().clone().unwrap_or_default();
    for change in &opts.changes {
        apply_change(&mut runtime, change).map_err(|e| ContainerError::BadChange {
            change: change.clone(),
            reason: e.to_string(),
        })?;
    }

    // The layer, written by the backend into a file of the store's temp directory.
    let mut tar = TempFile::new_in(&store.tmp_dir(), "commit-")?;
    {
        let (running, _lock) = running(engine, container)?;
        let file = tar.file().try_clone().map_err(io_err("open", tar.path()))?;
        let mut out = io::BufWriter::new(file);
        engine.backend(container).write_layer(running, &mut out)?;
        out.flush().map_err(io_err("write", tar.path()))?;
    }
    let tar_path = tar.path().to_path_buf();
    tar.file_mut()
        .seek(SeekFrom::Start(0))
        .map_err(io_err("read", &tar_path))?;

    let _lock = store.lock_store(LockMode::Shared)?;
    let mut blob = store.blob_writer()?;
    io::copy(tar.file_mut(), &mut blob).map_err(io_err("read", &tar_path))?;
    let size = blob.len();
    // An uncompressed layer: its digest is its diff id.
    let digest = blob.commit(None)?;

    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    config.rootfs_mut().diff_ids_mut().push(digest.to_string());
    let mut entry = History::default();
    entry.set_created(Some(now.clone()));
    entry.set_created_by(Some(container.config.launch.process.argv.join(" ")));
    entry.set_author(opts.author.clone());
    entry.set_comment(opts.comment.clone());
    config
        .history_mut()
        .get_or_insert_with(Vec::new)
        .push(entry);
    config.set_created(Some(now));
    if opts.author.is_some() {
        config.set_author(opts.author.clone());
    }
    config.set_config(Some(runtime));
    let json = config.to_string().map_err(|e| ContainerError::BadChange {
        change: "the image config".into(),
        reason: e.to_string(),
    })?;
    let config_digest = store.put_blob(json.as_bytes())?;
    let config_desc = Descriptor::new(
        MediaType::ImageConfig,
        json.len() as u64,
        oci_spec::image::Digest::from(&config_digest),
    );
    let mut layers = base.manifest.layers().clone();
    layers.push(Descriptor::new(
        MediaType::ImageLayer,
        size,
        oci_spec::image::Digest::from(&digest),
    ));
    let (manifest_digest, manifest_size) = store.put_manifest(&config_desc, layers)?;
    store.set_tags(&manifest_digest, manifest_size, &opts.tags)?;
    Ok(store.load_image(&manifest_digest, manifest_size, opts.tags.clone())?)
}

/// Writes the container's whole filesystem (image and writable layer) as a tar to `out`.
pub fn export(engine: &Engine, container: &Container, out: File) -> Result<(), ContainerError> {
    let store = Store::open(&engine.root)?;
    let image = store.resolve(&container.config.image_id)?;
    let (running, _lock) = running(engine, container)?;
    let source = ImageSource {
        store: &store,
        image: &image,
    };
    Ok(engine.backend(container).export(&source, running, out)?)
}

fn io_err(what: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |source| ContainerError::Io { what, path, source }
}
