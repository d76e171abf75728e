//! A container's filesystem turned into something else: `docker diff` lines, a new image whose
//! top layer is the writable layer (`commit`), or one tar of the whole filesystem (`export`).
//! The reading runs as root of a user namespace mapped like the containers; results come back
//! through a file opened before the fork.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use oci_spec::image::{Descriptor, History, MediaType};

use super::engine::Engine;
use super::store::{Container, ContainerError};
use crate::image::config::apply_change;
use crate::image::layer::{decompress, Compression};
use crate::image::{Image, Reference, Store};
use crate::isolation::namespace::sys::{LinuxSys, Sys};
use crate::isolation::vm::VmBackend;
use crate::layers::changes::{self, Change, ChangeKind};
use crate::layers::flatten::{self, Stack};
use crate::layers::unpack::LayerStream;
use crate::util::atomic::TempFile;
use crate::util::lock::LockMode;

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |source| ContainerError::Io { what, path, source }
}

fn lower_of(container: &Container) -> Result<PathBuf, ContainerError> {
    container
        .config
        .launch
        .rootfs
        .lower
        .first()
        .cloned()
        .ok_or_else(|| ContainerError::NoTree(container.name().to_string()))
}

/// The writable layer's changes, sorted by path.
pub fn diff(engine: &Engine, container: &Container) -> Result<Vec<Change>, ContainerError> {
    if let Some(vm) = engine.vm_backend(container) {
        let store = Store::open(&engine.root)?;
        let image = store.resolve(&container.config.image_id)?;
        let mut lower = Stack::default();
        for LayerStream { name, tar } in image_layers(&store, &image)? {
            lower
                .push(tar)
                .map_err(io_err("read layer", Path::new(&name)))?;
        }
        let mut layer = vm_layer(engine, container, &vm)?;
        let path = layer.path().to_path_buf();
        return flatten::diff_layer(io::BufReader::new(layer.file_mut()), &lower)
            .map_err(io_err("read", &path));
    }
    let upper = container.config.launch.rootfs.upper.clone();
    let lower = lower_of(container)?;
    let mut out = TempFile::new_in(&engine.containers.tmp_dir(), "diff-")?;
    let mut writer = out.file().try_clone().map_err(io_err("open", out.path()))?;
    engine.backend.as_container_root(
        &format!("read the writable layer of {}", container.name()),
        move || {
            let changes = changes::diff(&upper, &lower).map_err(|e| crate::errors::chain(&e))?;
            for c in changes {
                let k = match c.kind {
                    ChangeKind::Added => 'A',
                    ChangeKind::Changed => 'C',
                    ChangeKind::Deleted => 'D',
                };
                writer
                    .write_all(format!("{k}{}\0", c.path.display()).as_bytes())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        },
    )?;
    let mut text = String::new();
    let path = out.path().to_path_buf();
    let file = out.file_mut();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut text))
        .map_err(io_err("read", &path))?;
    Ok(text
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let kind = match s.as_bytes()[0] {
                b'A' => ChangeKind::Added,
                b'D' => ChangeKind::Deleted,
                _ => ChangeKind::Changed,
            };
            Change {
                path: PathBuf::from(&s[1..]),
                kind,
            }
        })
        .collect())
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

    let tar = match engine.vm_backend(container) {
        // The agent writes the layer from inside the guest.
        Some(vm) => vm_layer(engine, container, &vm)?,
        None => {
            // The layer, written by a process that can read every file of the layer.
            let tar = TempFile::new_in(&store.tmp_dir(), "commit-")?;
            let mut writer = tar.file().try_clone().map_err(io_err("open", tar.path()))?;
            let upper = container.config.launch.rootfs.upper.clone();
            engine.backend.as_container_root(
                &format!("read the writable layer of {}", container.name()),
                move || {
                    let mut out = io::BufWriter::new(&mut writer);
                    changes::layer_tar(&upper, &mut out).map_err(|e| crate::errors::chain(&e))?;
                    out.flush()
                        .map_err(|e| format!("cannot write the layer: {e}"))
                },
            )?;
            tar
        }
    };

    let _lock = store.lock_store(LockMode::Shared)?;
    let mut blob = store.blob_writer()?;
    let mut file = tar.file().try_clone().map_err(io_err("open", tar.path()))?;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| io::copy(&mut file, &mut blob))
        .map_err(io_err("read", tar.path()))?;
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
    if let Some(vm) = engine.vm_backend(container) {
        return export_vm(engine, container, &vm, out);
    }
    let upper = container.config.launch.rootfs.upper.clone();
    let lower = lower_of(container)?;
    let mount = engine.containers.tmp_dir().join(format!(
        "export-{}-{}",
        container.id(),
        std::process::id()
    ));
    std::fs::create_dir_all(&mount).map_err(io_err("create", &mount))?;
    let target = mount.clone();
    let result =
        engine
            .backend
            .as_container_root(&format!("export {}", container.name()), move || {
                // A read-only overlay of the writable layer over the image, in this helper's own
                // mount namespace: whiteouts hide what the container deleted.
                let spec = crate::isolation::RootfsSpec {
                    lower: vec![lower, upper],
                    upper: PathBuf::new(),
                    work: PathBuf::new(),
                    merged: target.clone(),
                    read_only: true,
                };
                let options = crate::isolation::namespace::rootfs::lower_only_options(&spec);
                LinuxSys
                    .mount(
                        "overlay",
                        &target,
                        Some("overlay"),
                        libc::MS_RDONLY,
                        Some(&options),
                    )
                    .map_err(|e| format!("mount the container's filesystem: {e}"))?;
                // Read through descriptors only: the container may be running and changing
                // its files meanwhile, and must not steer the reading out of its tree.
                nook_agent::layer::write_tree_tar(&target, io::BufWriter::new(out))
                    .map_err(|e| crate::errors::chain(&e))?
                    .flush()
                    .map_err(|e| format!("write the tar: {e}"))
            });
    let _ = std::fs::remove_dir(&mount);
    Ok(result?)
}

