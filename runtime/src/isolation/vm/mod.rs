//! The microVM backend (`--isolation=vm`): one `nook-vmm` process per container boots the guest
//! kernel with the agent's initramfs, the image's EROFS disk (vda, read-only) and the
//! container's writable ext4 disk (vdb; absent means a tmpfs upper). nook listens on the agent
//! socket, the VMM connects to it, and the agent (the guest's PID 1) runs the container's
//! process, whose stdio and exit status come back over that channel.
//!
//! The container's [`LaunchSpec`] carries the VM's disks in its rootfs: `lower[0]` is the EROFS
//! image, `upper` the writable disk file (when it does not exist, the guest gets a tmpfs).

pub mod assets;
pub mod disk;
pub mod phases;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcStdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nook_agent::client::{Client, ClientError, ProcessResult};
use nook_agent::protocol::{ProcessSpec as AgentProcess, StartSpec};
use serde::{Deserialize, Serialize};

use super::{Exit, Isolation, IsolationError, LaunchSpec, ProcessSpec, Stdio, Workload};
use crate::paths::{self, Env, ProcessEnv};
use crate::vm::initramfs::InitramfsError;
use crate::vm::kernel::{find_kernel, KernelError};

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

/// Where the agent socket goes: the runtime directory, or the temp directory when that path is
/// too long for a Unix socket address.
fn socket_path(env: &dyn Env, id: &str) -> Result<PathBuf, VmError> {
    let short = &id[..id.len().min(12)];
    let mut dir = paths::runtime_dir(env).join("vm");
    if dir.as_os_str().len() + short.len() + 8 > 100 {
        dir = std::env::temp_dir().join(format!("nook-vm-{}", env.uid()));
    }
    std::fs::create_dir_all(&dir).map_err(|source| VmError::Io {
        what: "create",
        path: dir.clone(),
        source,
    })?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    Ok(dir.join(format!("{short}.sock")))
}

impl VmBackend {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VmError {
        let path = path.to_path_buf();
        move |source| VmError::Io { what, path, source }
    }

    /// Boots the VM and starts `spec`'s process; returns the running VMM, its agent client
    /// and the process's stream id.
    fn boot(&self, spec: &LaunchSpec) -> Result<(Child, Client, u32, PathBuf), VmError> {
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
            disks.push(nook_vmm::DiskConfig {
                path: upper.clone(),
                read_only: spec.rootfs.read_only,
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

        let id = self
            .container_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let socket = socket_path(&env, &id)?;
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

        phases::mark(phases::Mark::VmmSpawn);
        let mut child = Command::new(&vmm)
            .arg("--config")
            .arg(&config_path)
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
            .stderr(log)
            .spawn()
            .map_err(Self::io("start the VMM", &vmm))?;
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
            let stream = client
                .start(StartSpec {
                    process: agent_process(&spec.process),
                    hostname: spec.hostname.clone(),
                    resolv_conf: String::new(),
                })
                .map_err(VmError::Agent)?;
            Ok((client, stream))
        })();
        match result {
            Ok((client, stream)) => Ok((child, client, stream, log_path)),
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

/// A running VM: the VMM process and the thread relaying the container process's streams.
struct VmWorkload {
    child: Child,
    relay: Option<JoinHandle<Result<ProcessResult, ClientError>>>,
    log_path: PathBuf,
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
                // `nook kill`/`stop` end the VMM with a signal: the container died of it.
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

impl Isolation for VmBackend {
    fn start(&self, spec: &LaunchSpec, stdio: Stdio) -> Result<Box<dyn Workload>, IsolationError> {
        let (child, client, stream, log_path) = self.boot(spec)?;
        let Stdio {
            stdin,
            stdout,
            stderr,
        } = stdio;
        client.pump_stdin(stream, File::from(stdin));
        let relay = std::thread::Builder::new()
            .name("vm-relay".into())
            .spawn(move || {
                let mut out = File::from(stdout);
                let mut err = File::from(stderr);
                let result = client.wait_process(stream, &mut out, &mut err);
                phases::exited(result.as_ref().ok().and_then(|r| r.started));
                if let Ok(r) = &result {
                    for message in &r.errors {
                        let _ = writeln!(err, "nook: {message}");
                    }
                }
                // Ask the agent to end the VM, in case the process's end did not already.
                let _ = client.shutdown();
                result
            })
            .map_err(|e| IsolationError::os("start the relay thread", e))?;
        Ok(Box::new(VmWorkload {
            child,
            relay: Some(relay),
            log_path,
        }))
    }

    fn exec(
        &self,
        _init: i32,
        _process: &ProcessSpec,
        _stdio: Stdio,
    ) -> Result<Box<dyn Workload>, IsolationError> {
        Err(IsolationError::Start {
            code: 125,
            message: "exec into a VM container is not supported yet".into(),
        })
    }

    fn signal(&self, init: i32, signal: i32) -> Result<(), IsolationError> {
        // `init` is the VMM: a signal ends the whole VM.
        // SAFETY: kill takes a pid and a signal number.
        if unsafe { libc::kill(init, signal) } < 0 {
            return Err(IsolationError::os(
                format!("signal the VMM process {init}"),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
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
