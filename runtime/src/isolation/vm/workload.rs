//! The processes of a VM container as the host holds them: the VM itself (its VMM, the relay
//! of the first process's streams, the control channel) and a process `exec` started in it.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Child;
use std::thread::JoinHandle;

use nook_agent::client::{ClientError, ProcessResult};

use super::boot::{describe, wait_timeout, RESET_TIMEOUT};
use super::control::{self, server::ControlServer};
use super::{phases, VmError};
use crate::isolation::limits::cgroup::Cgroup;
use crate::isolation::{Exit, IsolationError, Process, Workload};
use crate::terminal;

/// A running VM: the VMM process, the thread relaying the container process's streams and the
/// control channel served meanwhile.
pub(super) struct VmWorkload {
    pub(super) child: Child,
    pub(super) relay: Option<JoinHandle<Result<ProcessResult, ClientError>>>,
    pub(super) log_path: PathBuf,
    pub(super) control: Option<ControlServer>,
    /// The host terminal's settings, back when the container ends.
    pub(super) raw: Option<terminal::RawMode>,
    pub(super) size_watch: Option<terminal::SizeWatch>,
    /// passt, serving the VM's network; ends with the workload.
    pub(super) passt: Option<crate::isolation::stack::Running>,
    /// The virtiofsd of each shared directory; end with the workload.
    pub(super) shares: Vec<super::virtiofsd::Running>,
    /// The agent reported an OOM kill in the guest (known once waited for).
    pub(super) oom_killed: bool,
    /// The cgroup of the VMM and its helpers, removed once they are gone.
    pub(super) cgroup: Option<Cgroup>,
    /// The agent connection, which knows whether the VM ended for a checkpoint.
    pub(super) mux: std::sync::Arc<super::mux::Mux>,
    /// The guest keeps nothing (see `Booted::disposable`): once its process reported its exit,
    /// the VMM is ended rather than waited for through the guest's sync and reset.
    pub(super) disposable: bool,
}

impl Workload for VmWorkload {
    fn host_pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn oom_killed(&self) -> bool {
        self.oom_killed
    }

    fn cgroup(&self) -> Option<&std::path::Path> {
        self.cgroup.as_ref().map(Cgroup::path)
    }
}

impl Process for VmWorkload {
    fn wait(&mut self) -> Result<Exit, IsolationError> {
        let result = match self.relay.take().map(JoinHandle::join) {
            Some(Ok(r)) => Some(r),
            // The relay thread panicked: the VMM's status below is all we know.
            Some(Err(_)) | None => None,
        };
        // No more requests: the container's process is gone.
        self.control = None;
        self.size_watch = None;
        self.raw = None;
        if self.disposable && matches!(result, Some(Ok(_))) && !self.mux.checkpointed() {
            let _ = self.child.kill();
        }
        let status = match wait_timeout(&mut self.child, RESET_TIMEOUT) {
            Some(s) => Some(s),
            None => {
                // The guest did not reset after its process ended: end the VM.
                let _ = self.child.kill();
                self.child.wait().ok()
            }
        };
        phases::finish();
        self.oom_killed = matches!(&result, Some(Ok(r)) if r.oom_killed);
        // The VM is gone: so are its helpers, and then their cgroup.
        self.passt = None;
        self.shares.clear();
        if let Some(cgroup) = self.cgroup.take() {
            // The host's OOM killer ending the VMM (past its RAM plus overhead) counts too.
            self.oom_killed |= cgroup.oom_kills() > 0;
            cgroup.remove();
        }
        if self.mux.checkpointed() && status.is_some_and(|s| s.success()) {
            // The VMM wrote the checkpoint and ended: the container stopped there, in order.
            return Ok(Exit::Code(0));
        }
        match result {
            Some(Ok(r)) => Ok(match r.status.signal {
                Some(s) => Exit::Signal(s),
                None => Exit::Code(r.status.code),
            }),
            _ => match status.and_then(|s| s.signal()) {
                // The VMM was killed (`nook kill` without an agent, or by hand): the container
                // died of that signal.
                Some(sig) => Ok(Exit::Signal(sig)),
                None => Err(IsolationError::Vm(VmError::Vmm {
                    vmm: PathBuf::from("nook-vmm"),
                    status: status.map_or("unknown status".into(), describe),
                    message: format!(
                        "the VM ended before the container's process reported its exit{}; see {}",
                        match &result {
                            Some(Err(e)) => format!(" ({e})"),
                            _ => String::new(),
                        },
                        self.log_path.display()
                    ),
                })),
            },
        }
    }
}

/// A process run by `nook exec` through the control channel.
pub(super) struct ExecWorkload {
    pub(super) session: Option<control::client::ExecSession>,
    pub(super) stdout: File,
    pub(super) stderr: File,
    pub(super) _raw: Option<terminal::RawMode>,
    pub(super) _size_watch: Option<terminal::SizeWatch>,
}

impl Process for ExecWorkload {
    fn wait(&mut self) -> Result<Exit, IsolationError> {
        let session = self.session.take().ok_or_else(|| {
            IsolationError::os(
                "wait for the exec'd process",
                io::ErrorKind::InvalidInput.into(),
            )
        })?;
        let outcome = session
            .wait(&mut self.stdout, &mut self.stderr)
            .map_err(VmError::Control)?;
        if !outcome.started {
            // Docker's codes: 126 not executable, 127 not found, 125 set-up.
            return Err(IsolationError::Start {
                code: outcome.status.code,
                message: outcome.errors.join("; "),
            });
        }
        for message in &outcome.errors {
            let _ = writeln!(self.stderr, "nook: {message}");
        }
        Ok(match outcome.status.signal {
            Some(s) => Exit::Signal(s),
            None => Exit::Code(outcome.status.code),
        })
    }
}
