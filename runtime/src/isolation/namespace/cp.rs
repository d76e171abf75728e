//! `nook cp` in the namespace column. The copy runs in a helper process as root of the
//! container's user namespace (so owners are the container's, and the container's files are
//! readable whoever owns them): for a running container, joined through its init, with the
//! container's root taken from `/proc/<init>/root` (its mount namespace: its volumes are
//! there); for a stopped one, a fresh user and mount namespace in which the container's
//! overlay and volumes are mounted as its init mounts them. Every path inside the container is
//! resolved below that root with `openat2(RESOLVE_IN_ROOT)` and written through a
//! [`nook_agent::copy::Sink`] (the agent crate's copy, the one the VM column's guest runs), so
//! a symlink the container planted (at the path, or at a parent of it, or swapped in while the
//! copy runs) never reaches a host file.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nook_agent::copy::{self, dest, CopyError, Owners, Sink, Source};
use nook_agent::layer::TarWriter;

use super::process::{self, spawn, wait_pid, ChildFailure};
use super::rooted::Rooted;
use super::{rootfs, Overlay};
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

/// The copy itself, in the helper process: the agent crate's, as the VM column's guest runs it.
fn run(root: OwnedFd, op: &CopyOp) -> Result<(), String> {
    let owners = |archive: bool| {
        if archive {
            Owners::Keep
        } else {
            Owners::Writer
        }
    };
    let chain = |e: CopyError| crate::errors::chain(&e);
    match op {
        CopyOp::FromContainer {
            src,
            dst,
            follow,
            archive,
        } => {
            let source = Source::open(Some(root.as_fd()), src, *follow).map_err(chain)?;
            match dst {
                None => {
                    let stdout = io::stdout();
                    let mut tar = TarWriter::new(stdout.lock());
                    source.send(&mut tar).map_err(chain)?;
                    let mut out = tar.finish().map_err(|e| crate::errors::chain(&e))?;
                    out.flush()
                        .map_err(|e| format!("cannot write the tar stream: {e}"))
                }
                Some(dst) => {
                    let (dir, base) = dest::host_destination(dst, source.info()).map_err(chain)?;
                    source
                        .into_sink(Sink::new(dir, owners(*archive)), base)
                        .map(drop)
                        .map_err(chain)
                }
            }
        }
        CopyOp::ToContainer {
            src,
            dst,
            follow,
            archive,
        } => match src {
            None => copy::into_container(
                root.as_fd(),
                dst,
                owners(*archive),
                None,
                io::stdin().lock(),
            )
            .map(drop)
            .map_err(chain),
            Some(src) => {
                let source = Source::open(None, &src.to_string_lossy(), *follow).map_err(chain)?;
                let (dir, base) =
                    dest::container_destination(root.as_fd(), dst, source.info()).map_err(chain)?;
                source
                    .into_sink(Sink::new(dir, owners(*archive)), base)
                    .map(drop)
                    .map_err(chain)
            }
        },
    }
}
