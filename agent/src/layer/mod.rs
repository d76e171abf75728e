//! Streams an overlayfs upper directory as an OCI layer tar (for `nook diff`, `commit`
//! and `export`: all three read this one stream).
//!
//! overlayfs records deletions in its own way; the OCI layer format has its own:
//! - a whiteout (a character device 0/0) becomes an empty `.wh.<name>` file next to it;
//! - an opaque directory (xattr `trusted.overlay.opaque` or `user.overlay.opaque` = `y`) becomes
//!   the directory plus an empty `<dir>/.wh..wh..opq` file;
//! - overlay's own xattrs (`trusted.overlay.*`, `user.overlay.*`) are dropped, the others kept as
//!   PAX `SCHILY.xattr.*` records.
//!
//! The bind-mount targets the agent created itself ([`targets`]) are left out while they are
//! still its untouched empty files (or directories holding only those).
//!
//! Entries are written depth-first in name order, so the same upper gives the same tar.
//! Hard links inside the upper become tar hard links. The overlay is mounted without
//! `redirect_dir` and `metacopy`, so every upper entry is complete on its own.

pub mod targets;

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::protocol::MAX_DATA_CHUNK;
use targets::{MountTargets, TargetKind, TargetsError};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot read {} in the writable layer", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the layer entry for {}", path.display())]
    Entry {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the layer stream")]
    Write {
        #[source]
        source: io::Error,
    },
    #[error("cannot tell the agent's own mount targets from the container's files")]
    Targets {
        #[source]
        source: TargetsError,
    },
}

/// Writes the tar of `upper` into `out` (without the end-of-archive marker's trailing flush:
/// call [`ChunkSink::finish`] when `out` is one). The record of the agent's mount targets is
/// read from next to `upper` ([`targets::record_path`]).
pub fn write_upper_tar<W: Write>(upper: &Path, out: W) -> Result<(), LayerError> {
    let targets = MountTargets::load(&targets::record_path(upper))
        .map_err(|source| LayerError::Targets { source })?;
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut walker = Walker {
        builder: &mut builder,
        links: HashMap::new(),
        targets: &targets,
    };
    walker.walk(upper, Path::new(""))?;
    builder
        .into_inner()
        .map_err(|source| LayerError::Write { source })?;
    Ok(())
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Read {
        path: path.to_owned(),
        source,
    }
}

struct Walker<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    /// The first path of each multiply-linked file written, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
    targets: &'a MountTargets,
}

