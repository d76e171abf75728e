//! The reading end of a copy: the entry a copy starts from, opened once (inside a container's
//! root with `openat2(RESOLVE_IN_ROOT)`, or on the host), then read only through that
//! descriptor and the [`walk`]er, into a [`Sink`] or as a tar.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use super::extract::IntoSink;
use super::fs::{open_in_root, open_path, read_link_fd, reopen, stat_fd};
use super::sink::{Content, Meta, Sink};
use super::{CopyError, CopyInfo};
use crate::layer::walk::{self, Entry, Kind, Mode, Visitor};
use crate::layer::{LayerError, Stat};

/// What is copied: the opened entry (not followed unless `-L`), its name, and whether only a
/// directory's contents go (`SRC/.`).
pub struct Source {
    fd: OwnedFd,
    stat: Stat,
    info: CopyInfo,
    shown: String,
}

impl Source {
    /// What the path a source is given as says of it: its name, and whether only its entries
    /// go (`SRC/.`); whether it is a directory only opening it tells.
    pub fn info_of(path: &str) -> CopyInfo {
        CopyInfo {
            dir: false,
            name: Path::new(path)
                .components()
                .rfind(|c| matches!(c, Component::Normal(_)))
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_else(|| ".".into()),
            contents_only: path.ends_with("/.") || path == ".",
        }
    }

    /// Opens `path` inside `root` (a container's), or on the host when `root` is none;
    /// follows a symlink at `path` itself only with `follow` (`-L`).
    pub fn open(
        root: Option<BorrowedFd<'_>>,
        path: &str,
        follow: bool,
    ) -> Result<Source, CopyError> {
        let mut flags = libc::O_PATH;
        if !follow {
            flags |= libc::O_NOFOLLOW;
        }
        let p = Path::new(path);
        let fd = match root {
            Some(root) => open_in_root(root, p, flags, 0),
            None => open_path(p, flags),
        };
        let fd = fd.map_err(|source| match (root.is_some(), source.kind()) {
            (true, io::ErrorKind::NotFound) => CopyError::NotFound { path: path.into() },
            (inside, _) => CopyError::Open {
                path: path.into(),
                place: place(inside),
                source,
            },
        })?;
        let stat = stat_fd(fd.as_fd()).map_err(|source| CopyError::Read {
            path: path.into(),
            source,
        })?;
        Ok(Source {
            fd,
            stat,
            info: CopyInfo {
                dir: stat.is_dir(),
                ..Source::info_of(path)
            },
            shown: path.to_string(),
        })
    }

    /// What a destination needs to know of the source.
    pub fn info(&self) -> &CopyInfo {
        &self.info
    }

    fn read_err(&self) -> impl Fn(io::Error) -> CopyError + '_ {
        |source| CopyError::Read {
            path: self.shown.clone(),
            source,
        }
    }

    /// Writes the source at `base` of `sink` (its entries below it).
    pub fn into_sink(self, mut sink: Sink, base: PathBuf) -> Result<u64, CopyError> {
        let write = |source| CopyError::Write {
            path: self.shown.clone(),
            source,
        };
        let meta = Meta::of(&self.stat);
        if self.stat.is_dir() {
            sink.put(&base, &meta, Content::Dir).map_err(write)?;
            let dir =
                reopen(&self.fd, libc::O_RDONLY | libc::O_DIRECTORY).map_err(self.read_err())?;
            walk::walk(
                dir.as_fd(),
                Mode::Plain,
                &Default::default(),
                &mut IntoSink {
                    sink: &mut sink,
                    base,
                },
            )?;
        } else if self.stat.is_file() {
            let mut f = File::from(reopen(&self.fd, libc::O_RDONLY).map_err(self.read_err())?);
            let meta = Meta {
                link_key: None,
                ..meta
            };
            sink.put(&base, &meta, Content::File(&mut f))
                .map_err(write)?;
        } else if self.stat.is_symlink() {
            let target = read_link_fd(self.fd.as_fd()).map_err(self.read_err())?;
            sink.put(&base, &meta, Content::Symlink(target))
                .map_err(write)?;
        } else {
            sink.put(
                &base,
                &meta,
                Content::Special(self.stat.file_type(), self.stat.rdev),
            )
            .map_err(write)?;
        }
        sink.finish().map_err(write)
    }

    /// Writes the source as docker's `cp CONTAINER:SRC -` does: under its name, or its
    /// entries alone for `SRC/.`.
    pub fn send(self, tar: &mut dyn Visitor) -> Result<(), CopyError> {
        let base = if self.info.contents_only {
            PathBuf::new()
        } else {
            PathBuf::from(&self.info.name)
        };
        self.send_as(&base, tar)
    }

    /// Writes the source rebased: itself as `.`, its entries below it, for a receiver that
    /// places it ([`super::untar_rebased`]).
    pub fn send_rebased(self, tar: &mut dyn Visitor) -> Result<(), CopyError> {
        self.send_as(Path::new("."), tar)
    }

    /// Writes the source's own entry as `base` (none when `base` is empty), its entries below
    /// `base`.
    fn send_as(self, base: &Path, tar: &mut dyn Visitor) -> Result<(), CopyError> {
        let read = self.read_err();
        let kind = if self.stat.is_dir() {
            Kind::Dir { opaque: false }
        } else if self.stat.is_file() {
            Kind::File(File::from(reopen(&self.fd, libc::O_RDONLY).map_err(&read)?))
        } else if self.stat.is_symlink() {
            Kind::Symlink(read_link_fd(self.fd.as_fd()).map_err(&read)?)
        } else {
            Kind::Special
        };
        if !base.as_os_str().is_empty() {
            let stat = Stat {
                // A file's one entry in this stream: never a link to an earlier one.
                nlink: if self.stat.is_dir() {
                    self.stat.nlink
                } else {
                    1
                },
                ..self.stat
            };
            tar.visit(Entry {
                path: base,
                stat,
                kind,
                xattrs: Vec::new(),
            })?;
        }
        if self.stat.is_dir() {
            let dir = reopen(&self.fd, libc::O_RDONLY | libc::O_DIRECTORY).map_err(&read)?;
            let base = if base == Path::new(".") {
                PathBuf::new()
            } else {
                base.to_path_buf()
            };
            walk::walk(
                dir.as_fd(),
                Mode::Plain,
                &Default::default(),
                &mut Prefixed { inner: tar, base },
            )?;
        }
        Ok(())
    }
}

/// How an error names where a path was looked for.
pub(super) fn place(inside: bool) -> &'static str {
    if inside {
        " in the container"
    } else {
        ""
    }
}

/// Puts `base` in front of every path of a walk.
struct Prefixed<'a> {
    inner: &'a mut dyn Visitor,
    base: PathBuf,
}

impl Visitor for Prefixed<'_> {
    fn visit(&mut self, entry: Entry<'_>) -> Result<(), LayerError> {
        let path = self.base.join(entry.path);
        self.inner.visit(Entry {
            path: &path,
            ..entry
        })
    }
}
