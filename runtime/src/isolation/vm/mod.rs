//! The microVM backend (`--isolation=vm`): one `nook-vmm` process per container boots the guest
//! kernel with the agent's initramfs, the image's EROFS disk (vda, read-only) and the
//! container's writable ext4 disk (vdb; absent means a tmpfs upper). nook listens on the agent
//! socket, the VMM connects to it, and the agent (the guest's PID 1) runs the container's
//! process, whose stdio and exit status come back over that channel.
//!
//! The container's [`LaunchSpec`] carries the VM's disks in its rootfs: `lower[0]` is the EROFS
//! image, `upper` the writable disk file (when it does not exist, the guest gets a tmpfs).

pub mod assets;
pub mod control;
pub mod disk;
pub mod initramfs;
pub mod kernel;
pub mod mux;
pub mod phases;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcStdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nook_agent::client::{Client, ClientError, ProcessResult};
use nook_agent::protocol::{ProcessSpec as AgentProcess, StartSpec};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use control::server::ControlServer;
use mux::Mux;
use std::os::fd::AsFd;

use super::{Exit, Isolation, IsolationError, LaunchSpec, ProcessSpec, Stdio, Workload};
use crate::isolation::vm::initramfs::InitramfsError;
use crate::isolation::vm::kernel::{find_kernel, KernelError};
use crate::paths::{self, Env, ProcessEnv};
use crate::terminal;

/// Guest RAM when `--memory` is not given.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// The least RAM a guest boots with.
const MIN_MEMORY_MIB: u32 = 64;
/// How long the VMM may take to connect to the agent socket (it does so before booting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the guest may take from VMM start to the agent's ready message, unless
/// `NOOK_VM_BOOT_TIMEOUT` (seconds) says otherwise. Generous: nested virtualization is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the VMM may take to exit once the agent reported the exit (it syncs and resets).
const RESET_TIMEOUT: Duration = Duration::from_secs(60);

/// The size of a container's VM and the kernel it boots, fixed at create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSettings {
    pub memory_mib: u32,
    pub vcpus: u8,
    /// `--kernel`: a vmlinux that overrides `NOOK_KERNEL` and the cached build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
}

impl VmSettings {
    /// From docker's `--memory` (bytes) and `--cpus` (rounded up to whole vCPUs).
    pub fn from_flags(memory: Option<u64>, cpus: Option<f64>) -> Result<VmSettings, VmError> {
        let memory_mib = match memory {
            None => DEFAULT_MEMORY_MIB,
            Some(b) => {
                let mib = b.div_ceil(1 << 20);
                if mib < u64::from(MIN_MEMORY_MIB) || mib > u64::from(u32::MAX) {
                    return Err(VmError::Size(format!(
                        "--memory {b} bytes: a VM needs between {MIN_MEMORY_MIB} MiB and 4 PiB"
                    )));
                }
                mib as u32
            }
        };
        let vcpus = match cpus {
            None => 1,
            Some(c) if c > 0.0 && c.ceil() <= 255.0 => c.ceil() as u8,
            Some(c) => {
                return Err(VmError::Size(format!(
                    "--cpus {c}: a VM has between 1 and 255 vCPUs"
                )))
            }
        };
        Ok(VmSettings {
            memory_mib,
            vcpus,
            kernel: None,
        })
    }
}

