//! `nook cp` in the namespace column. The copy runs in a helper process as root of the
//! container's user namespace (so owners are the container's, and the container's files are
//! readable whoever owns them): for a running container, joined through its init, with the
//! container's root taken from `/proc/<init>/root` (its mount namespace: its volumes are
//! there); for a stopped one, a fresh user and mount namespace in which the container's
//! overlay and volumes are mounted as its init mounts them. Every path inside the container is
//! resolved below that root with `openat2(RESOLVE_IN_ROOT)` and written through
//! [`crate::isolation::copy::Sink`], so a symlink the container planted (at the path, or at a
//! parent of it, or swapped in while the copy runs) never reaches a host file.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nook_agent::layer::walk::{self, Entry, Kind, Mode, Visitor};
use nook_agent::layer::{LayerError, TarWriter};

use super::process::{self, spawn, wait_pid, ChildFailure};
use super::rooted::{open_in_root, Rooted};
use super::{rootfs, Overlay};
use crate::isolation::copy::{self, Content, IntoSink, Meta, Owners, Sink};
use crate::isolation::mounts::MountSpec;
use crate::isolation::{CopyOp, Exit, Host, IsolationError};

fn fail(message: impl Into<String>) -> ChildFailure {
    ChildFailure::setup(message.into())
}

/// Runs `op` against the container whose overlay is `overlay` and mounts are `mounts`;
/// `running` is its init's host pid while it runs.
pub fn copy(
    host: &Host,
    overlay: &Overlay,
    mounts: &[MountSpec],
    record: &Path,
    running: Option<i32>,
    op: &CopyOp,
) -> Result<(), IsolationError> {
    match running {
        Some(init) => {
            let userns = File::open(format!("/proc/{init}/ns/user"))
                .map_err(|e| IsolationError::os(format!("open the user namespace of {init}"), e))?;
            let pid = spawn(0, None, || {
                // SAFETY: setns with an open namespace descriptor.
                if unsafe {
                    libc::setns(
                        std::os::fd::AsRawFd::as_raw_fd(&userns),
                        libc::CLONE_NEWUSER,
                    )
                } < 0
                {
                    return Err(fail(format!(
                        "cannot join the container's user namespace: {}",
                        io::Error::last_os_error()
                    )));
                }
                let root = File::open(format!("/proc/{init}/root"))
                    .map_err(|e| fail(format!("cannot open the container's root: {e}")))?;
                run(root.into(), op).map_err(fail)
            })?;
            match wait_pid(pid)? {
                Exit::Code(0) => Ok(()),
                exit => Err(IsolationError::Start {
                    code: 125,
                    message: format!("the copy ended with {exit:?}"),
                }),
            }
        }
        None => {
            let overlay = overlay.clone();
            process::in_user_namespace(&host.ids.map, "copy", move || {
                let sys = super::sys::LinuxSys;
                use super::sys::Sys as _;
                sys.mount(
                    "none",
                    Path::new("/"),
                    None,
                    libc::MS_REC | libc::MS_PRIVATE,
                    None,
                )
                .map_err(|e| format!("cannot make the mounts private: {e}"))?;
                sys.mount(
                    "overlay",
                    &overlay.merged,
                    Some("overlay"),
                    0,
                    Some(&rootfs::overlay_options(&overlay)),
                )
                .map_err(|e| format!("cannot mount the container's root: {e}"))?;
                let mut ops = Rooted::new(&overlay.merged)
                    .map_err(|e| format!("cannot open the container's root: {e}"))?;
                // Volumes and bind mounts only: a tmpfs would take the copy and lose it; docker
                // writes there into the container's own layer.
                let binds: Vec<MountSpec> = mounts
                    .iter()
                    .filter(|m| matches!(m, MountSpec::Bind { .. }))
                    .cloned()
                    .collect();
                super::binds::apply(&mut ops, &binds, record)?;
                let root = File::open(&overlay.merged)
                    .map_err(|e| format!("cannot open the container's root: {e}"))?;
                run(root.into(), op)
            })
            .map_err(|e| match e {
                IsolationError::Start { message, .. } => IsolationError::Start {
                    code: 125,
                    message: message.replacen("cannot copy: ", "", 1),
                },
                other => other,
            })
        }
    }
}

