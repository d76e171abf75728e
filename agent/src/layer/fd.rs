//! The few system calls the walker reads a tree through, all relative to an open directory
//! descriptor and none following a symlink: a name is looked up in the directory the walker
//! holds open, never as a path string from the root, so a tree that changes while it is read
//! (a directory swapped for a symlink to somewhere else) cannot steer the reading out of it.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// The fields of a `struct stat` a layer entry is made of.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
}

impl Stat {
    fn from_raw(st: &libc::stat) -> Stat {
        Stat {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
            size: st.st_size.max(0) as u64,
            nlink: st.st_nlink,
            dev: st.st_dev,
            ino: st.st_ino,
            rdev: st.st_rdev,
        }
    }

    /// The `S_IFMT` part of the mode.
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.file_type() == libc::S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == libc::S_IFLNK
    }

    /// overlayfs marks a deleted entry with a 0/0 character device of the same name.
    pub fn is_whiteout(&self) -> bool {
        self.file_type() == libc::S_IFCHR && self.rdev == 0
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a name"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `open` of a path the caller trusts (the root of a walk): a directory, no other type.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = c_name(path.as_os_str())?;
    // SAFETY: `c` is a NUL-terminated path alive for the call; the flags are plain integers.
    let fd = check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, flags)`; `flags` should hold `O_NOFOLLOW` unless `name` is `.`.
pub fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    // SAFETY: `dir` is an open descriptor and `c` a NUL-terminated name, both alive for the
    // call; the flags are plain integers.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is open and `st` is writable memory of the size fstat fills.
    check(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled `st`.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry itself, a symlink not followed.
pub fn fstatat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    let c = c_name(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is open, `c` NUL-terminated and `st` writable memory of the size fstatat
    // fills, all alive for the call.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so it filled `st`.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

/// The target of the symlink `name` in `dir` (EINVAL when it is no longer a symlink).
pub fn readlinkat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<PathBuf> {
    let c = c_name(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `dir` is open, `c` NUL-terminated and `buf` writable for `buf.len()` bytes.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// The names in the directory `dir` (without `.` and `..`), sorted, so the same tree gives
/// the same walk.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // Its own open file description: the listing's offset is not shared with `dir`.
    let own = openat(dir, OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY)?;
    let raw = own.into_raw_fd();
    // SAFETY: `raw` is an open directory descriptor whose ownership passes to the stream.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(err);
    }
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is this thread's; readdir reports an error only through it.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is an open directory stream, used by this thread only.
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            break match err.raw_os_error() {
                Some(0) | None => Ok(()),
                Some(_) => Err(err),
            };
        }
        // SAFETY: readdir returned an entry whose `d_name` is NUL-terminated and stays valid
        // until the next readdir on this stream.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    };
    // SAFETY: `stream` is open and closed exactly once (which also closes `raw`).
    unsafe { libc::closedir(stream) };
    result?;
    names.sort();
    Ok(names)
}

/// Whether `rel` exists below the directory `root`, each component looked up in the
/// directory before it without following a symlink (so a symlink in the middle answers "no",
/// never a lookup elsewhere).
pub fn exists_beneath(root: BorrowedFd<'_>, rel: &Path) -> io::Result<bool> {
    let names: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::CurDir => None,
            _ => Some(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            ))),
        })
        .collect::<io::Result<_>>()?;
    let Some((last, parents)) = names.split_last() else {
        return Ok(true);
    };
    let mut held: Option<OwnedFd> = None;
    for name in parents {
        let dir = held.as_ref().map_or(root, |fd| fd.as_fd());
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        match openat(dir, name, flags) {
            Ok(fd) => held = Some(fd),
            Err(e) if gone_or_not_dir(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    let dir = held.as_ref().map_or(root, |fd| fd.as_fd());
    match fstatat(dir, last) {
        Ok(_) => Ok(true),
        Err(e) if gone_or_not_dir(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

fn gone_or_not_dir(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
    )
}

/// Overlay's own attributes (origin, opaque, redirect...), never part of a layer.
fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// The extended attributes of an open file or directory, without overlay's own, as
/// (name, value) pairs in the order the filesystem lists them.
pub fn fd_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let raw = fd.as_raw_fd();
    read_xattrs(
        // SAFETY: `raw` is open for the walk of this entry, and the buffer pointer is valid
        // for the given length (or null with length 0, a size query).
        |buf, len| unsafe { libc::flistxattr(raw, buf, len) },
        // SAFETY: as above; `name` is NUL-terminated.
        |name, buf, len| unsafe { libc::fgetxattr(raw, name.as_ptr(), buf, len) },
    )
}

/// The extended attributes of the entry `name` in `dir` that cannot be opened (a symlink, a
/// device, a fifo): read through `/proc/self/fd/<dir>/<name>`, so the directory is the one
/// held open and the last component is not followed.
pub fn entry_xattrs(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    let c = CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a name"))?;
    let got = read_xattrs(
        // SAFETY: `c` is NUL-terminated and alive, and the buffer pointer is valid for the
        // given length (or null with length 0, a size query).
        |buf, len| unsafe { libc::llistxattr(c.as_ptr(), buf, len) },
        // SAFETY: as above; `n` is NUL-terminated.
        |n, buf, len| unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf, len) },
    );
    match got {
        // Gone since it was listed: it has none to give.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Vec::new()),
        other => other,
    }
}

/// One attribute of an open file or directory, if it has it.
pub fn fd_xattr(fd: BorrowedFd<'_>, name: &str) -> Option<Vec<u8>> {
    let c = CString::new(name).ok()?;
    let raw = fd.as_raw_fd();
    read_value(|buf, len| {
        // SAFETY: `raw` is open, `c` NUL-terminated, the buffer valid for `len` bytes.
        unsafe { libc::fgetxattr(raw, c.as_ptr(), buf, len) }
    })
    .ok()
}

/// Calls a get-style xattr function until the buffer is large enough for the value.
fn read_value(get: impl Fn(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = get(std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        let n = get(buf.as_mut_ptr().cast(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        // Grown between the two calls: ask again.
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

fn read_xattrs(
    list: impl Fn(*mut libc::c_char, usize) -> isize,
    get: impl Fn(&CStr, *mut libc::c_void, usize) -> isize,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = match read_value(|buf, len| list(buf.cast(), len)) {
        Ok(names) => names,
        // Filesystems without xattr support simply have none.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for raw in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        // A PAX record key is text; a name that is not cannot be carried.
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if is_overlay_xattr(name) {
            continue;
        }
        let c = CString::new(raw).expect("split at NUL bytes");
        match read_value(|buf, len| get(&c, buf, len)) {
            Ok(value) => out.push((name.to_owned(), value)),
            // Removed since it was listed.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
