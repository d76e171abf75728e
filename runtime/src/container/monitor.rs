//! The monitor: the process that starts a container's first process, holds its stdio (writing
//! the json-lines log, and relaying to the caller when attached, see `attach`), waits for its exit and
//! records it. Detached (`run -d`, `start`), it is a daemon (double fork, setsid) and the
//! command returns as soon as the container runs; attached (`run`), the `nook` process itself is
//! the monitor and exits with the container's status.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use chrono::Utc;

use super::attach::{self, Relay, Wiring};
use super::lifecycle;
use super::log::LogWriter;
use super::state::{ProcFs, ProcessId, Status};
use super::store::{Container, ContainerError, ContainerStore};
use crate::isolation::{Backend, Exit, Host, IsolationError};
use crate::util::fd::{dev_null, pipe};
use crate::util::lock::FileLock;
use crate::util::report::{read_report, write_report};

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

/// Signals an attached monitor forwards to the container (docker's sig-proxy).
const PROXIED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Says what went wrong after the container ran, to the attached caller (a detached monitor
/// has no one to tell): the container's exit status is still what `nook` exits with.
fn warn(attached: bool, message: &str) {
    if attached {
        eprintln!("nook: warning: {message}");
    }
}

/// What a monitor works with: the container store, the container's backend and the host (to
/// remove a `--rm` container's directory).
pub struct Monitor<'a> {
    pub store: &'a ContainerStore,
    pub backend: &'a dyn Backend,
    pub host: &'a Host,
    /// Resume the container from this checkpoint instead of starting its process.
    pub checkpoint: Option<&'a str>,
}

impl Monitor<'_> {
    /// Starts the stopped container `container`. Attached: returns its exit once it ends.
    /// Detached: returns None once it runs, its monitor left behind.
    pub fn start(&self, id: &str, attach: Attach) -> Result<Option<Exit>, ContainerError> {
        let store = self.store;
        let lock = store.lock(id)?;
        let container = store.load(id)?;
        lifecycle::can_start(container.name(), &container.status())?;
        if attach == Attach::Attached {
            return self
                .supervise_or_clean(&container, &mut None, lock, true)
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
            let result = self.supervise_or_clean(&container, &mut ready, lock, false);
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

    /// [`supervise`], and when it fails a `--rm` container is removed all the same: whatever
    /// failed (a full disk, a start error), its workload no longer runs.
    fn supervise_or_clean(
        &self,
        container: &Container,
        ready: &mut Option<OwnedFd>,
        lock: FileLock,
        attached: bool,
    ) -> Result<Exit, ContainerError> {
        let store = self.store;
        let result = self.supervise(container, ready, lock, attached);
        if result.is_err() && container.config.auto_remove {
            let id = container.id();
            if let Ok(_lock) = store.lock(id) {
                if store.dir(id).exists() {
                    let _ = self.remove(id);
                }
            }
        }
        result
    }

    /// Removes the container `id` (`--rm`), files of its ids included, and the anonymous
    /// volumes only it used (docker's `--rm`).
    fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let volumes = self.store.load(id).and_then(|c| {
            super::volumes::remove_anonymous(self.store.root(), self.store, self.host, &c)
        });
        self.store.remove(id, |p| self.host.remove_all(p))?;
        volumes
    }

    fn supervise(
        &self,
        container: &Container,
        ready: &mut Option<OwnedFd>,
        lock: FileLock,
        attached: bool,
    ) -> Result<Exit, ContainerError> {
        let (store, backend) = (self.store, self.backend);
        let id = container.id();
        let config = &container.config;
        let log_path = store.log_path(id);
        let mut log =
            LogWriter::open(&log_path, config.log).map_err(|source| ContainerError::Io {
                what: "open",
                path: log_path.clone(),
                source,
            })?;

        // Pipes, or a new pty: never the caller's own descriptors (see `attach`).
        let (wiring, stdio) = Wiring::new(config.tty, attached && config.open_stdin)
            .map_err(os("set up the container's stdio"))?;
        if attached {
            let mut signals = PROXIED.to_vec();
            signals.push(libc::SIGWINCH);
            attach::catch(&signals).map_err(os("catch signals"))?;
            // The caller may stop reading (`nook run ... | head -1`): the container's output
            // still goes to its log, and its exit is still recorded.
            crate::util::sigpipe::ignore();
        }
        // A published port another program holds fails the start with its name, before any
        // network stack tries it.
        config.launch.network.check_ports_free()?;
        let mut workload = match self.checkpoint {
            Some(name) => backend.restore(&config.launch, stdio, name)?,
            None => backend.start(&config.launch, stdio)?,
        };
        let me = std::process::id() as i32;
        let started_at = Utc::now();
        let cgroup = workload.cgroup().map(std::path::Path::to_path_buf);
        let running = match (
            ProcessId::of(workload.host_pid(), &ProcFs),
            ProcessId::of(me, &ProcFs),
        ) {
            (Some(init), Some(monitor)) => Status::Running {
                init,
                monitor,
                started_at,
                cgroup,
            },
            // The workload already ended; its exit is recorded below.
            _ => Status::Running {
                init: ProcessId {
                    pid: workload.host_pid(),
                    start_time: 0,
                },
                monitor: ProcessId::of(me, &ProcFs).unwrap_or(ProcessId {
                    pid: me,
                    start_time: 0,
                }),
                started_at,
                cgroup,
            },
        };
        if let Err(e) = store.save_status(id, &running, !config.auto_remove) {
            // Unrecorded, it would run unseen: end it, the container stays as it was.
            let _ = backend.signal(workload.host_pid(), libc::SIGKILL);
            let _ = workload.wait();
            return Err(e);
        }
        drop(lock);
        // The command waiting for a detached start returns now.
        *ready = None;

        let init = workload.host_pid();
        let relay = Relay {
            echo: attached,
            log: Some(&mut log),
            done: attach::exited(init),
        };
        wiring.relay(relay, |sig| {
            let _ = backend.signal(init, sig);
            true
        });
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
                oom_killed: workload.oom_killed(),
            },
            !config.auto_remove,
        );
        if config.auto_remove {
            // The record goes with the container, written or not; removing frees the disk.
            if let Err(e) = self.remove(id) {
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
}