/// The copy itself, in the helper process.
fn run(root: OwnedFd, op: &CopyOp) -> Result<(), String> {
    match op {
        CopyOp::FromContainer {
            src,
            dst,
            follow,
            archive,
        } => {
            let source = open_source(Some(&root), src, *follow)?;
            match dst {
                None => {
                    let stdout = io::stdout();
                    let mut tar = TarWriter::new(stdout.lock());
                    source
                        .send(&mut tar)
                        .map_err(|e| crate::errors::chain(&e))?;
                    let mut out = tar.finish().map_err(|e| crate::errors::chain(&e))?;
                    out.flush()
                        .map_err(|e| format!("cannot write the tar stream: {e}"))
                }
                Some(dst) => {
                    let (dir, base) = host_destination(dst, &source)?;
                    let owners = if *archive {
                        Owners::Keep
                    } else {
                        Owners::Writer
                    };
                    source.into_sink(Sink::new(dir, owners), base)
                }
            }
        }
        CopyOp::ToContainer {
            src,
            dst,
            follow,
            archive,
        } => {
            let owners = if *archive {
                Owners::Keep
            } else {
                Owners::Writer
            };
            match src {
                None => {
                    let dir = open_in_root(
                        root.as_fd(),
                        Path::new(dst),
                        libc::O_PATH | libc::O_DIRECTORY,
                        0,
                    )
                    .map_err(|e| {
                        format!("destination {dst} must be a directory in the container: {e}")
                    })?;
                    let dir = copy::reopen(&dir, libc::O_RDONLY | libc::O_DIRECTORY)
                        .map_err(|e| format!("cannot open {dst}: {e}"))?;
                    let mut sink = Sink::new(dir, owners);
                    copy::untar(io::stdin().lock(), &mut sink, Path::new(""))
                        .map_err(|e| format!("cannot extract the tar stream into {dst}: {e}"))?;
                    sink.finish().map(drop).map_err(|e| e.to_string())
                }
                Some(src) => {
                    let source = open_source(None, &src.to_string_lossy(), *follow)?;
                    let (dir, base) = container_destination(&root, dst, &source)?;
                    source.into_sink(Sink::new(dir, owners), base)
                }
            }
        }
    }
}

/// What is copied: the opened entry (not followed unless `-L`), its name, and whether only a
/// directory's contents go (`SRC/.`).
struct Source {
    fd: OwnedFd,
    stat: nook_agent::layer::Stat,
    /// The name the copy gets when its destination is a directory.
    name: PathBuf,
    contents_only: bool,
    shown: String,
}

/// Opens `path` inside `root` (the container's), or on the host when `root` is none.
fn open_source(root: Option<&OwnedFd>, path: &str, follow: bool) -> Result<Source, String> {
    let contents_only = path.ends_with("/.") || path == ".";
    let mut flags = libc::O_PATH;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let p = Path::new(path);
    let fd = match root {
        Some(root) => open_in_root(root.as_fd(), p, flags, 0),
        None => {
            let c = std::ffi::CString::new(path.as_bytes())
                .map_err(|_| format!("{path:?} has a NUL byte"))?;
            // SAFETY: open of a NUL-terminated path; the result, when valid, is ours alone.
            let raw = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
            if raw < 0 {
                Err(io::Error::last_os_error())
            } else {
                // SAFETY: a fresh descriptor owned by nobody else.
                Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) })
            }
        }
    };
    let fd = fd.map_err(|e| match (root.is_some(), e.kind()) {
        (true, io::ErrorKind::NotFound) => format!("Could not find the file {path} in container"),
        (false, _) => format!("cannot open {path}: {e}"),
        (true, _) => format!("cannot open {path} in the container: {e}"),
    })?;
    let stat = copy::stat_fd(fd.as_fd()).map_err(|e| format!("cannot stat {path}: {e}"))?;
    let name = p
        .components()
        .rfind(|c| matches!(c, std::path::Component::Normal(_)))
        .map(|c| PathBuf::from(c.as_os_str()))
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Source {
        fd,
        stat,
        name,
        contents_only,
        shown: path.to_string(),
    })
}

impl Source {
    fn is_dir(&self) -> bool {
        self.stat.is_dir()
    }

    /// Writes the source below `base` of `sink`.
    fn into_sink(self, mut sink: Sink, base: PathBuf) -> Result<(), String> {
        let err = |e: io::Error| format!("cannot copy {}: {e}", self.shown);
        let meta = Meta::of(&self.stat);
        if self.is_dir() {
            sink.put(&base, &meta, Content::Dir).map_err(err)?;
            let dir = copy::reopen(&self.fd, libc::O_RDONLY | libc::O_DIRECTORY).map_err(err)?;
            walk::walk(
                dir.as_fd(),
                Mode::Plain,
                &Default::default(),
                &mut IntoSink {
                    sink: &mut sink,
                    base,
                },
            )
            .map_err(|e| crate::errors::chain(&e))?;
        } else if self.stat.is_file() {
            let mut f = File::from(copy::reopen(&self.fd, libc::O_RDONLY).map_err(err)?);
            sink.put(
                &base,
                &Meta {
                    link_key: None,
                    ..meta
                },
                Content::File(&mut f),
            )
            .map_err(err)?;
        } else if self.stat.is_symlink() {
            let target = copy::read_link_fd(self.fd.as_fd()).map_err(err)?;
            sink.put(&base, &meta, Content::Symlink(target))
                .map_err(err)?;
        } else {
            sink.put(
                &base,
                &meta,
                Content::Special(self.stat.file_type(), self.stat.rdev),
            )
            .map_err(err)?;
        }
        sink.finish().map(drop).map_err(err)
    }