impl<W: Write> Walker<'_, W> {
    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<(), LayerError> {
        for name in sorted_names(dir)? {
            let path = dir.join(&name);
            let rel_path = rel.join(&name);
            let meta = fs::symlink_metadata(&path).map_err(read_err(&path))?;
            if self.is_untouched_target(&path, &rel_path, &meta)? {
                continue;
            }
            let builder = &mut *self.builder;
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                let mut wh = OsStr::new(".wh.").to_owned();
                wh.push(&name);
                append_empty(builder, &rel.join(wh), &meta)?;
            } else if ft.is_dir() {
                append(builder, &path, &rel_path, &meta, None)?;
                if is_opaque(&path) {
                    append_empty(builder, &rel_path.join(".wh..wh..opq"), &meta)?;
                }
                self.walk(&path, &rel_path)?;
            } else if ft.is_file() && meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                let first = self.links.get(&key).cloned();
                append(builder, &path, &rel_path, &meta, first.as_deref())?;
                if first.is_none() {
                    self.links.insert(key, rel_path);
                }
            } else {
                append(builder, &path, &rel_path, &meta, None)?;
            }
        }
        Ok(())
    }

    /// Whether `path` is a mount target the agent created and nothing has changed since: a
    /// file target still an empty regular file with no other link, or a directory target
    /// still a (not opaque) directory holding only such entries. Anything else in its place
    /// (content, another type, a whiteout, a file of the container's) is the container's doing
    /// and is written.
    fn is_untouched_target(
        &self,
        path: &Path,
        rel: &Path,
        meta: &Metadata,
    ) -> Result<bool, LayerError> {
        let ft = meta.file_type();
        match self.targets.kind_of(rel) {
            None => return Ok(false),
            Some(TargetKind::File) => {
                return Ok(ft.is_file() && meta.len() == 0 && meta.nlink() == 1)
            }
            Some(TargetKind::Dir) if !ft.is_dir() || is_opaque(path) => return Ok(false),
            Some(TargetKind::Dir) => {}
        }
        for name in sorted_names(path)? {
            let child = path.join(&name);
            let child_meta = fs::symlink_metadata(&child).map_err(read_err(&child))?;
            if !self.is_untouched_target(&child, &rel.join(&name), &child_meta)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The names in `dir`, sorted (so the same upper gives the same tar).
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, LayerError> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(read_err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_err(dir))?;
    names.sort();
    Ok(names)
}

fn header_for(meta: &Metadata, entry: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(entry);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn append_empty<W: Write>(
    builder: &mut tar::Builder<W>,
    rel: &Path,
    meta: &Metadata,
) -> Result<(), LayerError> {
    let mut h = header_for(meta, tar::EntryType::Regular);
    h.set_mode(0o644);
    builder
        .append_data(&mut h, rel, io::empty())
        .map_err(|source| LayerError::Entry {
            path: rel.to_owned(),
            source,
        })
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    rel: &Path,
    meta: &Metadata,
    hardlink_to: Option<&Path>,
) -> Result<(), LayerError> {
    let entry_err = |source| LayerError::Entry {
        path: rel.to_owned(),
        source,
    };
    let xattrs = user_xattrs(path)?;
    if !xattrs.is_empty() {
        builder
            .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(entry_err)?;
    }
    let ft = meta.file_type();
    if let Some(target) = hardlink_to {
        let mut h = header_for(meta, tar::EntryType::Link);
        return builder.append_link(&mut h, rel, target).map_err(entry_err);
    }
    if ft.is_dir() {
        let mut h = header_for(meta, tar::EntryType::Directory);
        builder
            .append_data(&mut h, rel, io::empty())
            .map_err(entry_err)
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(read_err(path))?;
        let mut h = header_for(meta, tar::EntryType::Symlink);
        builder.append_link(&mut h, rel, target).map_err(entry_err)
    } else if ft.is_file() {
        let file = File::open(path).map_err(read_err(path))?;
        let mut h = header_for(meta, tar::EntryType::Regular);
        h.set_size(meta.len());
        builder.append_data(&mut h, rel, file).map_err(entry_err)
    } else {
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            // Sockets cannot be represented in a layer; docker skips them too.
            return Ok(());
        };
        let mut h = header_for(meta, kind);
        let rdev = meta.rdev();
        h.set_device_major(libc::major(rdev)).map_err(entry_err)?;
        h.set_device_minor(libc::minor(rdev)).map_err(entry_err)?;
        builder
            .append_data(&mut h, rel, io::empty())
            .map_err(entry_err)
    }
}

fn c_path(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| get_xattr(path, name).is_some_and(|v| v == b"y"))
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let cpath = c_path(path)?;
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and `buf` is valid for `buf.len()` bytes.
    let n = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// The entry's xattrs as PAX records, without overlay's own.
fn user_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, LayerError> {
    let Some(cpath) = c_path(path) else {
        return Ok(Vec::new());
    };
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: `cpath` is NUL-terminated and `names` is valid for `names.len()` bytes.
    let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        // Filesystems without xattr support simply have none.
        if err.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(LayerError::Read {
            path: path.to_owned(),
            source: err,
        });
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
            continue;
        }
        if let Some(value) = get_xattr(path, &name) {
            out.push((format!("SCHILY.xattr.{name}"), value));
        }
    }
    Ok(out)
}

/// A writer that hands its bytes on in chunks of at most [`MAX_DATA_CHUNK`] (one frame each).
pub struct ChunkSink<F> {
    emit: F,
    buf: Vec<u8>,
    total: u64,
}

impl<F: FnMut(&[u8]) -> io::Result<()>> ChunkSink<F> {
    pub fn new(emit: F) -> Self {
        ChunkSink {
            emit,
            buf: Vec::with_capacity(MAX_DATA_CHUNK),
            total: 0,
        }
    }

    /// Bytes written so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Emits what is buffered.
    pub fn finish(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            (self.emit)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<F: FnMut(&[u8]) -> io::Result<()>> Write for ChunkSink<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(MAX_DATA_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.total += n as u64;
        if self.buf.len() == MAX_DATA_CHUNK {
            self.finish()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
