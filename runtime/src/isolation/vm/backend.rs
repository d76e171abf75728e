//! The microVM column's backend for one container: the VM is booted by `start` (see `boot`),
//! the container's processes run under the guest agent, reached through the monitor's control
//! channel while the container runs.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;

use nook_agent::protocol::StartSpec;

use super::boot::{boot, io, Booted, Run};
use super::control::{self, server::ControlServer};
use super::mux::{self, Mux};
use super::workload::{ExecWorkload, VmWorkload};
use super::{checkpoint, layer, phases, Machine, VmError};
use crate::isolation::container_id;
use crate::isolation::limits::cgroup::Cgroup;
use crate::isolation::limits::{self, delegation::Delegation};
use crate::isolation::Backend as _;
use crate::isolation::{
    Host, ImageSource, IsolationError, LaunchSpec, Notice, Process, ProcessSpec, Stdio, Workload,
};
use crate::layers::changes::Change;
use crate::paths::ProcessEnv;
use crate::terminal;
use crate::util::atomic::TempFile;

/// The backend of the VM container whose directory is `dir`.
pub struct Backend<'a> {
    host: &'a Host,
    dir: PathBuf,
    machine: &'a Machine,
}

impl<'a> Backend<'a> {
    pub fn new(host: &'a Host, dir: &Path, machine: &'a Machine) -> Self {
        Backend {
            host,
            dir: dir.to_path_buf(),
            machine,
        }
    }

    /// The control socket of this container's monitor.
    fn control_path(&self) -> Result<PathBuf, VmError> {
        super::sockets::control_path(&ProcessEnv, &container_id(&self.dir))
    }

    /// The writable layer as an OCI layer tar in a temporary file, read from its start.
    fn layer_file(&self, running: bool) -> Result<TempFile, IsolationError> {
        let mut tar = TempFile::new_in(&self.host.tmp_dir(), "layer-")?;
        let path = tar.path().to_path_buf();
        let file = tar.file().try_clone().map_err(io("open", &path))?;
        let mut out = std::io::BufWriter::new(file);
        self.write_layer(running, &mut out)?;
        out.flush().map_err(io("write", &path))?;
        drop(out);
        use std::io::Seek;
        tar.file_mut()
            .seek(std::io::SeekFrom::Start(0))
            .map_err(io("read", &path))?;
        Ok(tar)
    }
}

/// `process` with the terminal size the agent starts it with (docker's 24x80 unless the caller
/// knows better).
fn sized(process: &ProcessSpec) -> ProcessSpec {
    ProcessSpec {
        rows: 24,
        cols: 80,
        ..process.clone()
    }
}

/// The container's first process as the agent starts it: with a terminal, the size of the one
/// `stdout` is, when it is one.
fn first_process(spec: &LaunchSpec, stdout: BorrowedFd<'_>) -> ProcessSpec {
    let mut process = sized(&spec.process);
    if let Some((rows, cols)) = spec
        .process
        .terminal
        .then(|| terminal::size(stdout))
        .flatten()
    {
        (process.rows, process.cols) = (rows, cols);
    }
    process
}

/// A container's VM, booted, its agent ready, the container's process not started yet (what
/// the OCI runtime's `create` leaves for `start`).
pub struct BootedVm {
    booted: Booted,
    cgroup: Option<Cgroup>,
    /// The process-level security options the agent applies in the guest.
    security: nook_agent::protocol::GuestSecurity,
}

