//! Where a copy lands, by docker's rules: into an existing directory under the source's name
//! (or as its contents, for `SRC/.`), else at the destination path itself. A destination in a
//! container is resolved below its root with `openat2(RESOLVE_IN_ROOT)`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::fs::{open_in_root, reopen, stat_fd};
use super::source::place;
use super::{CopyError, CopyInfo};

/// Given what exists at the destination (`Some(true)` a directory, `Some(false)` something
/// else, none nothing): whether the copy goes into the destination (as its name, or as its
/// contents with `SRC/.`) rather than at its path.
pub fn lands_inside(
    source: &CopyInfo,
    dst: &str,
    existing: Option<bool>,
) -> Result<bool, CopyError> {
    match (source.dir, existing) {
        (_, Some(true)) => Ok(true),
        (true, Some(false)) => Err(CopyError::DirOntoFile { dst: dst.into() }),
        (false, None) if dst.ends_with('/') => Err(CopyError::NoDirectory { dst: dst.into() }),
        _ => Ok(false),
    }
}

/// The name the copy gets inside a destination directory.
fn inside_name(source: &CopyInfo) -> PathBuf {
    if source.contents_only {
        PathBuf::new()
    } else {
        PathBuf::from(&source.name)
    }
}

/// The directory a copy onto the host is written below, and the name it gets there.
pub fn host_destination(dst: &Path, source: &CopyInfo) -> Result<(OwnedFd, PathBuf), CopyError> {
    let shown = dst.to_string_lossy().into_owned();
    let existing = std::fs::metadata(dst).ok().map(|m| m.is_dir());
    let open = |p: &Path| {
        File::open(p)
            .map(OwnedFd::from)
            .map_err(|source| CopyError::Open {
                path: p.to_string_lossy().into_owned(),
                place: "",
                source,
            })
    };
    if lands_inside(source, &shown, existing)? {
        return Ok((open(dst)?, inside_name(source)));
    }
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dst
        .file_name()
        .ok_or(CopyError::InvalidDestination { dst: shown })?;
    Ok((open(parent)?, PathBuf::from(name)))
}

/// Opens the directory `path` inside `root` for a [`super::Sink`].
pub fn open_dir_in(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let fd = open_in_root(root, path, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    reopen(&fd, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// The directory (inside the container's root) a copy into the container is written below,
/// and the name it gets there.
pub fn container_destination(
    root: BorrowedFd<'_>,
    dst: &str,
    source: &CopyInfo,
) -> Result<(OwnedFd, PathBuf), CopyError> {
    let open_dir = |p: &Path| {
        open_dir_in(root, p).map_err(|source| CopyError::Open {
            path: p.to_string_lossy().into_owned(),
            place: place(true),
            source,
        })
    };
    let existing = match open_in_root(root, Path::new(dst), libc::O_PATH, 0) {
        Ok(fd) => Some(
            stat_fd(fd.as_fd())
                .map_err(|source| CopyError::Read {
                    path: dst.into(),
                    source,
                })?
                .is_dir(),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(CopyError::Open {
                path: dst.into(),
                place: place(true),
                source,
            })
        }
    };
    if lands_inside(source, dst, existing)? {
        return Ok((open_dir(Path::new(dst))?, inside_name(source)));
    }
    let p = Path::new(dst);
    let parent = p.parent().unwrap_or(Path::new("/"));
    let name = p
        .file_name()
        .ok_or(CopyError::InvalidDestination { dst: dst.into() })?;
    Ok((open_dir(parent)?, PathBuf::from(name)))
}
