//! Booting a container's microVM: the `nook-vmm` process with the guest kernel, the agent's
//! initramfs, the image's EROFS disk (vda, read-only) and the container's writable ext4 disk
//! (vdb; absent means a tmpfs upper), until the agent inside says it is ready.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcStdio};
use std::time::{Duration, Instant};

use nook_agent::client::Client;
use nook_agent::guest::cmdline::{BootParams, NetParams, Upper, AUTO_UPPER_DEVICE};
use nook_agent::guest::warm::WarmStart;
use nook_agent::protocol::StartSpec;

use super::checkpoint::{self, Resume};
use super::kernel::find_kernel;
use super::sockets::{debugging, socket_path};
use super::{assets, phases, shares, sockets, template, virtiofsd, BootMode, Machine, VmError};
use crate::host_tools::PASST;
use crate::isolation::limits::cgroup::Cgroup;
use crate::isolation::mounts::MountSpec;
use crate::isolation::namespace::idmap::IdMap;
use crate::isolation::network::{self, NetworkSpec};
use crate::isolation::{container_id, stack};
use crate::paths::{self, Env, ProcessEnv};
use crate::util::fd;

/// How long the VMM may take to connect to the agent socket (it does so before booting).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the guest may take from VMM start to the agent's ready message, unless
/// `NOOK_VM_BOOT_TIMEOUT` (seconds) says otherwise. Generous: nested virtualization is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a wait looks again where the kernel has no pidfd to be woken by.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How long the VMM may take to exit once the agent reported the exit (it syncs and resets).
pub(super) const RESET_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VmError {
    let path = path.to_path_buf();
    move |source| VmError::Io { what, path, source }
}

/// A booted VM whose agent is ready.
pub(super) struct Booted {
    pub child: Child,
    pub client: Client,
    /// The VMM's log.
    pub log_path: PathBuf,
    /// passt, serving the VM's network (ended when dropped).
    pub passt: Option<stack::Running>,
    /// The virtiofsd of each shared directory (ended when dropped).
    pub shares: Vec<virtiofsd::Running>,
    /// What the agent mounts in the container's root at `Start`.
    pub guest_mounts: Vec<nook_agent::protocol::GuestMount>,
    /// The VMM's snapshot trigger: a byte makes it write `checkpoint.pending/` and end.
    pub trigger: Option<UnixStream>,
    /// Nothing of the guest outlives it: its writable layer is a tmpfs and it shares no host
    /// directory. Once its process has exited the VM can be ended at once, without the guest's
    /// sync and reset, which have nothing to keep.
    pub disposable: bool,
    /// The stream of the container's process, when `boot` was given it and asked for it.
    pub main: Option<u32>,
}

/// What a VM boots for.
#[derive(Clone, Copy)]
pub(super) enum Run<'a> {
    /// A container's process: the VM can be checkpointed (unless it shares directories).
    Container,
    /// A container's VM resumed from its checkpoint.
    Resume(&'a Resume),
    /// A tool of the host (streaming the layer, a copy): booted and ended by nook itself.
    Tool,
}