impl Backend<'_> {
    /// Boots the container's VM until its agent is ready: the first half of
    /// [`crate::isolation::Backend::start`], whose second half is [`Backend::start_booted`].
    pub fn boot_vm(&self, spec: &LaunchSpec) -> Result<BootedVm, IsolationError> {
        self.boot_run(spec, Run::Container, None)
    }

    /// Starts the container's first process in the VM `vm` booted for it by
    /// [`Backend::boot_vm`], and serves its control channel.
    pub fn start_booted(
        &self,
        vm: BootedVm,
        spec: &LaunchSpec,
        stdio: Stdio,
    ) -> Result<Box<dyn Workload>, IsolationError> {
        self.start_run(vm, spec, stdio, Run::Container)
    }

    /// Boots (or resumes) the VM and starts (or adopts) the container's main process.
    fn launch(
        &self,
        spec: &LaunchSpec,
        stdio: Stdio,
        run: Run<'_>,
    ) -> Result<Box<dyn Workload>, IsolationError> {
        // The first process goes with the boot (see `boot`), unless the guest already runs it.
        let process = match run {
            Run::Container | Run::Tool => Some(first_process(spec, stdio.stdout.as_fd())),
            Run::Resume(_) => None,
        };
        let vm = self.boot_run(spec, run, process)?;
        self.start_run(vm, spec, stdio, run)
    }

    /// Boots (or resumes) the VM until its agent is ready; with `process`, the container's
    /// first process is asked for on the way (started once the guest is ready).
    fn boot_run(
        &self,
        spec: &LaunchSpec,
        run: Run<'_>,
        process: Option<ProcessSpec>,
    ) -> Result<BootedVm, IsolationError> {
        // Compiled before anything boots: a profile that does not compile fails the start.
        let security = super::security::guest_security(&spec.security)?;
        let start = process.map(|process| StartSpec {
            process,
            security: security.clone(),
            ..spec.start_spec()
        });
        // The VMM and its helpers in the container's cgroup, where one is delegated: the host
        // memory and CPU the VM takes are bounded, device threads and helpers included.
        let delegation = Delegation::detect(&crate::paths::ProcessEnv);
        let id = container_id(&self.dir);
        let settings = &self.machine.settings;
        let cgroup = match limits::vm_cgroup(&delegation, &id, &spec.limits, settings.memory_mib) {
            Ok(c) => c,
            // Without --cpus the VM's size is its bound anyway: go on without a cgroup.
            Err(_) if spec.limits.nano_cpus.is_none() => None,
            Err(e) => return Err(e.into()),
        };
        // virtio-fs shares map the guest's ids as the namespace column maps a container's:
        // under --userns=keep-id the user's own uid in the guest is the user on the host.
        let ids = self.host.ids.for_container(spec.security.keep_id)?;
        let booted = boot(
            &self.dir,
            self.machine,
            Some(&spec.network),
            &spec.mounts,
            cgroup.as_ref(),
            &ids.map,
            run,
            start,
        );
        match booted {
            Ok(booted) => Ok(BootedVm {
                booted,
                cgroup,
                security,
            }),
            Err(e) => {
                if let Some(c) = &cgroup {
                    c.remove();
                }
                Err(e.into())
            }
        }
    }

    /// Starts (or adopts) the container's main process in the booted VM `vm`.
    fn start_run(
        &self,
        vm: BootedVm,
        spec: &LaunchSpec,
        stdio: Stdio,
        run: Run<'_>,
    ) -> Result<Box<dyn Workload>, IsolationError> {
        let BootedVm {
            booted:
                Booted {
                    mut child,
                    client,
                    log_path,
                    passt,
                    shares,
                    guest_mounts,
                    trigger,
                    disposable,
                    main: started_main,
                },
            cgroup,
            security,
        } = vm;
        let end = |child: &mut Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        let Stdio {
            stdin,
            stdout,
            stderr,
            console: _,
        } = stdio;
        let terminal = spec.process.terminal;
        let started = (|| {
            let mux =
                Arc::new(Mux::new(client).map_err(|e| {
                    IsolationError::os("start the agent connection's dispatcher", e)
                })?);
            if let Some(trigger) = trigger {
                mux.arm(trigger);
            }
            let (main, frames) = match run {
                Run::Resume(resume) => {
                    let main = resume.meta.main_stream;
                    let frames = mux
                        .adopt_main(main, resume.meta.next_stream)
                        .map_err(VmError::Agent)?;
                    (main, frames)
                }
                Run::Container | Run::Tool => match started_main {
                    // Asked for with the boot: its frames are routed from here on.
                    Some(main) => {
                        let frames = mux.adopt_main(main, main + 1).map_err(VmError::Agent)?;
                        (main, frames)
                    }
                    None => mux
                        .start_main(StartSpec {
                            process: first_process(spec, stdout.as_fd()),
                            mounts: guest_mounts,
                            security,
                            ..spec.start_spec()
                        })
                        .map_err(VmError::Agent)?,
                },
            };
            let path = self.control_path()?;
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(io("listen on", &path))?;
            let server = ControlServer::start(listener, path.clone(), Arc::clone(&mux))
                .map_err(io("serve", &path))?;
            Ok::<_, IsolationError>((mux, main, frames, server))
        })();
        let (mux, main, frames, server) = match started {
            Ok(s) => s,
            Err(e) => {
                end(&mut child);
                return Err(e);
            }
        };
        // A terminal on the host side: raw, so the guest's pty alone interprets it.
        let (raw, size_watch) = if terminal {
            let tty = if terminal::is_tty(stdin.as_fd()) {
                stdin.as_fd()
            } else {
                stdout.as_fd()
            };
            let m = Arc::clone(&mux);
            (
                terminal::RawMode::enable(tty),
                terminal::SizeWatch::start(tty, move |rows, cols| {
                    m.send(
                        main,
                        &nook_agent::protocol::HostMessage::Resize { rows, cols },
                    )
                    .is_ok()
                }),
            )
        } else {
            (None, None)
        };
        mux.pump_stdin(main, File::from(stdin));
        let ended = Arc::clone(&mux);
        let relay = std::thread::Builder::new()
            .name("vm-relay".into())
            .spawn(move || {
                let mut out = File::from(stdout);
                let mut err = File::from(stderr);
                let result = mux::wait_main(main, &frames, &mut out, &mut err);
                phases::exited(result.as_ref().ok().and_then(|r| r.started));
                if let Ok(r) = &result {
                    for message in &r.errors {
                        let _ = writeln!(err, "nook: {message}");
                    }
                }
                // Ask the agent to end the VM, in case the process's end did not already.
                let _ = mux.shutdown();
                result
            });
        let relay = match relay {
            Ok(r) => r,
            Err(e) => {
                end(&mut child);
                return Err(IsolationError::os("start the relay thread", e));
            }
        };
        Ok(Box::new(VmWorkload {
            child,
            relay: Some(relay),
            log_path,
            control: Some(server),
            raw,
            size_watch,
            passt,
            shares,
            oom_killed: false,
            cgroup,
            mux: ended,
            disposable,
        }))
    }
}

