//! How the VM ends: the first reason reported wins, and everybody waiting is woken.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why a running VMM thread ended the VM.
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    /// The thread could not confine itself.
    #[error("thread {name}: cannot install its seccomp filter")]
    Seccomp {
        /// Thread name.
        name: String,
        /// Cause.
        #[source]
        source: seccompiler::Error,
    },
    /// The thread's body returned an error.
    #[error("thread {name} failed")]
    Failed {
        /// Thread name.
        name: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The thread panicked.
    #[error("thread {name} panicked: {message}")]
    Panicked {
        /// Thread name.
        name: String,
        /// The panic payload, when it is a string.
        message: String,
    },
}

/// Why a VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine (i8042 reset line, triple fault or a KVM system event): the
    /// normal way the agent ends a VM.
    Reset,
    /// A vCPU executed HLT with interrupts off and no in-kernel irqchip to wake it.
    Halted,
    /// The host-side timeout expired and the VM was killed.
    Timeout,
    /// The caller asked for a snapshot (see `snapshot::trigger`), and it was written.
    Snapshotted,
}

/// An internal stop request: a normal exit or a failure that ends the VM.
#[derive(Clone, Debug)]
pub enum StopReason {
    /// The guest ended (or the timeout did).
    Exit(VmExit),
    /// A VMM thread failed; the error names the thread and carries what went wrong.
    Failed(Arc<ThreadError>),
}

/// Exits compare by kind; failures only to themselves (errors have no useful equality).
impl PartialEq for StopReason {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exit(a), Self::Exit(b)) => a == b,
            (Self::Failed(a), Self::Failed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for StopReason {}

/// Shared by every VMM thread: whoever stops the VM first records why.
#[derive(Debug)]
pub struct ExitSignal {
    stopping: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    event: EventFd,
}

/// Errors of the exit signal.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the VM exit eventfd")]
pub struct ExitSignalError(#[source] pub std::io::Error);

impl ExitSignal {
    /// A fresh signal nobody has raised yet.
    pub fn new() -> Result<Self, ExitSignalError> {
        Ok(Self {
            stopping: AtomicBool::new(false),
            reason: Mutex::new(None),
            event: EventFd::new(EFD_NONBLOCK).map_err(ExitSignalError)?,
        })
    }

    /// Records `reason` unless another one came first, and wakes the waiter.
    pub fn stop(&self, reason: StopReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stopping.store(true, Ordering::SeqCst);
        // A full eventfd counter still leaves it readable, so a failed write changes nothing.
        let _ = self.event.write(1);
    }

    /// Whether the VM is stopping; polled by loops between blocking calls.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The eventfd that becomes readable once the VM stops (for epoll loops).
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// Waits up to `timeout` (forever with None) and returns the reason, if any yet.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<StopReason> {
        let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.event),
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while !self.is_stopping() {
            let left = match deadline {
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        break;
                    }
                    i32::try_from((d - now).as_millis()).unwrap_or(ms).max(1)
                }
                None => -1,
            };
            // SAFETY: pfd is a valid pollfd for the duration of the call and nfds is 1.
            unsafe { libc::poll(&mut pfd, 1, left) };
        }
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins() {
        let signal = ExitSignal::new().unwrap();
        assert_eq!(signal.wait(Some(Duration::from_millis(10))), None);
        signal.stop(StopReason::Exit(VmExit::Reset));
        signal.stop(StopReason::Failed(Arc::new(ThreadError::Panicked {
            name: "late".into(),
            message: "too late".into(),
        })));
        assert!(signal.is_stopping());
        assert_eq!(signal.wait(None), Some(StopReason::Exit(VmExit::Reset)));
    }
}
