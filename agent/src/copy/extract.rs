//! What feeds a [`Sink`]: a walk of a tree ([`IntoSink`]) or a tar stream ([`untar`]).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::fs::clean_relative;
use super::sink::{Content, Meta, Sink};
use crate::layer::walk::{Entry, Kind, Visitor};
use crate::layer::LayerError;

/// Feeds a walk's entries into a [`Sink`] below `base`.
pub struct IntoSink<'a> {
    pub sink: &'a mut Sink,
    pub base: PathBuf,
}

impl Visitor for IntoSink<'_> {
    fn visit(&mut self, entry: Entry<'_>) -> Result<(), LayerError> {
        let path = self.base.join(entry.path);
        let meta = Meta::of(&entry.stat);
        let result = match entry.kind {
            Kind::Dir { .. } => self.sink.put(&path, &meta, Content::Dir),
            Kind::File(mut f) => self.sink.put(&path, &meta, Content::File(&mut f)),
            Kind::Symlink(t) => self.sink.put(&path, &meta, Content::Symlink(t)),
            Kind::Special if entry.stat.file_type() == libc::S_IFSOCK => Ok(()),
            Kind::Special => self.sink.put(
                &path,
                &meta,
                Content::Special(entry.stat.file_type(), entry.stat.rdev),
            ),
            Kind::Whiteout => Ok(()),
        };
        result.map_err(|source| LayerError::Entry { path, source })
    }
}

/// Extracts the tar stream `input` into `sink` below `base` (`nook cp -`: an entry naming
/// the stream's top directory itself, `.` or `/`, is left out).
pub fn untar(input: impl Read, sink: &mut Sink, base: &Path) -> io::Result<()> {
    extract(input, sink, base, false)
}

/// Extracts a tree sent rebased (the source itself as `.`, its entries below it, as
/// [`super::Source::send_rebased`] writes it) at `base` of `sink`: the source's own entry
/// becomes `base`.
pub fn untar_rebased(input: impl Read, sink: &mut Sink, base: &Path) -> io::Result<()> {
    extract(input, sink, base, true)
}

fn extract(input: impl Read, sink: &mut Sink, base: &Path, with_top: bool) -> io::Result<()> {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = clean_relative(&entry.path()?)?;
        if rel.as_os_str().is_empty() && !with_top {
            continue;
        }
        let path = base.join(&rel);
        let h = entry.header();
        // An empty numeric field (some writers leave owners and times out) reads as 0.
        let meta = Meta {
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid: h.uid().unwrap_or(0) as u32,
            gid: h.gid().unwrap_or(0) as u32,
            mtime: h.mtime().unwrap_or(0) as i64,
            link_key: None,
        };
        let kind = h.entry_type();
        let link = || -> io::Result<PathBuf> {
            entry.link_name()?.map(|l| l.into_owned()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a link without a target")
            })
        };
        let content_link = match kind {
            tar::EntryType::Symlink => Some(Content::Symlink(link()?)),
            tar::EntryType::Link => Some(Content::Link(base.join(clean_relative(&link()?)?))),
            _ => None,
        };
        let dev = |h: &tar::Header| -> io::Result<u64> {
            let major = h.device_major()?.unwrap_or(0);
            let minor = h.device_minor()?.unwrap_or(0);
            Ok(libc::makedev(major, minor))
        };
        match (kind, content_link) {
            (_, Some(c)) => sink.put(&path, &meta, c)?,
            (tar::EntryType::Directory, _) => sink.put(&path, &meta, Content::Dir)?,
            (tar::EntryType::Regular | tar::EntryType::Continuous, _) => {
                sink.put(&path, &meta, Content::Stream(&mut entry))?
            }
            (tar::EntryType::Fifo, _) => {
                sink.put(&path, &meta, Content::Special(libc::S_IFIFO, 0))?
            }
            (tar::EntryType::Char, _) => {
                let rdev = dev(entry.header())?;
                sink.put(&path, &meta, Content::Special(libc::S_IFCHR, rdev))?
            }
            (tar::EntryType::Block, _) => {
                let rdev = dev(entry.header())?;
                sink.put(&path, &meta, Content::Special(libc::S_IFBLK, rdev))?
            }
            // PAX and GNU long-name records are read by the tar crate itself.
            _ => {}
        }
    }
    Ok(())
}