impl Booted {
    /// Asks the agent to end the VM and waits for the VMM, killing it if it does not end.
    pub fn shut_down(mut self) {
        let _ = self.client.shutdown();
        drop(self.client);
        if wait_timeout(&mut self.child, RESET_TIMEOUT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The VM's MAC address: locally administered, from the container's id.
fn mac(id: &str) -> String {
    let hex: Vec<u8> = (0..4)
        .map(|i| u8::from_str_radix(id.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0))
        .collect();
    format!(
        "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
        hex[0], hex[1], hex[2], hex[3]
    )
}

/// Boots the VM of the container whose directory is `dir` until its agent is ready; with
/// `network`, passt serves its virtio-net device; each host directory in `mounts` is shared
/// through its own virtio-fs device and virtiofsd. With `cgroup`, the VMM and every helper run
/// in it from their start. With `start`, the container's first process is asked for on the
/// way, before the guest is ready ([`Booted::main`]).
// Each argument is one independent part of the VM (its files, network, shares, cgroup, ids,
// purpose, first process); a struct bundling them would only rename the call.
#[allow(clippy::too_many_arguments)]
pub(super) fn boot(
    dir: &Path,
    machine: &Machine,
    network: Option<&NetworkSpec>,
    mounts: &[MountSpec],
    cgroup: Option<&Cgroup>,
    ids: &IdMap,
    run: Run<'_>,
    start: Option<StartSpec>,
) -> Result<Booted, VmError> {
    let env = ProcessEnv;
    // passt starts first and gets ready while the rest is prepared.
    let id = container_id(dir);
    let net = match network.filter(|n| n.stack().is_some()) {
        Some(spec) => {
            let socket = sockets::net_path(&env, &id)?;
            let _ = std::fs::remove_file(&socket);
            let mut args = spec.stack_args();
            args.extend(["--one-off".into(), "--socket".into()]);
            args.push(socket.to_string_lossy().into_owned());
            let launch = stack::launch(&PASST, &args, &stack::pid_file(dir)?, &[])?;
            // passt runs in the foreground and forks nothing: moved now, it has barely begun.
            if let (Some(cgroup), Some(pid)) = (cgroup, launch.pid()) {
                cgroup
                    .add(pid as i32)
                    .map_err(|e| VmError::Cgroup(Box::new(e)))?;
            }
            Some((launch, socket))
        }
        None => None,
    };
    // Every virtiofsd starts now too, and gets ready while the rest is prepared.
    let mut plan = shares::plan(mounts, dir)?;
    if let Some(root) = &machine.host_root {
        plan.shares.insert(
            0,
            shares::Share {
                tag: shares::ROOT_TAG.into(),
                source: root.clone(),
                readonly: machine.disks.read_only,
            },
        );
    }
    let mut fs_launches = Vec::new();
    let mut fs = Vec::new();
    if !plan.shares.is_empty() {
        let program = virtiofsd::find(&env)?;
        for (i, share) in plan.shares.iter().enumerate() {
            let socket = sockets::fs_path(&env, &id, i)?;
            let log = dir.join(format!("virtiofsd-{}.log", share.tag));
            fs_launches.push(virtiofsd::launch(
                &program, share, &socket, &log, ids, cgroup,
            )?);
            fs.push(nook_vmm::FsConfig {
                socket,
                tag: share.tag.clone(),
            });
        }
    }
    let cache = paths::cache_dir(&env);
    let kernel = find_kernel(machine.settings.kernel.as_deref(), &env)?;
    let vmm = assets::find_vmm(&env)?;
    let agent = assets::find_agent(&env)?;
    let initramfs = assets::ensure_initramfs(&cache, &agent)?;
    // A root shared from the host needs no disk: neither the image's nor a writable one.
    let mut disks = Vec::new();
    if machine.host_root.is_none() {
        disks.push(nook_vmm::DiskConfig {
            path: machine.disks.image.clone(),
            read_only: true,
        });
    }
    let upper = &machine.disks.upper;
    let with_disk = machine.host_root.is_none() && upper.is_file();
    if with_disk {
        // Writable even with --read-only: the guest replays the ext4 journal at mount and
        // makes the container's root read-only itself (nook.readonly).
        disks.push(nook_vmm::DiskConfig {
            path: upper.clone(),
            read_only: false,
        });
    }
    let debug = debugging(&env);
    // A warm start resumes a template of this VM's shape; shared directories (whose rings
    // virtiofsd serves) and debug boots (whose serial console the template lacks) start cold,
    // and so does a VM on a host that cannot run one, where the VMM says why.
    let resume = match run {
        Run::Resume(r) => Some(r),
        Run::Container | Run::Tool => None,
    };
    let template = if machine.settings.boot == BootMode::Warm
        && resume.is_none()
        && plan.shares.is_empty()
        && !debug
        && nook_vmm::host::check().is_ok()
    {
        let inputs = template::Inputs {
            kernel: &kernel.path,
            initramfs: &initramfs,
            vmm: &vmm,
            layout: template::Layout {
                memory_mib: machine.settings.memory_mib,
                vcpus: machine.settings.vcpus,
                upper_disk: with_disk,
                net: net.is_some(),
            },
        };
        match template::ensure(&env, &cache, &inputs) {
            Ok(dir) => Some(dir),
            Err(e) => {
                eprintln!(
                    "nook: warning: no warm start ({}); booting the guest kernel",
                    crate::errors::chain(&e)
                );
                None
            }
        }
    } else {
        None
    };
    let disk_sectors = disks
        .iter()
        .map(|d| {
            std::fs::metadata(&d.path)
                .map(|m| m.len() / 512)
                .map_err(io("stat", &d.path))
        })
        .collect::<Result<Vec<u64>, _>>()?;
    // Always names a console: without one the kernel may pick one the VMM did not mean.
    let cmdline = BootParams {
        debug,
        upper: if with_disk {
            Upper::Device(AUTO_UPPER_DEVICE.into())
        } else {
            Upper::Tmpfs
        },
        read_only: machine.disks.read_only,
        net: net.as_ref().map(|_| NetParams {
            address: network::ADDRESS,
            prefix: network::PREFIX,
            gateway: network::GATEWAY,
            mtu: network::MTU,
        }),
        root_tag: machine
            .host_root
            .as_ref()
            .map(|_| shares::ROOT_TAG.to_owned()),
        ..BootParams::default()
    }
    .to_string();

    let socket = socket_path(&env, &id)?;
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(io("listen on", &socket))?;
    // A container's VM can be checkpointed: its VMM is told where, and listens for when.
    let snapshot = match run {
        Run::Container | Run::Resume(_) if plan.shares.is_empty() => {
            let path = sockets::trigger_path(&env, &id)?;
            let _ = std::fs::remove_file(&path);
            let trigger = UnixListener::bind(&path).map_err(io("listen on", &path))?;
            let to = nook_vmm::SnapshotTo {
                dir: checkpoint::fresh_pending(dir)?,
                trigger: path.clone(),
            };
            Some((trigger, path, to))
        }
        _ => None,
    };
    let warm_cmdline = cmdline.clone();
    let config = nook_vmm::VmConfig {
        kernel: kernel.path,
        initramfs: Some(initramfs),
        cmdline,
        memory_mib: machine.settings.memory_mib,
        vcpus: machine.settings.vcpus,
        disks,
        agent_socket: Some(socket.clone()),
        serial: if debug {
            nook_vmm::SerialOutput::File(dir.join("console.log"))
        } else {
            nook_vmm::SerialOutput::Off
        },
        timeout_ms: None,
        net: net.as_ref().map(|(_, socket)| nook_vmm::NetConfig {
            socket: socket.clone(),
            mac: if template.is_some() {
                template::MAC.to_string()
            } else {
                mac(&id)
            },
            mtu: network::MTU,
        }),
        fs,
        snapshot_to: snapshot.as_ref().map(|(_, _, to)| to.clone()),
        restore_from: match resume {
            Some(r) => Some(r.dir.clone()),
            None => template.clone(),
        },
    };
    let config_path = dir.join("vm.json");
    let json = serde_json::to_vec_pretty(&config).map_err(|e| VmError::Io {
        what: "write",
        path: config_path.clone(),
        source: e.into(),
    })?;
    std::fs::write(&config_path, json).map_err(io("write", &config_path))?;
    let log_path = dir.join("vmm.log");
    let log = File::create(&log_path).map_err(io("create", &log_path))?;

    let mut command = Command::new(&vmm);
    if let Some(cgroup) = cgroup {
        cgroup
            .enter_on_exec(&mut command)
            .map_err(|e| VmError::Cgroup(Box::new(e)))?;
    }
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
    // The VMM connects to passt before it boots the guest.
    let passt = match net {
        Some((launch, _)) => Some(stack::wait_ready(launch)?),
        None => None,
    };
    let shares = fs_launches
        .into_iter()
        .map(virtiofsd::wait_ready)
        .collect::<Result<Vec<_>, _>>()?;
    let disposable = !with_disk && machine.host_root.is_none() && shares.is_empty();
    phases::mark(phases::Mark::VmmSpawn);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return Err(io("start the VMM", &vmm)(e)),
    };
    let failed = |child: &mut Child, status: std::process::ExitStatus| {
        let _ = child.wait();
        let message = std::fs::read_to_string(&log_path).unwrap_or_default();
        VmError::Vmm {
            vmm: vmm.clone(),
            status: describe(status),
            message: message.trim().to_string(),
        }
    };

    let guest_mounts = std::mem::take(&mut plan.guest);
    let result = (|| {
        let stream = accept(&listener, &mut child, &socket).map_err(|e| match e {
            Accept::Exited(status) => failed(&mut child, status),
            Accept::Err(e) => e,
        })?;
        phases::mark(phases::Mark::Connected);
        drop(listener);
        let _ = std::fs::remove_file(&socket);
        // The VMM connected to the trigger before the agent socket.
        let trigger = match &snapshot {
            Some((listener, path, _)) => {
                let stream = accept(listener, &mut child, path).map_err(|e| match e {
                    Accept::Exited(status) => failed(&mut child, status),
                    Accept::Err(e) => e,
                })?;
                let _ = std::fs::remove_file(path);
                Some(stream)
            }
            None => None,
        };
        let timeout = env
            .var("NOOK_VM_BOOT_TIMEOUT")
            .and_then(|s| s.parse().ok())
            .map_or(BOOT_TIMEOUT, Duration::from_secs);
        if template.is_some() {
            answer_warm_start(&stream, warm_cmdline, disk_sectors).map_err(|e| {
                match wait_timeout(&mut child, Duration::from_secs(2)) {
                    // The VMM's own message (a refused snapshot) says more.
                    Some(status) => failed(&mut child, status),
                    None => e,
                }
            })?;
            phases::mark(phases::Mark::Resumed);
        }
        let client = Client::from_unix(stream).map_err(VmError::Agent)?;
        if resume.is_some() {
            // The restored agent waits, paused, for this; it answers as at boot.
            let realtime_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let seed = template::seed()?.to_vec();
            client
                .send(
                    0,
                    &nook_agent::protocol::HostMessage::Resume { seed, realtime_ns },
                )
                .map_err(VmError::Agent)?;
        }
        // The container's process, when the caller has it, goes right away: it waits in the
        // VMM until the guest opened its port (a resumed guest has it open since the
        // template's boot), then in the port, and the agent reads it as soon as the root is
        // ready, not a round trip to the host later (the agent's answers wait in the
        // connection).
        let main = match start {
            Some(mut spec) => {
                spec.mounts = guest_mounts.clone();
                Some(client.start(spec).map_err(VmError::Agent)?)
            }
            None => None,
        };
        if let Err(e) = client.wait_ready(timeout).map(phases::ready) {
            // The VMM's own message says more than a closed channel does.
            if let Some(status) = wait_timeout(&mut child, Duration::from_secs(2)) {
                return Err(failed(&mut child, status));
            }
            return Err(VmError::Agent(e));
        }
        Ok((client, trigger, main))
    })();
    match result {
        Ok((client, trigger, main)) => Ok(Booted {
            child,
            client,
            log_path,
            passt,
            shares,
            guest_mounts,
            trigger,
            disposable,
            main,
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&socket);
            Err(e)
        }
    }
}

/// Answers the resumed guest's request for its container's start data (see
/// `nook_agent::guest::warm`; the request itself was read when the template was built).
fn answer_warm_start(
    stream: &UnixStream,
    cmdline: String,
    disk_sectors: Vec<u64>,
) -> Result<(), VmError> {
    let realtime_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = WarmStart {
        cmdline,
        seed: template::seed()?,
        realtime_ns,
        disk_sectors,
    };
    let mut s = stream;
    start.send(&mut s).map_err(VmError::Warm)
}

pub(super) fn describe(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

pub(super) enum Accept {
    Exited(std::process::ExitStatus),
    Err(VmError),
}

/// Accepts the VMM's connection, watching the VMM: a VMM that exits first (a host that cannot
/// run VMs, a bad disk) is reported at once with its own message.
pub(super) fn accept(
    listener: &UnixListener,
    child: &mut Child,
    path: &Path,
) -> Result<UnixStream, Accept> {
    let io = |e| Accept::Err(io("accept on", path)(e));
    listener.set_nonblocking(true).map_err(io)?;
    let ended = fd::pidfd(child.id() as i32);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
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
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Accept::Err(VmError::NoConnect {
                path: path.to_path_buf(),
            }));
        }
        // Woken by the connection or by the VMM's end; without pidfds, looked at again soon.
        let wait = match &ended {
            Some(pidfd) => fd::wait_readable(&[listener.as_fd(), pidfd.as_fd()], Some(left)),
            None => fd::wait_readable(&[listener.as_fd()], Some(left.min(POLL_INTERVAL))),
        };
        wait.map_err(io)?;
    }
}

/// Waits for `child` at most `timeout`; its status when it ended.
pub(super) fn wait_timeout(
    child: &mut Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let ended = fd::pidfd(child.id() as i32);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match &ended {
            Some(pidfd) => {
                // An error of poll itself: look again after a moment rather than spin.
                if fd::wait_readable(&[pidfd.as_fd()], Some(left)).is_err() {
                    std::thread::sleep(POLL_INTERVAL.min(left));
                }
            }
            None => std::thread::sleep(POLL_INTERVAL.min(left)),
        }
    }
}
