//! The monitor: the process that starts a container's first process, holds its stdio (writing
//! the json-lines log, and relaying to the terminal when attached), waits for its exit and
//! records it. Detached (`run -d`, `start`), it is a daemon (double fork, setsid) and the
//! command returns as soon as the container runs; attached (`run`), the `nook` process itself is
//! the monitor and exits with the container's status.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use chrono::Utc;

use super::lifecycle;
use super::log::{LineSplitter, LogWriter, Stream};
use super::state::{ProcFs, ProcessId, Status};
use super::store::{Container, ContainerError, ContainerStore};
use crate::image::lock::FileLock;
use crate::isolation::namespace::process::{pipe, read_report};
use crate::isolation::{Exit, Isolation, IsolationError, Stdio};

/// Where the container's stdio goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// Log only; the monitor runs in the background.
    Detached,
    /// This process is the monitor: output is relayed to its stdout/stderr (and logged), stdin
    /// is passed on when the container keeps stdin open.
    Attached,
}

fn os(what: &str) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |e| ContainerError::Isolation(IsolationError::os(what, e))
}

fn dup(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: dup of a descriptor number; the result, when valid, is ours alone.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn dev_null() -> io::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

/// A new pty: (leader, follower). The leader stays with the monitor (close-on-exec).
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut leader, mut follower) = (0, 0);
    // SAFETY: openpty fills the two ints; the name, termios and winsize pointers may be null.
    let ret = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty returned two fresh descriptors that nobody else owns.
    let (leader, follower) =
        unsafe { (OwnedFd::from_raw_fd(leader), OwnedFd::from_raw_fd(follower)) };
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(leader.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((leader, follower))
}

