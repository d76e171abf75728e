//! The descriptor calls a copy is made of: every path inside a container resolved below its
//! root with `openat2(RESOLVE_IN_ROOT)`, every entry re-opened or read through the descriptor
//! that names it, never through a path resolved again.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::layer::Stat;

pub(super) fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
}

pub(super) fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `path` without its leading `/` ("." for the root itself).
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// Opens `path` (absolute or relative, taken inside the directory `root` as if it were `/`:
/// `..` and absolute symlinks stop at it) with `flags`: `openat2(RESOLVE_IN_ROOT)`, so no
/// symlink in the tree, planted before or while it is read, leads out of `root`.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let c = cstr(&relative(path))?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads the NUL-terminated path and `how`, both alive for the call,
    // whose size is passed along.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Opens `path` as it is given (a host path, or the `/` of a guest whose root is the
/// container's): the start of a copy, which the caller trusts.
pub fn open_path(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: open of a NUL-terminated path; the result, when valid, is ours alone.
    let raw = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The `/proc/self/fd/N` path of `fd`: what a mount or a re-open of an `O_PATH` descriptor
/// goes through.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `fstat` of an open descriptor (an `O_PATH` one too).
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    crate::layer::fd::fstat(fd)
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

/// Reopens an `O_PATH` descriptor for reading (the same inode: nothing is resolved again).
pub fn reopen(fd: &OwnedFd, flags: libc::c_int) -> io::Result<OwnedFd> {
    open_path(&fd_path(fd), flags)
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

pub(super) fn open_at(
    dir: libc::c_int,
    name: &CString,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: openat with a directory descriptor and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the entry `name` of `dir`, a directory (with its tree) or not.
pub(super) fn unlink_any(dir: libc::c_int, name: &CString) -> io::Result<()> {
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
pub(super) fn copy_data(src: &mut File, dst: &mut File) -> io::Result<u64> {
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
