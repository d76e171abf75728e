//! Copies of file trees between the host and a container's root (`nook cp`, and a volume's
//! first fill from the image, docker's copy-up), descriptor-based on both sides.
//!
//! What is read comes from the agent's walker ([`nook_agent::layer::walk`]: every entry
//! opened relative to its parent with `O_NOFOLLOW`), or from a tar stream. What is written
//! goes through a [`Sink`]: each entry's parent is opened with `openat2(RESOLVE_IN_ROOT)`
//! below the sink's root and the entry itself made relative to that descriptor without
//! following a symlink, so neither a symlink already in the destination (a container's
//! `/etc -> /`) nor one the copy itself writes can lead a write out of the root.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nook_agent::layer::walk::{Entry, Kind, Visitor};
use nook_agent::layer::{LayerError, Stat};

use super::namespace::rooted::{fd_path, open_in_root};

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

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `fstat` of an open descriptor (an `O_PATH` one too).
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; st is a valid out pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(Stat {
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        size: st.st_size.max(0) as u64,
        nlink: st.st_nlink,
        dev: st.st_dev,
        ino: st.st_ino,
        rdev: st.st_rdev,
    })
}

/// The target of the symlink `fd` (opened with `O_PATH|O_NOFOLLOW`).
pub fn read_link_fd(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat of the descriptor itself (empty path) into buf, whose length is passed.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

use std::os::unix::ffi::OsStringExt;

/// Reopens an `O_PATH` descriptor for reading (the same inode: nothing is resolved again).
pub fn reopen(fd: &OwnedFd, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(&fd_path(fd))?;
    // SAFETY: open of a NUL-terminated path; the result, when valid, is ours alone.
    let raw = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A path of a copied tree: relative, without `..` (a tar stream's `/a` becomes `a`).
pub fn clean_relative(path: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} climbs out of the copied tree", path.display()),
                ))
            }
        }
    }
    Ok(out)
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

fn open_at(dir: libc::c_int, name: &CString, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: openat with a directory descriptor and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the entry `name` of `dir`, a directory (with its tree) or not.
fn unlink_any(dir: libc::c_int, name: &CString) -> io::Result<()> {
    // SAFETY: unlinkat with a directory descriptor and a NUL-terminated name.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EISDIR) {
        return Err(e);
    }
    let sub = open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )?;
    let names: Vec<CString> = std::fs::read_dir(fd_path(&sub))?
        .filter_map(Result::ok)
        .filter_map(|e| CString::new(e.file_name().as_bytes()).ok())
        .collect();
    for n in names {
        unlink_any(sub.as_raw_fd(), &n)?;
    }
    // SAFETY: as above, for the now empty directory.
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) })
}

/// Copies a file's data: `copy_file_range` (reflinks and in-kernel copies where the file
/// systems allow), else read and write.
fn copy_data(src: &mut File, dst: &mut File) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // SAFETY: two open descriptors, null offsets (their file positions are used).
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                1 << 30,
                0,
            )
        };
        if n > 0 {
            total += n as u64;
            continue;
        }
        if n == 0 {
            return Ok(total);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                return Ok(total + io::copy(src, dst)?)
            }
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

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

/// Extracts the tar stream `input` into `sink` below `base`.
pub fn untar(input: impl Read, sink: &mut Sink, base: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = clean_relative(&entry.path()?)?;
        if rel.as_os_str().is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn open_dir(p: &Path) -> OwnedFd {
        File::open(p).unwrap().into()
    }

    #[test]
    fn a_tree_is_copied_with_links_modes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "data").unwrap();
        std::fs::set_permissions(src.join("sub/f"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::fs::hard_link(src.join("sub/f"), src.join("hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let dst = dir.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        let mut sink = Sink::new(open_dir(&dst), Owners::Writer);
        let top = Meta::of(&stat_fd(open_dir(&src).as_fd()).unwrap());
        sink.put(Path::new("copy"), &top, Content::Dir).unwrap();
        let root = open_dir(&src);
        nook_agent::layer::walk::walk(
            root.as_fd(),
            nook_agent::layer::walk::Mode::Plain,
            &Default::default(),
            &mut IntoSink {
                sink: &mut sink,
                base: PathBuf::from("copy"),
            },
        )
        .unwrap();
        assert_eq!(sink.finish().unwrap(), 4);
        let out = dst.join("copy");
        assert_eq!(std::fs::read_to_string(out.join("sub/f")).unwrap(), "data");
        let m = std::fs::metadata(out.join("sub/f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(
            m.mtime(),
            std::fs::metadata(src.join("sub/f")).unwrap().mtime()
        );
        assert_eq!(m.ino(), std::fs::metadata(out.join("hard")).unwrap().ino());
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
    }

    #[test]
    fn hostile_paths_stay_inside_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("dst");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A link already in the destination, and one the stream writes itself.
        std::os::unix::fs::symlink(&outside, dst.join("abs")).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        tar.append_link(&mut h, "up", "../../outside").unwrap();
        for p in ["abs/x", "up/y"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            tar.append_data(&mut h, p, &b"z"[..]).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let mut sink = Sink::new(open_dir(&dst), Owners::Writer);
        let _ = untar(&bytes[..], &mut sink, Path::new(""));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // `..` in a stream is refused outright.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_path("x").unwrap();
        h.as_old_mut().name[..5].copy_from_slice(b"../zz");
        h.set_cksum();
        tar.append(&h, &b"z"[..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let mut sink = Sink::new(open_dir(&dst), Owners::Writer);
        assert!(untar(&bytes[..], &mut sink, Path::new("")).is_err());
        assert!(!dir.path().join("zz").exists());
    }
}