/// Errors of the microVM backend.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} is missing at {}: {hint}", path.display())]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("the agent {} is not a static binary (build it with agent/build-static.sh)", path.display())]
    AgentNotStatic { path: PathBuf },
    #[error("cannot make the empty ext4 template {}: {message}", path.display())]
    Mkfs { path: PathBuf, message: String },
    #[error("invalid VM size: {0}")]
    Size(String),
    #[error("the container has no image disk (lower layer) to boot")]
    NoImageDisk,
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    #[error("the VMM {} failed ({status}): {message}", vmm.display())]
    Vmm {
        vmm: PathBuf,
        status: String,
        message: String,
    },
    #[error("the VMM did not connect to the agent socket {} within {:?}", path.display(), CONNECT_TIMEOUT)]
    NoConnect { path: PathBuf },
    #[error("the guest agent did not come up")]
    Agent(#[source] ClientError),
    #[error("cannot stream the writable layer from the guest")]
    Layer(#[source] ClientError),
    #[error("the container's control channel failed")]
    Control(#[source] control::ControlError),
    #[error("the container has no writable disk at {}", path.display())]
    NoDisk { path: PathBuf },
}

/// The backend for one container: its directory (VM config, VMM log) and its VM size.
pub struct VmBackend {
    pub container_dir: PathBuf,
    pub settings: VmSettings,
}

/// Debug boots (`NOOK_VM_DEBUG=1`): kernel console and agent steps in `console.log`.
fn debugging(env: &dyn Env) -> bool {
    env.var("NOOK_VM_DEBUG").is_some_and(|v| v != "0")
}

/// Where the agent and control sockets go: the runtime directory, or the temp directory when
/// that path is too long for a Unix socket address (108 bytes).
fn socket_dir(env: &dyn Env) -> Result<PathBuf, VmError> {
    let mut dir = paths::runtime_dir(env).join("vm");
    if dir.as_os_str().len() + 12 + 8 > 100 {
        dir = std::env::temp_dir().join(format!("nook-vm-{}", env.uid()));
    }
    std::fs::create_dir_all(&dir).map_err(|source| VmError::Io {
        what: "create",
        path: dir.clone(),
        source,
    })?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    Ok(dir)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Where the agent socket goes (only while the VMM connects).
fn socket_path(env: &dyn Env, id: &str) -> Result<PathBuf, VmError> {
    Ok(socket_dir(env)?.join(format!("{}.sock", short(id))))
}

/// Where the monitor of the running container `id` serves its control channel.
pub fn control_path(env: &dyn Env, id: &str) -> Result<PathBuf, VmError> {
    Ok(socket_dir(env)?.join(format!("{}.ctl", short(id))))
}

impl VmBackend {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VmError {
        let path = path.to_path_buf();
        move |source| VmError::Io { what, path, source }
    }

    /// The container's id (its directory's name).
    fn id(&self) -> String {
        self.container_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Boots the VM until its agent is ready; returns the running VMM, its agent client and
    /// the VMM's log.
    fn boot(&self, spec: &LaunchSpec) -> Result<(Child, Client, PathBuf), VmError> {
        let env = ProcessEnv;
        let cache = paths::cache_dir(&env);
        let kernel = find_kernel(self.settings.kernel.as_deref(), &env)?;
        let vmm = assets::find_vmm(&env)?;
        let (agent, agent_data) = assets::find_agent(&env)?;
        let initramfs = assets::ensure_initramfs(&cache, &agent, &agent_data)?;
        let image = spec.rootfs.lower.first().ok_or(VmError::NoImageDisk)?;

        let mut disks = vec![nook_vmm::DiskConfig {
            path: image.clone(),
            read_only: true,
        }];
        let upper = &spec.rootfs.upper;
        let with_disk = upper.is_file();
        if with_disk {
            // Writable even with --read-only: the guest replays the ext4 journal at mount and
            // makes the container's root read-only itself (nook.readonly).
            disks.push(nook_vmm::DiskConfig {
                path: upper.clone(),
                read_only: false,
            });
        }
        let debug = debugging(&env);
        // Always name a console: without one the kernel may pick hvc0, the agent channel.
        let mut cmdline = String::from(if debug {
            "console=ttyS0 nook.debug"
        } else {
            "console=ttynull"
        });
        cmdline.push_str(" reboot=k panic=-1 rdinit=/init");
        cmdline.push_str(if with_disk {
            " nook.upper=vdb"
        } else {
            " nook.upper=tmpfs"
        });
        if spec.rootfs.read_only {
            cmdline.push_str(" nook.readonly");
        }

        let socket = socket_path(&env, &self.id())?;
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(Self::io("listen on", &socket))?;
        let config = nook_vmm::VmConfig {
            kernel: kernel.path,
            initramfs: Some(initramfs),
            cmdline,
            memory_mib: self.settings.memory_mib,
            vcpus: self.settings.vcpus,
            disks,
            agent_socket: Some(socket.clone()),
            serial: if debug {
                nook_vmm::SerialOutput::File(self.container_dir.join("console.log"))
            } else {
                nook_vmm::SerialOutput::Off
            },
            timeout_ms: None,
        };
        let config_path = self.container_dir.join("vm.json");
        let json = serde_json::to_vec_pretty(&config).map_err(|e| VmError::Io {
            what: "write",
            path: config_path.clone(),
            source: e.into(),
        })?;
        std::fs::write(&config_path, json).map_err(Self::io("write", &config_path))?;
        let log_path = self.container_dir.join("vmm.log");
        let log = File::create(&log_path).map_err(Self::io("create", &log_path))?;

        let mut command = Command::new(&vmm);
        command
            .arg("--config")
            .arg(&config_path)
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
            .stderr(log);
        // SAFETY: the closure only calls setsid, prctl and close_range, which are
        // async-signal-safe. A monitor killed with SIGKILL takes its VM along, so no VM
        // outlives the container's recorded state. A session of its own: the caller's terminal
        // is never the VMM's controlling terminal (nor are the terminal's signals sent to it;
        // the monitor forwards them to the container through the agent), and none of the
        // caller's other descriptors reaches it.
        unsafe {
            command.pre_exec(|| {
                let cloexec = libc::CLOSE_RANGE_CLOEXEC;
                if libc::setsid() < 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0
                    || libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, cloexec) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        phases::mark(phases::Mark::VmmSpawn);
        let mut child = command.spawn().map_err(Self::io("start the VMM", &vmm))?;
        let failed = |child: &mut Child, status: std::process::ExitStatus| {
            let _ = child.wait();
            let message = std::fs::read_to_string(&log_path).unwrap_or_default();
            VmError::Vmm {
                vmm: vmm.clone(),
                status: describe(status),
                message: message.trim().to_string(),
            }
        };

        let result = (|| {
            let stream = accept(&listener, &mut child, &socket).map_err(|e| match e {
                Accept::Exited(status) => failed(&mut child, status),
                Accept::Err(e) => e,
            })?;
            phases::mark(phases::Mark::Connected);
            drop(listener);
            let _ = std::fs::remove_file(&socket);
            let client = Client::from_unix(stream).map_err(VmError::Agent)?;
            let timeout = env
                .var("NOOK_VM_BOOT_TIMEOUT")
                .and_then(|s| s.parse().ok())
                .map_or(BOOT_TIMEOUT, Duration::from_secs);
            if let Err(e) = client.wait_ready(timeout).map(phases::ready) {
                // The VMM's own message says more than a closed channel does.
                if let Some(status) = wait_timeout(&mut child, Duration::from_secs(2)) {
                    return Err(failed(&mut child, status));
                }
                return Err(VmError::Agent(e));
            }
            Ok(client)
        })();
        match result {
            Ok(client) => Ok((child, client, log_path)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&socket);
                Err(e)
            }
        }
    }
}

fn agent_process(p: &ProcessSpec) -> AgentProcess {
    AgentProcess {
        argv: p.argv.clone(),
        env: p.env.clone(),
        cwd: p.cwd.clone(),
        user: p.user.clone(),
        terminal: p.terminal,
        rows: 24,
        cols: 80,
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

enum Accept {
    Exited(std::process::ExitStatus),
    Err(VmError),
}

/// Accepts the VMM's connection, watching the VMM: a VMM that exits first (a host that cannot
/// run VMs, a bad disk) is reported at once with its own message.
fn accept(listener: &UnixListener, child: &mut Child, path: &Path) -> Result<UnixStream, Accept> {
    let io = |e| Accept::Err(VmBackend::io("accept on", path)(e));
    listener.set_nonblocking(true).map_err(io)?;
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(io)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Accept::Exited(status));
        }
        if start.elapsed() > CONNECT_TIMEOUT {
            return Err(Accept::Err(VmError::NoConnect {
                path: path.to_path_buf(),
            }));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` at most `timeout`; its status when it ended.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running VM: the VMM process, the thread relaying the container process's streams and the
/// control channel served meanwhile.
struct VmWorkload {
    child: Child,
    relay: Option<JoinHandle<Result<ProcessResult, ClientError>>>,
    log_path: PathBuf,
    control: Option<ControlServer>,
    /// The host terminal's settings, back when the container ends.
    raw: Option<terminal::RawMode>,
    size_watch: Option<terminal::SizeWatch>,
}

impl Workload for VmWorkload {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

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
        let status = match wait_timeout(&mut self.child, RESET_TIMEOUT) {
            Some(s) => Some(s),
            None => {
                // The guest did not reset after its process ended: end the VM.
                let _ = self.child.kill();
                self.child.wait().ok()
            }
        };
        phases::finish();
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
struct ExecWorkload {
    session: Option<control::client::ExecSession>,
    stdout: File,
    stderr: File,
    _raw: Option<terminal::RawMode>,
    _size_watch: Option<terminal::SizeWatch>,
}

impl Workload for ExecWorkload {
    fn pid(&self) -> i32 {
        // The process lives in the guest; it has no host pid.
        0
    }

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

/// How a signal reached a VM container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Through the agent, to the container's process.
    Agent,
    /// The agent was unreachable: the VMM process got the signal (the guest did not sync).
    Vmm { reason: String },
}

impl VmBackend {
    /// The control socket of this container's monitor.
    fn control_path(&self) -> Result<PathBuf, VmError> {
        control_path(&ProcessEnv, &self.id())
    }

    /// Sends `signal` to the container's process through the agent; when the monitor or the
    /// agent cannot be reached, to the VMM process `vmm` instead, which ends the VM at once.
    pub fn deliver(&self, vmm: i32, signal: i32) -> Result<Delivery, IsolationError> {
        let reason = match self
            .control_path()
            .map_err(IsolationError::from)
            .and_then(|p| {
                control::client::signal(&p, signal).map_err(|e| VmError::Control(e).into())
            }) {
            Ok(()) => return Ok(Delivery::Agent),
            Err(e) => crate::errors::chain(&e),
        };
        // SAFETY: kill takes a pid and a signal number.
        if unsafe { libc::kill(vmm, signal) } < 0 {
            return Err(IsolationError::os(
                format!("signal the VMM process {vmm} ({reason})"),
                io::Error::last_os_error(),
            ));
        }
        Ok(Delivery::Vmm { reason })
    }

    /// Writes the container's writable layer as an OCI layer tar into `out`. A running
    /// container streams it through its monitor; a stopped one is booted without a process
    /// just to stream it (its disk is ext4, which only the guest reads without root).
    pub fn stream_upper(
        &self,
        spec: &LaunchSpec,
        running: bool,
        out: &mut dyn Write,
    ) -> Result<u64, IsolationError> {
        if running {
            let path = self.control_path()?;
            return Ok(control::client::stream_upper(&path, out).map_err(VmError::Control)?);
        }
        if !spec.rootfs.upper.is_file() {
            return Err(VmError::NoDisk {
                path: spec.rootfs.upper.clone(),
            }
            .into());
        }
        let (mut child, client, _log) = self.boot(spec)?;
        let result = client.stream_upper(out);
        let _ = client.shutdown();
        drop(client);
        if wait_timeout(&mut child, RESET_TIMEOUT).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(result.map_err(VmError::Layer)?)
    }
}

impl Isolation for VmBackend {
    fn start(&self, spec: &LaunchSpec, stdio: Stdio) -> Result<Box<dyn Workload>, IsolationError> {
        let (mut child, client, log_path) = self.boot(spec)?;
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
        let mut process = agent_process(&spec.process);
        if let Some((rows, cols)) = terminal.then(|| terminal::size(stdout.as_fd())).flatten() {
            (process.rows, process.cols) = (rows, cols);
        }
        let started = (|| {
            let mux =
                Arc::new(Mux::new(client).map_err(|e| {
                    IsolationError::os("start the agent connection's dispatcher", e)
                })?);
            let (main, frames) = mux
                .start_main(StartSpec {
                    process,
                    hostname: spec.hostname.clone(),
                    resolv_conf: String::new(),
                })
                .map_err(VmError::Agent)?;
            let path = self.control_path()?;
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(Self::io("listen on", &path))?;
            let server = ControlServer::start(listener, path.clone(), Arc::clone(&mux))
                .map_err(Self::io("serve", &path))?;
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
        }))
    }

    fn exec(
        &self,
        _init: i32,
        process: &ProcessSpec,
        stdio: Stdio,
    ) -> Result<Box<dyn Workload>, IsolationError> {
        let Stdio {
            stdin,
            stdout,
            stderr,
            console: _,
        } = stdio;
        let mut spec = agent_process(process);
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

    fn signal(&self, init: i32, signal: i32) -> Result<(), IsolationError> {
        self.deliver(init, signal).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_size_follows_the_flags() {
        assert_eq!(
            VmSettings::from_flags(None, None).unwrap(),
            VmSettings {
                memory_mib: DEFAULT_MEMORY_MIB,
                vcpus: 1,
                kernel: None,
            }
        );
        assert_eq!(
            VmSettings::from_flags(Some(1 << 30), Some(1.5)).unwrap(),
            VmSettings {
                memory_mib: 1024,
                vcpus: 2,
                kernel: None,
            }
        );
        assert!(VmSettings::from_flags(Some(1 << 20), None).is_err());
        assert!(VmSettings::from_flags(None, Some(300.0)).is_err());
        assert!(VmSettings::from_flags(None, Some(0.0)).is_err());
    }

    #[test]
    fn settings_without_a_kernel_field_still_load() {
        let old: VmSettings = serde_json::from_str(r#"{"memory_mib":256,"vcpus":1}"#).unwrap();
        assert_eq!(old.kernel, None);
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("kernel"), "{json}");
    }
}
