//! The one directory walker that reads a container's files: the guest agent's writable layer,
//! and on the host the namespace column's writable layer (`commit`, `diff`) and its whole
//! filesystem (`export`).
//!
//! The tree may belong to a running, hostile container that changes it while it is read, so
//! the walker reads it only through descriptors: each directory is opened relative to its
//! parent's descriptor with `O_NOFOLLOW`, each header field comes from `fstat` of the opened
//! descriptor (or `fstatat(AT_SYMLINK_NOFOLLOW)` for what is not opened: symlinks, devices,
//! fifos), and no path string is resolved from the root again. A symlink is never followed: a
//! directory swapped for a symlink between listing and opening is written as the symlink. An
//! entry gone by then is skipped; an entry whose type changed is taken as what it now is.
//!
//! Two modes: [`Mode::Layer`] reads an overlayfs upper directory (whiteouts and opaque
//! directories are reported as such, the agent's untouched mount targets left out), and
//! [`Mode::Plain`] reads any tree as it is. Entries come depth-first in name order, so the same
//! tree gives the same walk.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::fd::{self, Stat};
use super::targets::{MountTargets, TargetKind};
use super::LayerError;

/// How the walked tree is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An overlayfs upper directory becoming an OCI layer.
    Layer,
    /// A tree as it is (a mounted overlay, for `export`).
    Plain,
}

/// What an entry is, as read through its descriptor.
#[derive(Debug)]
pub enum Kind {
    /// A directory; `opaque` when overlayfs marked it so (hiding the lower layers' one).
    /// Its entries follow it.
    Dir {
        opaque: bool,
    },
    /// A regular file, open for reading; its header size is `Stat::size`.
    File(File),
    Symlink(PathBuf),
    /// A character or block device, a fifo or a socket: all it is lies in its `Stat`.
    Special,
    /// An overlayfs whiteout ([`Mode::Layer`] only): the entry of this name was deleted.
    Whiteout,
}

/// One entry of the walk.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The path relative to the walk's root.
    pub path: &'a Path,
    pub stat: Stat,
    pub kind: Kind,
    /// Extended attributes without overlay's own (none for whiteouts).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Receives the entries of a walk, in order.
pub trait Visitor {
    fn visit(&mut self, entry: Entry<'_>) -> Result<(), LayerError>;
}

/// An entry as opened, its type decided by the descriptor, not by an earlier look.
#[derive(Debug)]
pub enum Opened {
    /// Gone since the directory was listed.
    Gone,
    Dir(OwnedFd, Stat),
    File(File, Stat),
    Symlink(PathBuf, Stat),
    /// Not opened (a device, a fifo, a socket): its `fstatat`.
    Other(Stat),
}

/// How often an entry may change type under the walker before it gives up on it.
const MAX_TRIES: usize = 64;

fn changed_type(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::ENOTDIR | libc::EINVAL | libc::EISDIR)
    )
}

fn gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

/// Opens the entry `name` of the directory `dir` without following a symlink: a directory
/// with `O_DIRECTORY|O_NOFOLLOW`, a regular file with `O_NOFOLLOW|O_NONBLOCK`, a symlink read
/// with `readlinkat`. When the entry changes type between the look and the open, it is looked
/// at again and taken as what it now is.
pub fn open_entry(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Opened> {
    for _ in 0..MAX_TRIES {
        let st = match fd::fstatat(dir, name) {
            Ok(st) => st,
            Err(e) if gone(&e) => return Ok(Opened::Gone),
            Err(e) => return Err(e),
        };
        if st.is_dir() {
            match fd::openat(
                dir,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            ) {
                Ok(fd) => {
                    let st = fd::fstat(fd.as_fd())?;
                    return Ok(Opened::Dir(fd, st));
                }
                Err(e) if gone(&e) => return Ok(Opened::Gone),
                Err(e) if changed_type(&e) => continue,
                Err(e) => return Err(e),
            }
        } else if st.is_file() {
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
            match fd::openat(dir, name, flags) {
                Ok(fd) => {
                    let st = fd::fstat(fd.as_fd())?;
                    if st.is_file() {
                        return Ok(Opened::File(File::from(fd), st));
                    }
                    // Replaced (by a fifo, a device, a directory) since the look.
                    continue;
                }
                Err(e) if gone(&e) => return Ok(Opened::Gone),
                Err(e) if changed_type(&e) => continue,
                Err(e) => return Err(e),
            }
        } else if st.is_symlink() {
            match fd::readlinkat(dir, name) {
                Ok(target) => return Ok(Opened::Symlink(target, st)),
                Err(e) if gone(&e) => return Ok(Opened::Gone),
                Err(e) if changed_type(&e) => continue,
                Err(e) => return Err(e),
            }
        } else {
            return Ok(Opened::Other(st));
        }
    }
    Err(io::Error::other(format!(
        "it changed type more than {MAX_TRIES} times while being read"
    )))
}

/// Walks the tree below the directory `root` (the root itself is not an entry).
pub fn walk(
    root: BorrowedFd<'_>,
    mode: Mode,
    targets: &MountTargets,
    visitor: &mut dyn Visitor,
) -> Result<(), LayerError> {
    Walker {
        mode,
        targets,
        #[cfg(test)]
        before_open: None,
    }
    .run(root, visitor)
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Read {
        path: path.to_owned(),
        source,
    }
}

/// One directory being walked: its descriptor and the names still to visit.
struct Level {
    fd: OwnedFd,
    rel: PathBuf,
    names: std::vec::IntoIter<OsString>,
}

/// See [`Walker::before_open`].
#[cfg(test)]
pub(super) type OpenHook = Box<dyn FnMut(&Path)>;

pub(super) struct Walker<'a> {
    mode: Mode,
    targets: &'a MountTargets,
    /// Called between listing a directory and opening each of its entries, so a test can
    /// change the tree exactly there.
    #[cfg(test)]
    pub(super) before_open: Option<OpenHook>,
}

