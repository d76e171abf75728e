//! Starting a child in new namespaces and learning whether it got as far as `execve`.
//!
//! The child is made with a raw `clone` (fork semantics plus namespace flags), waits on a pipe
//! until the parent has written its user namespace's id maps, then runs its part. It reports a
//! failure as a docker-style exit code and a sentence on a close-on-exec pipe: end of file with no
//! message means the workload's executable is running. Until that `execve` the child is not
//! dumpable, so that a process in the container cannot open its /proc files.
//!
//! Callers must be single-threaded (the `nook` CLI and monitor are): the child of a fork of a
//! multi-threaded program may only call async-signal-safe functions.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

pub use crate::util::fd::pipe;
pub use crate::util::report::{fail_child, read_report, ChildFailure};

use super::idmap::IdMap;
use crate::isolation::{Exit, IsolationError};

/// In a child of [`spawn_with`]: the descriptor of its report pipe, and whether
/// [`detach_report`] let the parent go. Each child has its own copy (fork semantics).
static CHILD_REPORT: AtomicI32 = AtomicI32::new(-1);
static REPORT_DETACHED: AtomicBool = AtomicBool::new(false);

/// In a child of [`spawn_with`]: lets the parent return now, as if the workload ran, while the
/// child goes on (an OCI container's init waiting for `start`). The report pipe is pointed at
/// /dev/null, so that its number is not reused; a later failure goes to the child's standard
/// error instead, where the OCI runtime's caller reads it.
pub fn detach_report() -> io::Result<()> {
    let report = CHILD_REPORT.load(Ordering::Relaxed);
    if report < 0 {
        return Ok(());
    }
    // SAFETY: open of a NUL-terminated path; the descriptor is closed below.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if null < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are open; dup3 replaces the report pipe's end with /dev/null.
    let ret = unsafe { libc::dup3(null, report, libc::O_CLOEXEC) };
    let err = io::Error::last_os_error();
    // SAFETY: our own descriptor.
    unsafe { libc::close(null) };
    if ret < 0 {
        return Err(err);
    }
    REPORT_DETACHED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Ends a child whose parent no longer reads its report: the sentence goes to its stderr.
fn fail_detached(failure: &ChildFailure) -> ! {
    let line = format!("nook: {}\n", failure.message);
    // SAFETY: one write of a valid buffer to fd 2, then _exit without the parent's handlers.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(failure.code)
    }
}

/// Waits for process `pid` to end.
pub fn wait_pid(pid: i32) -> Result<Exit, IsolationError> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid int for the kernel to fill.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(IsolationError::os(format!("wait for process {pid}"), err));
        }
    }
    if libc::WIFSIGNALED(status) {
        Ok(Exit::Signal(libc::WTERMSIG(status)))
    } else {
        Ok(Exit::Code(libc::WEXITSTATUS(status)))
    }
}

/// Clones a child into the namespaces of `flags` (CLONE_NEW*), maps its user namespace with
/// `map` when `flags` has CLONE_NEWUSER, and runs `child` in it. `child` either replaces the
/// process (execve) or returns: Ok ends the child with status 0, Err reports the failure.
/// Returns the child's pid once it has exec'd or ended without a report.
pub fn spawn(
    flags: libc::c_int,
    map: Option<&IdMap>,
    child: impl FnOnce() -> Result<(), ChildFailure>,
) -> Result<i32, IsolationError> {
    spawn_with(flags, map, |_| Ok(()), |()| Ok(()), child)
}

