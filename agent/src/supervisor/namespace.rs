//! The container's PID namespace, as runc and crun make it: the main process is PID 1 of a new
//! PID namespace (so the kernel ignores signals it has no handler for, except SIGKILL and
//! SIGSTOP from outside, and `ps` inside shows the container's processes only), with its own
//! mount namespace holding a /proc of that PID namespace; exec'd processes join both.
//!
//! A PID namespace applies to the children of whoever enters it, so the supervisor thread
//! points its own next child at it around the fork ([`ForkInto`]) and comes back right after;
//! the mount namespace is entered by the child itself between fork and exec ([`ChildSide`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Where a new process's PIDs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PidNamespace {
    /// The supervisor's own (host tests without root; nothing is unshared).
    Inherit,
    /// A new one, whose PID 1 the process becomes: the container's main process.
    New,
    /// The one of the running process `pid` (the main process), and its mount namespace.
    Join { pid: u32 },
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_ns(path: String) -> io::Result<OwnedFd> {
    File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// The calling thread's children are forked into another PID namespace until
/// [`ForkInto::restore`] (or drop) points them back at the thread's own.
pub(crate) struct ForkInto {
    own: Option<OwnedFd>,
}

impl ForkInto {
    /// Applies `ns` to the calling thread's next children.
    pub(crate) fn enter(ns: PidNamespace) -> io::Result<ForkInto> {
        if ns == PidNamespace::Inherit {
            return Ok(ForkInto { own: None });
        }
        // The thread's active namespace, to come back to: setns accepts it (it is ours).
        let own = open_ns("/proc/thread-self/ns/pid".into())?;
        match ns {
            PidNamespace::Inherit => {}
            // SAFETY: unshare takes flags only; CLONE_NEWPID changes this thread's children.
            PidNamespace::New => check(unsafe { libc::unshare(libc::CLONE_NEWPID) })?,
            PidNamespace::Join { pid } => {
                let target = open_ns(format!("/proc/{pid}/ns/pid"))?;
                // SAFETY: setns on a namespace descriptor we own; it changes this thread's
                // children's PID namespace only.
                check(unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWPID) })?;
            }
        }
        Ok(ForkInto { own: Some(own) })
    }

    /// Points the thread's children back at its own PID namespace.
    pub(crate) fn restore(mut self) -> io::Result<()> {
        self.restore_inner()
    }

    fn restore_inner(&mut self) -> io::Result<()> {
        match self.own.take() {
            // SAFETY: setns on a namespace descriptor we own (the thread's active namespace).
            Some(own) => check(unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) }),
            None => Ok(()),
        }
    }
}

impl Drop for ForkInto {
    fn drop(&mut self) {
        // Only reached on an early return; `restore` reports its error itself.
        let _ = self.restore_inner();
    }
}

/// What the child does between fork and exec; everything is prepared before the fork so that
/// [`ChildSide::apply`] only makes system calls.
pub(crate) struct ChildSide {
    kind: PidNamespace,
    /// The main process's mount namespace, for `Join`.
    mnt: Option<OwnedFd>,
    /// For `New`: make the namespace's /sys/fs/cgroup read-only (the container's limits are
    /// there).
    readonly_cgroup: bool,
}

impl ChildSide {
    pub(crate) fn new(kind: PidNamespace, readonly_cgroup: bool) -> io::Result<ChildSide> {
        let mnt = match kind {
            PidNamespace::Join { pid } => Some(open_ns(format!("/proc/{pid}/ns/mnt"))?),
            _ => None,
        };
        Ok(ChildSide {
            kind,
            mnt,
            readonly_cgroup,
        })
    }

    /// In the forked child: a private mount namespace with a /proc of the new PID namespace,
    /// or the main process's mount namespace. Only async-signal-safe system calls.
    pub(crate) fn apply(&self) -> io::Result<()> {
        match self.kind {
            PidNamespace::Inherit => Ok(()),
            PidNamespace::New => {
                // SAFETY: the calls below take flags and static NUL-terminated strings; the
                // child is single-threaded.
                unsafe {
                    check(libc::unshare(libc::CLONE_NEWNS))?;
                    // Our mounts must not propagate back to the agent's namespace (nor, in
                    // host tests, to the host's), while mounts made outside still reach us.
                    check(libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_SLAVE,
                        std::ptr::null(),
                    ))?;
                    // Mounted by a process of the new PID namespace: it shows that namespace.
                    check(libc::mount(
                        c"proc".as_ptr(),
                        c"/proc".as_ptr(),
                        c"proc".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    ))?;
                    if self.readonly_cgroup {
                        // This namespace's copy of the mount only; the agent's stays writable.
                        check(libc::mount(
                            std::ptr::null(),
                            c"/sys/fs/cgroup".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REMOUNT
                                | libc::MS_BIND
                                | libc::MS_RDONLY
                                | libc::MS_NOSUID
                                | libc::MS_NODEV
                                | libc::MS_NOEXEC,
                            std::ptr::null(),
                        ))?;
                    }
                    Ok(())
                }
            }
            PidNamespace::Join { .. } => match &self.mnt {
                // SAFETY: setns on a descriptor opened before the fork; the child is
                // single-threaded and shares no filesystem context. It moves the root to the
                // namespace's (the container's: the root mount sits on top of it), and the
                // working directory too, which the caller sets afterwards.
                Some(fd) => check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNS) }),
                None => Ok(()),
            },
        }
    }
}