impl<'a> Walker<'a> {
    #[cfg(test)]
    pub(super) fn new(mode: Mode, targets: &'a MountTargets) -> Self {
        Walker {
            mode,
            targets,
            before_open: None,
        }
    }

    /// Walks depth-first without recursion (a deep tree cannot exhaust the stack); one
    /// descriptor is held per level.
    pub(super) fn run(
        &mut self,
        root: BorrowedFd<'_>,
        visitor: &mut dyn Visitor,
    ) -> Result<(), LayerError> {
        let root_path = Path::new(".");
        let fd = root.try_clone_to_owned().map_err(read_err(root_path))?;
        let names = fd::list_dir(fd.as_fd()).map_err(read_err(root_path))?;
        let mut stack = vec![Level {
            fd,
            rel: PathBuf::new(),
            names: names.into_iter(),
        }];
        while let Some(level) = stack.last_mut() {
            let Some(name) = level.names.next() else {
                stack.pop();
                continue;
            };
            let rel = level.rel.join(&name);
            #[cfg(test)]
            if let Some(hook) = self.before_open.as_mut() {
                hook(&rel);
            }
            let dir = level.fd.as_fd();
            let opened = open_entry(dir, &name).map_err(read_err(&rel))?;
            if self.mode == Mode::Layer
                && self.targets.kind_of(&rel).is_some()
                && self.is_untouched_target(&rel, &opened)?
            {
                continue;
            }
            let entry = match opened {
                Opened::Gone => continue,
                Opened::Dir(fd, stat) => {
                    let xattrs = fd::fd_xattrs(fd.as_fd()).map_err(read_err(&rel))?;
                    let opaque = self.mode == Mode::Layer && is_opaque(fd.as_fd());
                    visitor.visit(Entry {
                        path: &rel,
                        stat,
                        kind: Kind::Dir { opaque },
                        xattrs,
                    })?;
                    let names = fd::list_dir(fd.as_fd()).map_err(read_err(&rel))?;
                    stack.push(Level {
                        fd,
                        rel,
                        names: names.into_iter(),
                    });
                    continue;
                }
                Opened::File(file, stat) => Entry {
                    path: &rel,
                    stat,
                    xattrs: fd::fd_xattrs(file.as_fd()).map_err(read_err(&rel))?,
                    kind: Kind::File(file),
                },
                Opened::Symlink(target, stat) => Entry {
                    path: &rel,
                    stat,
                    xattrs: fd::entry_xattrs(dir, &name).map_err(read_err(&rel))?,
                    kind: Kind::Symlink(target),
                },
                Opened::Other(stat) if self.mode == Mode::Layer && stat.is_whiteout() => Entry {
                    path: &rel,
                    stat,
                    xattrs: Vec::new(),
                    kind: Kind::Whiteout,
                },
                Opened::Other(stat) => Entry {
                    path: &rel,
                    stat,
                    xattrs: fd::entry_xattrs(dir, &name).map_err(read_err(&rel))?,
                    kind: Kind::Special,
                },
            };
            visitor.visit(entry)?;
        }
        Ok(())
    }

    /// Whether `rel`, a recorded mount target, is still what the agent made and nothing has
    /// changed since: a file target still an empty regular file with no other link, or a
    /// directory target still a (not opaque) directory holding only such entries. Anything
    /// else in its place (content, another type, a whiteout, a file of the container's) is the
    /// container's doing and is written.
    fn is_untouched_target(&self, rel: &Path, opened: &Opened) -> Result<bool, LayerError> {
        let fd = match (self.targets.kind_of(rel), opened) {
            (Some(TargetKind::File), Opened::File(_, st)) => {
                return Ok(st.size == 0 && st.nlink == 1)
            }
            (Some(TargetKind::Dir), Opened::Dir(fd, _)) if !is_opaque(fd.as_fd()) => fd,
            _ => return Ok(false),
        };
        for name in fd::list_dir(fd.as_fd()).map_err(read_err(rel))? {
            let child_rel = rel.join(&name);
            let child = open_entry(fd.as_fd(), &name).map_err(read_err(&child_rel))?;
            if matches!(child, Opened::Gone) {
                continue;
            }
            if !self.is_untouched_target(&child_rel, &child)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether overlayfs marked the directory opaque (`trusted.` as root of the machine, `user.`
/// in a user namespace).
fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| fd::fd_xattr(dir, name).is_some_and(|v| v == b"y"))
}

#[cfg(test)]
mod tests;