/// [`spawn`] with two calls beside the child: `attach` with its pid once its ids are mapped and
/// before it runs its part (it can still be reached through /proc: it turns non-dumpable only
/// then), and `released` with what `attach` returned while the child runs its part (how the
/// network stack is set up beside the container's own set-up). An error of either ends the
/// child and is returned.
pub fn spawn_with<T>(
    flags: libc::c_int,
    map: Option<&IdMap>,
    attach: impl FnOnce(i32) -> Result<T, IsolationError>,
    released: impl FnOnce(T) -> Result<(), IsolationError>,
    child: impl FnOnce() -> Result<(), ChildFailure>,
) -> Result<i32, IsolationError> {
    let (go_read, go_write) = pipe().map_err(|e| IsolationError::os("create a pipe", e))?;
    let (report_read, report_write) = pipe().map_err(|e| IsolationError::os("create a pipe", e))?;
    let clone_flags = (flags | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a clone without CLONE_VM and with a null stack behaves like fork: the child gets
    // a copy of this (single-threaded) process and continues here with return value 0.
    let pid =
        unsafe { libc::syscall(libc::SYS_clone, clone_flags, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(IsolationError::os(
            "create the container's namespaces (clone)",
            io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        drop(go_write);
        drop(report_read);
        let mut byte = [0u8; 1];
        // SAFETY: byte is a valid one-byte buffer.
        let n = unsafe { libc::read(go_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        if n != 1 {
            // The parent could not map our ids and closed the pipe.
            // SAFETY: _exit ends this child without touching the parent's state.
            unsafe { libc::_exit(125) };
        }
        drop(go_read);
        // Not dumpable from here to the workload's execve (which makes it dumpable again): a
        // process of the container cannot open this copy of nook's /proc files, `exe` among
        // them. Only now, as the parent had to write our id maps into those files.
        // SAFETY: PR_SET_DUMPABLE takes an integer flag.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
            fail_child(
                &report_write,
                &ChildFailure::setup(format!(
                    "cannot make the process non-dumpable: {}",
                    io::Error::last_os_error()
                )),
            );
        }
        CHILD_REPORT.store(report_write.as_raw_fd(), Ordering::Relaxed);
        match child() {
            // SAFETY: as above.
            Ok(()) => unsafe { libc::_exit(0) },
            Err(failure) if REPORT_DETACHED.load(Ordering::Relaxed) => fail_detached(&failure),
            Err(failure) => fail_child(&report_write, &failure),
        }
    }
    let pid = pid as i32;
    drop(go_read);
    drop(report_write);
    if flags & libc::CLONE_NEWUSER != 0 {
        if let Some(map) = map {
            if let Err(e) = map.apply(pid) {
                drop(go_write);
                let _ = wait_pid(pid);
                return Err(e.into());
            }
        }
    }
    let attached = match attach(pid) {
        Ok(a) => a,
        Err(e) => {
            drop(go_write);
            let _ = wait_pid(pid);
            return Err(e);
        }
    };
    // SAFETY: go_write is an open pipe; writing one byte from a valid buffer.
    let n = unsafe { libc::write(go_write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    drop(go_write);
    if n != 1 {
        let _ = wait_pid(pid);
        return Err(IsolationError::os(
            "release the container process",
            io::Error::last_os_error(),
        ));
    }
    if let Err(e) = released(attached) {
        // SAFETY: kill takes a pid and a signal number; the child is ours and not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        drop(report_read);
        let _ = wait_pid(pid);
        return Err(e);
    }
    if let Some(failure) = read_report(report_read) {
        let _ = wait_pid(pid);
        return Err(IsolationError::Start {
            code: failure.code,
            message: failure.message,
        });
    }
    Ok(pid)
}

/// Runs `work` as root of a fresh user (and mount) namespace mapped with `map`, and waits for it:
/// how nook creates and deletes files owned by the container's ids.
pub fn in_user_namespace(
    map: &IdMap,
    what: &str,
    work: impl FnOnce() -> Result<(), String>,
) -> Result<(), IsolationError> {
    // The child never execs, so `spawn` returns only once it has ended (its report pipe
    // closes at exit), with its failure if `work` reported one.
    let spawned = spawn(libc::CLONE_NEWUSER | libc::CLONE_NEWNS, Some(map), || {
        work().map_err(|message| ChildFailure { code: 1, message })
    });
    let pid = spawned.map_err(|e| match e {
        IsolationError::Start { message, .. } => IsolationError::Start {
            code: 125,
            message: format!("cannot {what}: {message}"),
        },
        other => other,
    })?;
    match wait_pid(pid)? {
        Exit::Code(0) => Ok(()),
        exit => Err(IsolationError::Start {
            code: 125,
            message: format!("cannot {what}: the helper process ended with {exit:?}"),
        }),
    }
}
