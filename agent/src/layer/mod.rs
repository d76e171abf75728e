//! Streams a container's files as a tar: an overlayfs upper directory as an OCI layer (for
//! `diff` and `commit` in both columns, and the VM column's `export`), or a whole tree as it is
//! (the namespace column's `export` of its read-only overlay). Both read the tree through the
//! one descriptor-based [`walk`]er.
//!
//! overlayfs records deletions in its own way; the OCI layer format has its own:
//! - a whiteout (a character device 0/0) becomes an empty `.wh.<name>` file next to it;
//! - an opaque directory (xattr `trusted.overlay.opaque` or `user.overlay.opaque` = `y`) becomes
//!   the directory plus an empty `<dir>/.wh..wh..opq` file;
//! - overlay's own xattrs (`trusted.overlay.*`, `user.overlay.*`) are dropped, the others kept as
//!   PAX `SCHILY.xattr.*` records.
//!
//! The whiteout names are [`whiteout`]'s, the ones the runtime's layer readers use too.
//!
//! The bind-mount targets the agent created itself ([`targets`]) are left out while they are
//! still its untouched empty files (or directories holding only those).
//!
//! Entries are written depth-first in name order, so the same tree gives the same tar. Every
//! entry of more than one link (same device and inode) after the first becomes a tar hard link
//! to the first path written. The overlay is mounted without `redirect_dir` and `metacopy`, so
//! every upper entry is complete on its own.

pub(crate) mod fd;
pub mod targets;
pub mod walk;
pub mod whiteout;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::protocol::MAX_DATA_CHUNK;
pub use fd::{exists_beneath, Stat};
use targets::{MountTargets, TargetsError};
use walk::{Entry, Kind, Mode, Visitor};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot read {} of the container's files", path.display())]
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

/// Opens the directory a walk starts from (a path the caller trusts, such as the upper
/// directory it created or a `/proc/self/fd/N` link to it).
pub fn open_root(path: &Path) -> Result<OwnedFd, LayerError> {
    fd::open_dir(path).map_err(|source| LayerError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Walks the upper directory `upper` as an OCI layer ([`Mode::Layer`]), leaving out the
/// agent's untouched mount targets, whose record is read from next to `upper`
/// ([`targets::record_path`]).
pub fn walk_upper(upper: &Path, visitor: &mut dyn Visitor) -> Result<(), LayerError> {
    let targets = MountTargets::load(&targets::record_path(upper))
        .map_err(|source| LayerError::Targets { source })?;
    let root = open_root(upper)?;
    walk::walk(root.as_fd(), Mode::Layer, &targets, visitor)
}

/// Writes the OCI layer tar of the upper directory `upper` into `out` (call
/// [`ChunkSink::finish`] afterwards when `out` is one).
pub fn write_upper_tar<W: Write>(upper: &Path, out: W) -> Result<(), LayerError> {
    let mut tar = TarWriter::new(out);
    walk_upper(upper, &mut tar)?;
    tar.finish().map(drop)
}

/// Writes the tree below `root` as it is ([`Mode::Plain`]) as a tar into `out`.
pub fn write_tree_tar<W: Write>(root: &Path, out: W) -> Result<W, LayerError> {
    let fd = open_root(root)?;
    let mut tar = TarWriter::new(out);
    walk::walk(fd.as_fd(), Mode::Plain, &MountTargets::default(), &mut tar)?;
    tar.finish()
}

/// A [`Visitor`] writing each entry into a tar.
pub struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    /// The first path written of each entry with more than one link, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        TarWriter {
            builder,
            links: HashMap::new(),
        }
    }

    /// Ends the archive and hands back the writer.
    pub fn finish(self) -> Result<W, LayerError> {
        self.builder
            .into_inner()
            .map_err(|source| LayerError::Write { source })
    }
}

impl<W: Write> Visitor for TarWriter<W> {
    fn visit(&mut self, entry: Entry<'_>) -> Result<(), LayerError> {
        let Entry {
            path,
            stat,
            kind,
            xattrs,
        } = entry;
        let entry_err = |source| LayerError::Entry {
            path: path.to_owned(),
            source,
        };
        let builder = &mut self.builder;
        if let Kind::Whiteout = kind {
            let name = whiteout::whiteout_name(path.file_name().unwrap_or_default());
            let parent = path.parent().unwrap_or(Path::new(""));
            return append_empty(builder, &parent.join(name), &stat);
        }
        let socket = stat.file_type() == libc::S_IFSOCK;
        if socket {
            // Sockets cannot be represented in a layer; docker skips them too.
            return Ok(());
        }
        if !xattrs.is_empty() {
            let records = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect::<Vec<_>>();
            builder
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(entry_err)?;
        }
        if !matches!(kind, Kind::Dir { .. }) && stat.nlink > 1 {
            match self.links.get(&(stat.dev, stat.ino)) {
                Some(first) => {
                    let mut h = header_for(&stat, tar::EntryType::Link);
                    return builder.append_link(&mut h, path, first).map_err(entry_err);
                }
                None => {
                    self.links.insert((stat.dev, stat.ino), path.to_owned());
                }
            }
        }
        match kind {
            Kind::Dir { opaque } => {
                let mut h = header_for(&stat, tar::EntryType::Directory);
                builder
                    .append_data(&mut h, path, io::empty())
                    .map_err(entry_err)?;
                if opaque {
                    append_empty(builder, &path.join(whiteout::OPAQUE), &stat)?;
                }
                Ok(())
            }
            Kind::Symlink(target) => {
                let mut h = header_for(&stat, tar::EntryType::Symlink);
                builder.append_link(&mut h, path, target).map_err(entry_err)
            }
            Kind::File(file) => {
                let mut h = header_for(&stat, tar::EntryType::Regular);
                h.set_size(stat.size);
                let data = SizedReader {
                    file,
                    left: stat.size,
                };
                builder.append_data(&mut h, path, data).map_err(entry_err)
            }
            Kind::Special | Kind::Whiteout => {
                let kind = match stat.file_type() {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = header_for(&stat, kind);
                h.set_device_major(libc::major(stat.rdev))
                    .map_err(entry_err)?;
                h.set_device_minor(libc::minor(stat.rdev))
                    .map_err(entry_err)?;
                builder
                    .append_data(&mut h, path, io::empty())
                    .map_err(entry_err)
            }
        }
    }
}

/// A file's data as its header announced it: cut at that size when the file has grown since
/// its `fstat`, padded with zeros when it has shrunk, so the tar stays valid.
struct SizedReader {
    file: File,
    left: u64,
}

impl Read for SizedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn header_for(stat: &Stat, entry: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(entry);
    h.set_mode(stat.mode & 0o7777);
    h.set_uid(u64::from(stat.uid));
    h.set_gid(u64::from(stat.gid));
    h.set_mtime(stat.mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn append_empty<W: Write>(
    builder: &mut tar::Builder<W>,
    rel: &Path,
    stat: &Stat,
) -> Result<(), LayerError> {
    let mut h = header_for(stat, tar::EntryType::Regular);
    h.set_mode(0o644);
    builder
        .append_data(&mut h, rel, io::empty())
        .map_err(|source| LayerError::Entry {
            path: rel.to_owned(),
            source,
        })
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