/// Starts the stopped container `container`. Attached: returns its exit once it ends.
/// Detached: returns None once it runs, its monitor left behind.
pub fn start(
    store: &ContainerStore,
    backend: &dyn Isolation,
    remove_all: &dyn Fn(&std::path::Path) -> Result<(), IsolationError>,
    id: &str,
    attach: Attach,
) -> Result<Option<Exit>, ContainerError> {
    let lock = store.lock(id)?;
    let container = store.load(id)?;
    lifecycle::can_start(container.name(), &container.status())?;
    if attach == Attach::Attached {
        return supervise_or_clean(
            store, backend, remove_all, &container, &mut None, lock, true,
        )
        .map(Some);
    }
    let (ready_read, ready_write) = pipe().map_err(os("create a pipe"))?;
    // SAFETY: nook is single-threaded here; the child only runs the code below and _exits.
    let first = unsafe { libc::fork() };
    if first < 0 {
        return Err(os("fork the monitor")(io::Error::last_os_error()));
    }
    if first == 0 {
        drop(ready_read);
        // SAFETY: setsid and fork in the single-threaded child; the intermediate process exits
        // at once so the monitor is re-parented and never becomes a zombie of the CLI.
        unsafe {
            libc::setsid();
            let second = libc::fork();
            if second != 0 {
                libc::_exit(0);
            }
        }
        // A daemon keeps no directory of its caller busy.
        let _ = std::env::set_current_dir("/");
        if let Ok(null) = dev_null() {
            for fd in 0..3 {
                // SAFETY: dup2 of an open descriptor onto a standard one.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
        let mut ready = Some(ready_write);
        let result = supervise_or_clean(
            store, backend, remove_all, &container, &mut ready, lock, false,
        );
        let code = match (result, ready) {
            (Ok(_), _) => 0,
            // Failed before the container ran: the waiting command says why.
            (Err(e), Some(ready)) => {
                let code = match &e {
                    ContainerError::Isolation(i) => i.exit_code(),
                    _ => 125,
                };
                write_report(&ready, code, &crate::errors::chain(&e));
                code
            }
            (Err(_), None) => 1,
        };
        // SAFETY: the monitor ends without running the CLI's exit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(ready_write);
    drop(lock);
    let mut status = 0;
    // SAFETY: reaping our direct child, which exits right after its fork.
    unsafe { libc::waitpid(first, &mut status, 0) };
    match read_report(ready_read) {
        None => Ok(None),
        Some(failure) => Err(ContainerError::Isolation(IsolationError::Start {
            code: failure.code,
            message: failure.message,
        })),
    }
}

fn write_report(fd: &OwnedFd, code: i32, message: &str) {
    let mut msg = code.to_le_bytes().to_vec();
    msg.extend_from_slice(message.as_bytes());
    // SAFETY: a valid buffer written to our pipe; a failed write only loses the message.
    unsafe { libc::write(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
}

/// Signal received by an attached monitor, forwarded to the container (docker's sig-proxy).
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(sig: libc::c_int) {
    PENDING_SIGNAL.store(sig, Ordering::SeqCst);
}

fn proxy_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: sigaction with a handler that only stores to an atomic; no SA_RESTART, so
        // the relay loop's poll returns EINTR and forwards the signal.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = remember_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

struct Relay {
    fd: OwnedFd,
    stream: Stream,
    lines: LineSplitter,
    open: bool,
}

/// [`supervise`], and when it fails a `--rm` container is removed all the same: whatever
/// failed (a full disk, a start error), its workload no longer runs.
#[allow(clippy::too_many_arguments)]
fn supervise_or_clean(
    store: &ContainerStore,
    backend: &dyn Isolation,
    remove_all: &dyn Fn(&std::path::Path) -> Result<(), IsolationError>,
    container: &Container,
    ready: &mut Option<OwnedFd>,
    lock: FileLock,
    attached: bool,
) -> Result<Exit, ContainerError> {
    let result = supervise(store, backend, remove_all, container, ready, lock, attached);
    if result.is_err() && container.config.auto_remove {
        let id = container.id();
        if let Ok(_lock) = store.lock(id) {
            if store.dir(id).exists() {
                let _ = store.remove(id, remove_all);
            }
        }
    }
    result
}

/// Says what went wrong after the container ran, to the attached caller (a detached monitor
/// has no one to tell): the container's exit status is still what `nook` exits with.
fn warn(attached: bool, message: &str) {
    if attached {
        eprintln!("nook: warning: {message}");
    }
}

#[allow(clippy::too_many_arguments)]
fn supervise(
    store: &ContainerStore,
    backend: &dyn Isolation,
    remove_all: &dyn Fn(&std::path::Path) -> Result<(), IsolationError>,
    container: &Container,
    ready: &mut Option<OwnedFd>,
    lock: FileLock,
    attached: bool,
) -> Result<Exit, ContainerError> {
    let id = container.id();
    let config = &container.config;
    let log_path = store.log_path(id);
    let mut log = LogWriter::open(&log_path, config.log).map_err(|source| ContainerError::Io {
        what: "open",
        path: log_path.clone(),
        source,
    })?;

    let mut relays = Vec::new();
    let stdio = if config.tty && attached {
        // The caller's own terminal, passed straight through: the workload sees a real tty.
        Stdio {
            stdin: dup(0).map_err(os("duplicate stdin"))?,
            stdout: dup(1).map_err(os("duplicate stdout"))?,
            stderr: dup(2).map_err(os("duplicate stderr"))?,
        }
    } else if config.tty {
        // Detached with a terminal: a pty whose output the monitor logs as stdout.
        let (leader, follower) = open_pty().map_err(os("allocate a pty"))?;
        relays.push(Relay {
            fd: leader,
            stream: Stream::Stdout,
            lines: LineSplitter::default(),
            open: true,
        });
        Stdio {
            stdin: follower.try_clone().map_err(os("duplicate the pty"))?,
            stdout: follower.try_clone().map_err(os("duplicate the pty"))?,
            stderr: follower,
        }
    } else {
        let (out_r, out_w) = pipe().map_err(os("create a pipe"))?;
        let (err_r, err_w) = pipe().map_err(os("create a pipe"))?;
        relays.push(Relay {
            fd: out_r,
            stream: Stream::Stdout,
            lines: LineSplitter::default(),
            open: true,
        });
        relays.push(Relay {
            fd: err_r,
            stream: Stream::Stderr,
            lines: LineSplitter::default(),
            open: true,
        });
        let stdin = if attached && config.open_stdin {
            dup(0).map_err(os("duplicate stdin"))?
        } else {
            dev_null().map_err(os("open /dev/null"))?
        };
        Stdio {
            stdin,
            stdout: out_w,
            stderr: err_w,
        }
    };

    if attached {
        proxy_signals();
    }
    let mut workload = backend.start(&config.launch, stdio)?;
    let me = std::process::id() as i32;
    let started_at = Utc::now();
    let running = match (
        ProcessId::of(workload.pid(), &ProcFs),
        ProcessId::of(me, &ProcFs),
    ) {
        (Some(init), Some(monitor)) => Status::Running {
            init,
            monitor,
            started_at,
        },
        // The workload already ended; its exit is recorded below.
        _ => Status::Running {
            init: ProcessId {
                pid: workload.pid(),
                start_time: 0,
            },
            monitor: ProcessId::of(me, &ProcFs).unwrap_or(ProcessId {
                pid: me,
                start_time: 0,
            }),
            started_at,
        },
    };
    if let Err(e) = store.save_status(id, &running, !config.auto_remove) {
        // Unrecorded, it would run unseen: end it, the container stays as it was.
        let _ = backend.signal(workload.pid(), libc::SIGKILL);
        let _ = workload.wait();
        return Err(e);
    }
    drop(lock);
    // The command waiting for a detached start returns now.
    *ready = None;

    relay(&mut relays, &mut log, attached, workload.pid(), backend);
    let exit = workload.wait()?;
    let name = container.name();
    if log.dropped() > 0 {
        warn(
            attached,
            &format!(
                "{} lines of the output of container {name} could not be logged to {}: {}",
                log.dropped(),
                log_path.display(),
                log.last_error().unwrap_or("write error"),
            ),
        );
    }
    // From here on the container's exit is what counts: a failure to record or remove it is
    // said, and the exit status still reported.
    let _lock = match store.lock(id) {
        Ok(l) => Some(l),
        Err(e) => {
            warn(attached, &crate::errors::chain(&e));
            None
        }
    };
    let recorded = store.save_status(
        id,
        &Status::Exited {
            code: exit.status(),
            started_at: Some(started_at),
            finished_at: Utc::now(),
            monitor_lost: false,
        },
        !config.auto_remove,
    );
    if config.auto_remove {
        // The record goes with the container, written or not; removing frees the disk.
        if let Err(e) = store.remove(id, remove_all) {
            warn(
                attached,
                &format!(
                    "cannot remove container {name}: {}",
                    crate::errors::chain(&e)
                ),
            );
        }
    } else if let Err(e) = recorded {
        warn(
            attached,
            &format!(
                "cannot record the exit status ({}) of container {name}: {}",
                exit.status(),
                crate::errors::chain(&e)
            ),
        );
    }
    Ok(exit)
}

/// Copies the container's output into the log (and to our stdout/stderr when attached) until
/// both streams end; forwards signals received meanwhile.
fn relay(
    relays: &mut [Relay],
    log: &mut LogWriter,
    attached: bool,
    init: i32,
    backend: &dyn Isolation,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while relays.iter().any(|r| r.open) {
        let mut fds: Vec<libc::pollfd> = relays
            .iter()
            .map(|r| libc::pollfd {
                fd: if r.open { r.fd.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: fds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        let sig = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
        if sig != 0 {
            let _ = backend.signal(init, sig);
        }
        if n < 0 {
            continue; // EINTR
        }
        for (relay, pfd) in relays.iter_mut().zip(&fds) {
            if !relay.open || pfd.revents == 0 {
                continue;
            }
            // SAFETY: reading into a valid buffer from our pipe.
            let got =
                unsafe { libc::read(relay.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if got < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if got <= 0 {
                relay.open = false;
                if let Some(rest) = relay.lines.finish() {
                    let _ = log.write(relay.stream, &rest);
                }
                continue;
            }
            let data = &buf[..got as usize];
            if attached {
                let _ = match relay.stream {
                    Stream::Stdout => io::stdout()
                        .write_all(data)
                        .and_then(|()| io::stdout().flush()),
                    Stream::Stderr => io::stderr().write_all(data),
                };
            }
            for line in relay.lines.feed(data) {
                let _ = log.write(relay.stream, &line);
            }
        }
    }
}