    /// Writes the source as a tar stream (docker's `cp CONTAINER:SRC -`).
    fn send(self, tar: &mut dyn Visitor) -> Result<(), LayerError> {
        let base = if self.contents_only {
            PathBuf::new()
        } else {
            self.name.clone()
        };
        let read = |source| LayerError::Read {
            path: PathBuf::from(&self.shown),
            source,
        };
        let kind = if self.is_dir() {
            Kind::Dir { opaque: false }
        } else if self.stat.is_file() {
            Kind::File(File::from(
                copy::reopen(&self.fd, libc::O_RDONLY).map_err(read)?,
            ))
        } else if self.stat.is_symlink() {
            Kind::Symlink(copy::read_link_fd(self.fd.as_fd()).map_err(read)?)
        } else {
            Kind::Special
        };
        if !base.as_os_str().is_empty() {
            tar.visit(Entry {
                path: &base,
                stat: self.stat,
                kind,
                xattrs: Vec::new(),
            })?;
        }
        if self.is_dir() {
            let dir = copy::reopen(&self.fd, libc::O_RDONLY | libc::O_DIRECTORY).map_err(read)?;
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

/// docker's rules for where a copy lands, given what exists at the destination: `Some(true)`
/// a directory, `Some(false)` something else, none nothing. Returns whether the copy goes into
/// the destination (as `name`, or as its contents with `SRC/.`) rather than at its path.
fn lands_inside(source: &Source, dst: &str, existing: Option<bool>) -> Result<bool, String> {
    match (source.is_dir(), existing) {
        (_, Some(true)) => Ok(true),
        (true, Some(false)) => Err(format!("cannot copy a directory to a file: {dst}")),
        (false, None) if dst.ends_with('/') => {
            Err(format!("destination directory {dst} does not exist"))
        }
        _ => Ok(false),
    }
}

/// The directory a copy onto the host is written below, and the name it gets there.
fn host_destination(dst: &Path, source: &Source) -> Result<(OwnedFd, PathBuf), String> {
    let shown = dst.to_string_lossy().into_owned();
    let existing = std::fs::metadata(dst).ok().map(|m| m.is_dir());
    let open = |p: &Path| {
        File::open(p)
            .map(OwnedFd::from)
            .map_err(|e| format!("cannot open {}: {e}", p.display()))
    };
    if lands_inside(source, &shown, existing)? {
        let base = if source.contents_only {
            PathBuf::new()
        } else {
            source.name.clone()
        };
        return Ok((open(dst)?, base));
    }
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dst
        .file_name()
        .ok_or_else(|| format!("invalid destination {shown}"))?;
    Ok((open(parent)?, PathBuf::from(name)))
}

/// The directory (inside the container's root) a copy into the container is written below,
/// and the name it gets there.
fn container_destination(
    root: &OwnedFd,
    dst: &str,
    source: &Source,
) -> Result<(OwnedFd, PathBuf), String> {
    let open_dir = |p: &Path| {
        open_in_root(root.as_fd(), p, libc::O_PATH | libc::O_DIRECTORY, 0)
            .and_then(|fd| copy::reopen(&fd, libc::O_RDONLY | libc::O_DIRECTORY))
            .map_err(|e| format!("cannot open {} in the container: {e}", p.display()))
    };
    let existing = match open_in_root(root.as_fd(), Path::new(dst), libc::O_PATH, 0) {
        Ok(fd) => Some(
            copy::stat_fd(fd.as_fd())
                .map_err(|e| e.to_string())?
                .is_dir(),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot open {dst} in the container: {e}")),
    };
    if lands_inside(source, dst, existing)? {
        let base = if source.contents_only {
            PathBuf::new()
        } else {
            source.name.clone()
        };
        return Ok((open_dir(Path::new(dst))?, base));
    }
    let p = Path::new(dst);
    let parent = p.parent().unwrap_or(Path::new("/"));
    let name = p
        .file_name()
        .ok_or_else(|| format!("invalid destination {dst}"))?;
    Ok((open_dir(parent)?, PathBuf::from(name)))
}