/// The decompressed layer tars of `image`, bottom first, each with its digest.
fn image_layers(store: &Store, image: &Image) -> Result<Vec<LayerStream<'static>>, ContainerError> {
    let mut out = Vec::new();
    for (desc, digest) in image.manifest.layers().iter().zip(image.layer_digests()?) {
        let layer_err = |source| ContainerError::Layer {
            layer: digest.to_string(),
            source,
        };
        let compression =
            Compression::from_media_type(desc.media_type().as_ref()).map_err(layer_err)?;
        let blob = store.open_blob(&digest)?;
        let tar = decompress(io::BufReader::new(blob), compression).map_err(layer_err)?;
        out.push(LayerStream {
            name: digest.to_string(),
            tar,
        });
    }
    Ok(out)
}

/// A VM container's writable layer as an OCI layer tar (written by the guest agent), in a
/// temporary file read from its start.
fn vm_layer(
    engine: &Engine,
    container: &Container,
    vm: &VmBackend,
) -> Result<TempFile, ContainerError> {
    let mut tar = TempFile::new_in(&engine.containers.tmp_dir(), "layer-")?;
    let path = tar.path().to_path_buf();
    // A stopped container's disk is read by booting it: its lock keeps `start` away meanwhile.
    let lock = engine.containers.lock(container.id())?;
    let running = engine
        .containers
        .load(container.id())?
        .status()
        .is_running();
    if running {
        drop(lock);
    }
    let mut out = io::BufWriter::new(tar.file().try_clone().map_err(io_err("open", &path))?);
    vm.stream_upper(&container.config.launch, running, &mut out)?;
    out.flush().map_err(io_err("write", &path))?;
    drop(out);
    tar.file_mut()
        .seek(SeekFrom::Start(0))
        .map_err(io_err("read", &path))?;
    Ok(tar)
}

/// `export` of a VM container: the visible entries of the image's layers and of the writable
/// layer, as one tar.
fn export_vm(
    engine: &Engine,
    container: &Container,
    vm: &VmBackend,
    out: File,
) -> Result<(), ContainerError> {
    let store = Store::open(&engine.root)?;
    let image = store.resolve(&container.config.image_id)?;
    let mut upper = vm_layer(engine, container, vm)?;
    let upper_path = upper.path().to_path_buf();
    let mut stack = Stack::default();
    for LayerStream { name, tar } in image_layers(&store, &image)? {
        stack
            .push(tar)
            .map_err(io_err("read layer", Path::new(&name)))?;
    }
    stack
        .push(io::BufReader::new(upper.file_mut()))
        .map_err(io_err("read", &upper_path))?;
    let mut builder = tar::Builder::new(io::BufWriter::new(out));
    let layers = image_layers(&store, &image)?;
    let count = layers.len();
    for (i, LayerStream { name, tar }) in layers.into_iter().enumerate() {
        stack
            .write_layer(i, tar, &mut builder)
            .map_err(io_err("export layer", Path::new(&name)))?;
    }
    upper
        .file_mut()
        .seek(SeekFrom::Start(0))
        .map_err(io_err("read", &upper_path))?;
    stack
        .write_layer(count, io::BufReader::new(upper.file_mut()), &mut builder)
        .map_err(io_err("export", &upper_path))?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("write the export of", Path::new(container.name())))
}
