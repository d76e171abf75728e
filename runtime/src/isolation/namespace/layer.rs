//! Reading a namespace container's writable layer (`diff`, `commit`) and its whole filesystem
//! (`export`). The reading runs as root of a user namespace mapped like the containers, through
//! the agent crate's descriptor-based walker; results come back through a file opened before
//! the fork.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::sys::{LinuxSys, Sys};
use super::Overlay;
use crate::isolation::{Host, IsolationError};
use crate::layers::changes::{self, Change, ChangeKind};
use crate::util::atomic::TempFile;

fn io_err(what: &str, path: &std::path::Path) -> impl FnOnce(io::Error) -> IsolationError {
    let what = format!("{what} {}", path.display());
    move |source| IsolationError::os(what, source)
}

/// Writes the writable layer as an OCI layer tar into `out`.
pub fn write_layer(
    host: &Host,
    overlay: &Overlay,
    out: &mut dyn Write,
) -> Result<(), IsolationError> {
    let mut tar = TempFile::new_in(&host.tmp_dir(), "layer-")?;
    let path = tar.path().to_path_buf();
    let mut writer = tar.file().try_clone().map_err(io_err("open", &path))?;
    let upper = overlay.upper.clone();
    host.ids
        .as_container_root("read the writable layer", move || {
            let mut out = io::BufWriter::new(&mut writer);
            changes::layer_tar(&upper, &mut out).map_err(|e| crate::errors::chain(&e))?;
            out.flush()
                .map_err(|e| format!("cannot write the layer: {e}"))
        })?;
    let file = tar.file_mut();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| io::copy(file, out))
        .map_err(io_err("read", &path))?;
    Ok(())
}

/// The writable layer's changes, sorted by path.
pub fn diff(host: &Host, overlay: &Overlay) -> Result<Vec<Change>, IsolationError> {
    let upper = overlay.upper.clone();
    let lower = overlay.image_tree().to_path_buf();
    let mut out = TempFile::new_in(&host.tmp_dir(), "diff-")?;
    let mut writer = out.file().try_clone().map_err(io_err("open", out.path()))?;
    host.ids
        .as_container_root("read the writable layer", move || {
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
        })?;
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

/// Writes the container's whole filesystem (image and writable layer) as a tar to `out`.
pub fn export(host: &Host, id: &str, overlay: &Overlay, out: File) -> Result<(), IsolationError> {
    let view = Overlay {
        // The writable layer over the image, read-only: whiteouts hide what the container
        // deleted.
        lower: vec![overlay.image_tree().to_path_buf(), overlay.upper.clone()],
        upper: PathBuf::new(),
        work: PathBuf::new(),
        merged: host
            .tmp_dir()
            .join(format!("export-{id}-{}", std::process::id())),
        read_only: true,
    };
    let mount = view.merged.clone();
    std::fs::create_dir_all(&mount).map_err(io_err("create", &mount))?;
    let result = host.ids.as_container_root("export the container", move || {
        // In this helper's own mount namespace.
        let options = super::rootfs::lower_only_options(&view);
        LinuxSys
            .mount(
                "overlay",
                &view.merged,
                Some("overlay"),
                libc::MS_RDONLY,
                Some(&options),
            )
            .map_err(|e| format!("mount the container's filesystem: {e}"))?;
        // Read through descriptors only: the container may be running and changing its files
        // meanwhile, and must not steer the reading out of its tree.
        nook_agent::layer::write_tree_tar(&view.merged, io::BufWriter::new(out))
            .map_err(|e| crate::errors::chain(&e))?
            .flush()
            .map_err(|e| format!("write the tar: {e}"))
    });
    let _ = std::fs::remove_dir(&mount);
    result
}