impl crate::isolation::Backend for Backend<'_> {
    fn start(&self, spec: &LaunchSpec, stdio: Stdio) -> Result<Box<dyn Workload>, IsolationError> {
        self.launch(spec, stdio, Run::Container)
    }

    fn checkpoint(&self, vmm: i32, name: &str) -> Result<(), IsolationError> {
        checkpoint::check_free(&self.dir, name)?;
        let paused =
            control::client::checkpoint(&self.control_path()?).map_err(VmError::Control)?;
        checkpoint::wait_vmm_gone(name, vmm)?;
        checkpoint::keep(&self.dir, name, self.machine, paused)?;
        Ok(())
    }

    fn restore(
        &self,
        spec: &LaunchSpec,
        stdio: Stdio,
        name: &str,
    ) -> Result<Box<dyn Workload>, IsolationError> {
        let resume = checkpoint::prepare(&self.dir, name, self.machine)?;
        self.launch(spec, stdio, Run::Resume(&resume))
    }

    fn exec(
        &self,
        _init: i32,
        process: &ProcessSpec,
        stdio: Stdio,
    ) -> Result<Box<dyn Process>, IsolationError> {
        let Stdio {
            stdin,
            stdout,
            stderr,
            console: _,
        } = stdio;
        let mut spec = sized(process);
        if let Some((rows, cols)) = process
            .terminal
            .then(|| terminal::size(stdout.as_fd()))
            .flatten()
        {
            (spec.rows, spec.cols) = (rows, cols);
        }
        let session =
            control::client::exec(&self.control_path()?, spec).map_err(VmError::Control)?;
        let (raw, size_watch) = if process.terminal && terminal::is_tty(stdin.as_fd()) {
            let ctl = session.controller();
            (
                terminal::RawMode::enable(stdin.as_fd()),
                terminal::SizeWatch::start(stdin.as_fd(), move |rows, cols| {
                    ctl.resize(rows, cols).is_ok()
                }),
            )
        } else {
            (None, None)
        };
        session.pump_stdin(File::from(stdin));
        Ok(Box::new(ExecWorkload {
            session: Some(session),
            stdout: File::from(stdout),
            stderr: File::from(stderr),
            _raw: raw,
            _size_watch: size_watch,
        }))
    }

    fn create_layer(&self, auto_remove: bool) -> Result<(), IsolationError> {
        self.machine.create_disk(auto_remove)
    }

    fn signal(&self, vmm: i32, signal: i32) -> Result<Notice, IsolationError> {
        let reason = match self
            .control_path()
            .map_err(IsolationError::from)
            .and_then(|p| {
                control::client::signal(&p, signal).map_err(|e| VmError::Control(e).into())
            }) {
            Ok(()) => return Ok(None),
            Err(e) => crate::errors::chain(&e),
        };
        // SAFETY: kill takes a pid and a signal number.
        if unsafe { libc::kill(vmm, signal) } < 0 {
            return Err(IsolationError::os(
                format!("signal the VMM process {vmm} ({reason})"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Some(format!(
            "its agent could not be reached ({reason}): signal {signal} went to its VMM, \
             which ends the VM without syncing its writable disk"
        )))
    }

    fn force_stop(&self, vmm: i32) -> Result<Notice, IsolationError> {
        // The agent took a SIGKILL but did not end the VM: kill the VMM.
        // SAFETY: kill takes a pid and a signal number.
        if unsafe { libc::kill(vmm, libc::SIGKILL) } < 0 {
            return Ok(None);
        }
        Ok(Some(
            "it did not stop after SIGKILL through its agent: its VMM was killed".into(),
        ))
    }

    fn write_layer(&self, running: bool, out: &mut dyn Write) -> Result<(), IsolationError> {
        if running {
            let path = self.control_path()?;
            control::client::stream_upper(&path, out).map_err(VmError::Control)?;
            return Ok(());
        }
        // A stopped container's disk is ext4, which only the guest reads without root: boot it
        // without a process just to stream the layer.
        if !self.machine.disks.upper.is_file() {
            return Err(VmError::NoDisk {
                path: self.machine.disks.upper.clone(),
            }
            .into());
        }
        let booted = boot(
            &self.dir,
            self.machine,
            None,
            &[],
            None,
            &self.host.ids.map,
            Run::Tool,
            None,
        )?;
        let result = booted.client.stream_upper(out);
        booted.shut_down();
        result.map_err(VmError::Layer)?;
        Ok(())
    }

    fn diff(&self, image: &ImageSource<'_>, running: bool) -> Result<Vec<Change>, IsolationError> {
        let mut upper = self.layer_file(running)?;
        layer::diff(image, &mut upper)
    }

    fn export(
        &self,
        image: &ImageSource<'_>,
        running: bool,
        out: File,
    ) -> Result<(), IsolationError> {
        let mut upper = self.layer_file(running)?;
        layer::export(image, &mut upper, out)
    }

    fn cleanup(&self) {
        if let Ok(p) = self.control_path() {
            let _ = std::fs::remove_file(p);
        }
        if let Ok(pid_file) = crate::isolation::stack::pid_file(&self.dir) {
            crate::isolation::stack::end_leftover(&pid_file);
        }
    }
}
