//! The writing end of a copy: a [`Sink`] writes entries below a directory. Each entry's parent
//! is opened with `openat2(RESOLVE_IN_ROOT)` below the sink's root and the entry itself made
//! relative to that descriptor without following a symlink, so neither a symlink already in
//! the destination (a container's `/etc -> /`) nor one the copy itself writes can lead a write
//! out of the root.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::fs::{check, clean_relative, copy_data, cstr, open_at, open_in_root, unlink_any};
use crate::layer::Stat;

/// Who owns what a [`Sink`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    /// The source's owners (`cp -a`, a volume's copy-up).
    Keep,
    /// Whoever writes (the container's root inside a container, the user on the host).
    Writer,
}

/// An entry's metadata, as the sink applies it.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// The source's (device, inode) when it has more than one link: later entries of the same
    /// key become hard links to the first.
    pub link_key: Option<(u64, u64)>,
}

impl Meta {
    pub fn of(stat: &Stat) -> Meta {
        Meta {
            mode: stat.mode & 0o7777,
            uid: stat.uid,
            gid: stat.gid,
            mtime: stat.mtime,
            link_key: (!stat.is_dir() && stat.nlink > 1).then_some((stat.dev, stat.ino)),
        }
    }
}

/// What an entry holds.
pub enum Content<'a> {
    Dir,
    /// A regular file's data, `copy_file_range`d when both ends are files.
    File(&'a mut File),
    /// A regular file's data from a stream (a tar entry).
    Stream(&'a mut dyn Read),
    Symlink(PathBuf),
    /// A hard link to an entry already written, by its path below the sink's root.
    Link(PathBuf),
    /// A fifo, or a device (refused in a user namespace by the kernel): type bits and rdev.
    Special(u32, u64),
}

/// Writes entries below a directory (see the module's documentation).
pub struct Sink {
    root: OwnedFd,
    owners: Owners,
    /// The first path written of each multiply-linked source entry.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories' times, set once their entries are written.
    dir_times: Vec<(PathBuf, i64)>,
    /// The bytes of file data written.
    pub bytes: u64,
}

impl Sink {
    /// A sink writing below the directory `root`.
    pub fn new(root: OwnedFd, owners: Owners) -> Sink {
        Sink {
            root,
            owners,
            links: HashMap::new(),
            dir_times: Vec::new(),
            bytes: 0,
        }
    }

    /// The parent of `path` (resolved inside the root) and the entry's name.
    fn parent(&self, path: &Path) -> io::Result<(OwnedFd, CString)> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "an entry without a name")
        })?;
        let parent = path.parent().unwrap_or(Path::new(""));
        let dir = open_in_root(
            self.root.as_fd(),
            parent,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        Ok((dir, cstr(Path::new(name))?))
    }

    /// Writes one entry at `path` (relative to the root); an entry of another type already
    /// there is replaced, a directory is kept and merged into.
    pub fn put(&mut self, path: &Path, meta: &Meta, content: Content<'_>) -> io::Result<()> {
        let path = clean_relative(path)?;
        if path.as_os_str().is_empty() {
            // The root itself: only its metadata.
            return self.set_meta_fd(self.root.as_fd(), meta, true);
        }
        if let (Some(key), Content::File(_) | Content::Stream(_)) = (meta.link_key, &content) {
            if let Some(first) = self.links.get(&key).cloned() {
                return self.put(&path, meta, Content::Link(first));
            }
            self.links.insert(key, path.clone());
        }
        let (dir, name) = self.parent(&path)?;
        let d = dir.as_raw_fd();
        match content {
            Content::Dir => {
                // SAFETY: mkdirat with a directory descriptor and a NUL-terminated name.
                let made = unsafe { libc::mkdirat(d, name.as_ptr(), 0o700) };
                if made < 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
                let fd = open_at(
                    d,
                    &name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )?;
                self.set_meta_fd(fd.as_fd(), meta, false)?;
                self.dir_times.push((path, meta.mtime));
                Ok(())
            }
            Content::File(src) => {
                let mut out = self.create_file(d, &name)?;
                self.bytes += copy_data(src, &mut out)?;
                self.set_meta_fd(out.as_fd(), meta, true)
            }
            Content::Stream(src) => {
                let mut out = self.create_file(d, &name)?;
                self.bytes += io::copy(src, &mut out)?;
                self.set_meta_fd(out.as_fd(), meta, true)
            }
            Content::Symlink(target) => {
                let t = cstr(&target)?;
                // SAFETY: symlinkat with NUL-terminated strings and a directory descriptor.
                let mut r = unsafe { libc::symlinkat(t.as_ptr(), d, name.as_ptr()) };
                if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                    unlink_any(d, &name)?;
                    // SAFETY: as above.
                    r = unsafe { libc::symlinkat(t.as_ptr(), d, name.as_ptr()) };
                }
                check(r)?;
                self.set_meta_at(d, &name, meta)
            }
            Content::Link(first) => {
                let (first_dir, first_name) = self.parent(&clean_relative(&first)?)?;
                let _ = unlink_any(d, &name);
                // SAFETY: linkat between two directory descriptors, NUL-terminated names, no
                // flags: the first entry itself is linked, never what it might point to.
                check(unsafe {
                    libc::linkat(
                        first_dir.as_raw_fd(),
                        first_name.as_ptr(),
                        d,
                        name.as_ptr(),
                        0,
                    )
                })
            }
            Content::Special(kind, rdev) => {
                let _ = unlink_any(d, &name);
                // SAFETY: mknodat with a directory descriptor and a NUL-terminated name.
                check(unsafe {
                    libc::mknodat(d, name.as_ptr(), kind | (meta.mode & 0o7777), rdev)
                })?;
                self.set_meta_at(d, &name, meta)
            }
        }
    }

    fn create_file(&self, dir: libc::c_int, name: &CString) -> io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW;
        let fd = match open_at(dir, name, flags, 0o600) {
            Ok(fd) => fd,
            // A symlink, a directory, a fifo in its place: replaced, never followed.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::EISDIR | libc::ENXIO)
                ) =>
            {
                unlink_any(dir, name)?;
                open_at(dir, name, flags | libc::O_EXCL, 0o600)?
            }
            Err(e) => return Err(e),
        };
        Ok(File::from(fd))
    }

    fn set_meta_fd(&self, fd: BorrowedFd<'_>, meta: &Meta, times: bool) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if self.owners == Owners::Keep {
            // SAFETY: fchown of an open descriptor to plain ids.
            check(unsafe { libc::fchown(raw, meta.uid, meta.gid) })?;
        }
        // After the owner: a change of owner clears the set-id bits.
        // SAFETY: fchmod of an open descriptor.
        check(unsafe { libc::fchmod(raw, meta.mode & 0o7777) })?;
        if times {
            let ts = [omit_time(), time_of(meta.mtime)];
            // SAFETY: futimens of an open descriptor with two valid timespecs.
            check(unsafe { libc::futimens(raw, ts.as_ptr()) })?;
        }
        Ok(())
    }

    fn set_meta_at(&self, dir: libc::c_int, name: &CString, meta: &Meta) -> io::Result<()> {
        if self.owners == Owners::Keep {
            // SAFETY: fchownat of a name in an open directory, not following a symlink.
            check(unsafe {
                libc::fchownat(
                    dir,
                    name.as_ptr(),
                    meta.uid,
                    meta.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
        }
        let ts = [omit_time(), time_of(meta.mtime)];
        // SAFETY: utimensat of a name in an open directory, two valid timespecs.
        check(unsafe {
            libc::utimensat(dir, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
        })
    }

    /// Sets the directories' times (writing their entries changed them). Returns the bytes of
    /// file data written.
    pub fn finish(mut self) -> io::Result<u64> {
        for (path, mtime) in self.dir_times.drain(..).rev() {
            let fd = open_in_root(
                self.root.as_fd(),
                &path,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
            let ts = [omit_time(), time_of(mtime)];
            // SAFETY: futimens of an open descriptor with two valid timespecs.
            check(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })?;
        }
        Ok(self.bytes)
    }
}

fn omit_time() -> libc::timespec {
    libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    }
}

fn time_of(secs: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }
}
