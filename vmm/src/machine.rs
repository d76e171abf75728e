//! Assembling and running one VM from a [`VmConfig`]: memory, KVM, devices, boot data, vCPU
//! threads; then waiting for the guest to end (or the timeout) and stopping every thread.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::thread::JoinHandleExt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use linux_loader::cmdline::Cmdline;
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::{cpuid, mptable, msr, regs};
use crate::config::{SerialOutput, VmConfig, MAX_MTU, MIN_MTU};
use crate::devices::legacy::{SerialPort, I8042};
use crate::devices::virtio::block::io::Disk;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::console::Console;
use crate::devices::virtio::fs::config::check_tag;
use crate::devices::virtio::fs::Fs;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::wiring::{attach, WiringContext};
use crate::error::VmmError;
use crate::exit::{ExitSignal, StopReason, ThreadError, VmExit};
use crate::kvm::vcpu::{install_kick_handler, kick, Buses, Vcpu};
use crate::kvm::vm::Vm;
use crate::layout::{
    CMDLINE_MAX_SIZE, I8042_PORT, I8042_PORT_LEN, IRQ_MAX, SERIAL_IRQ, SERIAL_PORT,
    SERIAL_PORT_LEN, VIRTIO_IRQ_BASE,
};
use crate::snapshot::take::{self, Destination};
use crate::snapshot::{self, restore, vcpu as vcpu_state};
use crate::{boot, memory, seccomp, thread};

/// How long stopping vCPU threads may take before the VMM gives up on joining them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Checks the parts of a config that do not need the host.
pub fn validate(config: &VmConfig) -> Result<(), VmmError> {
    if config.vcpus == 0 || config.vcpus > mptable::MAX_VCPUS {
        return Err(VmmError::Config(format!(
            "vcpus is {}, must be 1..={}",
            config.vcpus,
            mptable::MAX_VCPUS
        )));
    }
    if !(memory::MIN_MEMORY_MIB..=memory::MAX_MEMORY_MIB).contains(&config.memory_mib) {
        return Err(VmmError::Config(format!(
            "memory_mib is {}, must be {}..={}",
            config.memory_mib,
            memory::MIN_MEMORY_MIB,
            memory::MAX_MEMORY_MIB
        )));
    }
    if let Some(net) = &config.net {
        net.mac_address()?;
        if !(MIN_MTU..=MAX_MTU).contains(&net.mtu) {
            return Err(VmmError::Config(format!(
                "net.mtu is {}, must be {MIN_MTU}..={MAX_MTU}",
                net.mtu
            )));
        }
    }
    for (i, fs) in config.fs.iter().enumerate() {
        check_tag(&fs.tag)?;
        if config.fs[..i].iter().any(|other| other.tag == fs.tag) {
            return Err(VmmError::Config(format!(
                "virtio-fs tag {:?} is used twice",
                fs.tag
            )));
        }
    }
    if (config.snapshot_to.is_some() || config.restore_from.is_some()) && !config.fs.is_empty() {
        return Err(VmmError::Config(
            "a VM with shared directories cannot be snapshotted or restored: virtiofsd serves \
             their rings"
                .into(),
        ));
    }
    let slots = (IRQ_MAX - VIRTIO_IRQ_BASE + 1) as usize;
    let devices = config.disks.len()
        + usize::from(config.agent_socket.is_some())
        + usize::from(config.net.is_some())
        + config.fs.len();
    if devices > slots {
        return Err(VmmError::Config(format!(
            "{devices} virtio devices requested, at most {slots} fit"
        )));
    }
    Ok(())
}

fn serial_writer(output: &SerialOutput) -> Result<Option<Box<dyn Write + Send>>, VmmError> {
    Ok(match output {
        SerialOutput::Off => None,
        SerialOutput::Stdout => Some(Box::new(std::io::stdout())),
        SerialOutput::File(path) => Some(Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| VmmError::Serial {
                    path: path.clone(),
                    source,
                })?,
        )),
    })
}

fn disk_name(index: usize) -> String {
    // vda, vdb, ... as the guest will name them.
    format!("vd{}", (b'a' + (index % 26) as u8) as char)
}

/// Whether the calling thread goes under the seccomp filter once the VM is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// It stays as it was (tests, and any caller that goes on after the VM).
    Free,
    /// It is filtered like every VMM thread (the `nook-vmm` process).
    Confined,
}

/// Builds the VM described by `config` and runs it to the end.
pub fn run(config: &VmConfig, caller: Caller) -> Result<VmExit, VmmError> {
    validate(config)?;
    let filter = seccomp::from_env()?;
    // The main thread reads the VM's state at the end when it writes a snapshot.
    let main_filter = match config.snapshot_to {
        Some(_) => seccomp::from_env_with(seccomp::Extra::Snapshot)?,
        None => filter.clone(),
    };
    let exit = Arc::new(ExitSignal::new()?);
    install_kick_handler()?;
    let restoring = match &config.restore_from {
        Some(dir) => Some(restore::open(dir, config)?),
        None => None,
    };
    let (destination, trigger) = match &config.snapshot_to {
        Some(to) => (
            Some(Destination::open(&to.dir)?),
            Some(snapshot::trigger::connect(&to.trigger)?),
        ),
        None => (None, None),
    };

    // Everything the VM uses is opened before any guest code runs.
    let disks = config
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| Disk::open(&d.path, d.read_only, &format!("nook-{}", disk_name(i))))
        .collect::<Result<Vec<_>, _>>()?;
    let agent = match &config.agent_socket {
        Some(path) => Some(
            UnixStream::connect(path).map_err(|source| VmmError::AgentSocket {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    // passt listens before the VM starts (`passt -s PATH -1`) and serves this one connection.
    let net = match &config.net {
        Some(net) => {
            let stream =
                UnixStream::connect(&net.socket).map_err(|source| VmmError::NetSocket {
                    path: net.socket.clone(),
                    source,
                })?;
            Some((stream, net.mac_address()?, net.mtu, net.socket.clone()))
        }
        None => None,
    };
    // virtiofsd listens before the VM starts; owner and features are settled now, outside
    // the seccomp filter, and the rings when the driver is ready.
    let shared = config
        .fs
        .iter()
        .enumerate()
        .map(|(i, fs)| Fs::connect(format!("fs{i}"), &fs.tag, &fs.socket))
        .collect::<Result<Vec<_>, _>>()?;
    let serial_out = serial_writer(&config.serial)?;

    // A vhost-user backend maps guest memory itself: it must come from descriptors.
    let backing = if shared.is_empty() {
        memory::Backing::Private
    } else {
        memory::Backing::Shared
    };
    let mem = match &restoring {
        Some((_, file)) => memory::from_snapshot(config.memory_mib, file)?,
        None => memory::create(config.memory_mib, backing)?,
    };
    let vm = Vm::new()?;
    vm.map_memory(&mem)?;
    vm.create_irqchip()?;
    let msrs = match destination {
        Some(_) => vcpu_state::msrs_to_save(vm.kvm())?,
        None => Vec::new(),
    };

    let mut buses = Buses::default();
    buses
        .pio
        .insert(
            Arc::new(Mutex::new(I8042::new(exit.clone()))),
            u64::from(I8042_PORT),
            u64::from(I8042_PORT_LEN),
        )
        .map_err(|e| VmmError::Config(format!("i8042: {e}")))?;
    if let Some(out) = serial_out {
        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| VmmError::EventFd {
            what: "serial irq",
            source,
        })?;
        vm.register_irqfd(&irq, SERIAL_IRQ)?;
        buses
            .pio
            .insert(
                Arc::new(Mutex::new(SerialPort::new(irq, out))),
                u64::from(SERIAL_PORT),
                u64::from(SERIAL_PORT_LEN),
            )
            .map_err(|e| VmmError::Config(format!("serial: {e}")))?;
    }

    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).map_err(VmmError::Cmdline)?;
    if !config.cmdline.trim().is_empty() {
        cmdline
            .insert_str(config.cmdline.trim())
            .map_err(VmmError::Cmdline)?;
    }
    let mut transports = Vec::new();
    let mut disk_metrics = Vec::new();
    let mut net_metrics = None;
    {
        let mut ctx = WiringContext {
            vm: &vm,
            mem: &mem,
            buses: &mut buses,
            cmdline: &mut cmdline,
            exit: &exit,
            filter: filter.clone(),
        };
        let mut slot = 0;
        for (i, disk) in disks.into_iter().enumerate() {
            let block = Block::new(disk_name(i), disk);
            disk_metrics.push((disk_name(i), block.metrics()));
            transports.push(attach(&mut ctx, slot, Box::new(block))?);
            slot += 1;
        }
        if let Some(stream) = agent {
            let path = config.agent_socket.clone().unwrap_or_default();
            let console = Console::new("agent-console".into(), stream)
                .map_err(|source| VmmError::AgentSocket { path, source })?;
            transports.push(attach(&mut ctx, slot, Box::new(console))?);
            slot += 1;
        }
        if let Some((stream, mac, mtu, path)) = net {
            let net = Net::new("net0".into(), stream, mac, mtu)
                .map_err(|source| VmmError::NetSocket { path, source })?;
            net_metrics = Some(net.metrics());
            transports.push(attach(&mut ctx, slot, Box::new(net))?);
            slot += 1;
        }
        for fs in shared {
            transports.push(attach(&mut ctx, slot, Box::new(fs))?);
            slot += 1;
        }
    }

    let vcpus = match (&restoring, &config.restore_from) {
        (Some((snap, _)), Some(dir)) => restore::machine(dir, snap, &vm, &transports)?,
        _ => boot_vcpus(config, &vm, &mem, &cmdline)?,
    };

    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    let mut parked: Vec<Arc<Mutex<Option<Vcpu>>>> = Vec::new();
    for mut vcpu in vcpus {
        let buses = buses.clone();
        let vcpu_exit = exit.clone();
        let name = format!("vcpu{}", vcpu.id());
        let slot = Arc::new(Mutex::new(None));
        parked.push(slot.clone());
        handles.push(thread::spawn(
            &name,
            filter.clone(),
            exit.clone(),
            move || {
                let result = vcpu.run(&buses, &vcpu_exit);
                // Handed back for a snapshot.
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(vcpu);
                result
            },
        )?);
    }
    if let Some(socket) = trigger {
        let watch_exit = exit.clone();
        handles.push(thread::spawn(
            "snapshot-trigger",
            filter.clone(),
            exit.clone(),
            move || snapshot::trigger::watch(socket, watch_exit),
        )?);
    }
    // From here on the main thread only waits and tears down: it runs under the same filter
    // as every other thread. Not before the vCPUs start: a process's first pthread_create
    // installs glibc's own signal handlers (rt_sigaction), which the filter refuses.
    if let (Some(filter), Caller::Confined) = (&main_filter, caller) {
        if let Err(source) = seccompiler::apply_filter(filter) {
            exit.stop(StopReason::Failed(Arc::new(ThreadError::Seccomp {
                name: "main".into(),
                source,
            })));
        }
    }

    let reason = match exit.wait(config.timeout()) {
        Some(reason) => reason,
        None => {
            exit.stop(StopReason::Exit(VmExit::Timeout));
            exit.wait(None).unwrap_or(StopReason::Exit(VmExit::Timeout))
        }
    };
    let joined = stop_vcpus(handles);
    if let (StopReason::Exit(VmExit::Snapshotted), Some(dest)) = (&reason, &destination) {
        let vcpus: Vec<Vcpu> = parked
            .iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).take())
            .collect();
        if !joined || vcpus.len() != usize::from(config.vcpus) {
            return Err(VmmError::Config(
                "a vCPU did not stop for the snapshot: none was written".into(),
            ));
        }
        take::take(
            dest,
            take::Parts {
                vm: &vm,
                vcpus,
                transports: &transports,
                mem: &mem,
                memory_mib: config.memory_mib,
                msrs: &msrs,
            },
        )?;
    }
    for (name, metrics) in &disk_metrics {
        let n = metrics.io_errors();
        if n > 0 {
            eprintln!("nook-vmm: {name}: {n} requests failed on the host's disk I/O");
        }
    }
    if let Some(m) = net_metrics {
        let faults = m.total_faults();
        if faults > 0 || m.tx_dropped_closed() > 0 {
            eprintln!(
                "nook-vmm: net0: {} frames sent, {} received, {faults} dropped for faults, {} \
                 dropped after the backend closed",
                m.tx_frames(),
                m.rx_frames(),
                m.tx_dropped_closed()
            );
        }
    }
    if !joined {
        // A vCPU thread still holds the guest memory mapping: never unmap it under its feet.
        std::mem::forget(mem);
        std::mem::forget(vm);
    }
    match reason {
        StopReason::Exit(exit) => Ok(exit),
        StopReason::Failed(error) => Err(VmmError::Failed(error)),
    }
}

/// Loads the kernel and its boot data and sets every vCPU up for the PVH entry.
fn boot_vcpus(
    config: &VmConfig,
    vm: &Vm,
    mem: &memory::GuestMemory,
    cmdline: &Cmdline,
) -> Result<Vec<Vcpu>, VmmError> {
    let boot = boot::load(mem, &config.kernel, config.initramfs.as_deref(), cmdline)?;
    regs::write_gdt(mem)?;
    mptable::setup(mem, config.vcpus)?;

    let supported = cpuid::supported(vm.kvm())?;
    let tsc_deadline = vm.kvm().check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    let mut vcpus = Vec::new();
    for id in 0..config.vcpus {
        let vcpu = Vcpu::new(vm, id)?;
        cpuid::setup(vcpu.fd(), &supported, id, config.vcpus, tsc_deadline)?;
        msr::setup(vcpu.fd(), id)?;
        regs::setup_fpu(vcpu.fd(), id)?;
        regs::setup_lint(vcpu.fd(), id)?;
        if id == 0 {
            regs::setup_pvh_entry(vcpu.fd(), id, boot.entry)?;
        }
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

/// Kicks vCPU threads out of KVM_RUN until they end; returns whether all were joined.
fn stop_vcpus(handles: Vec<JoinHandle<()>>) -> bool {
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && handles.iter().any(|h| !h.is_finished()) {
        for h in handles.iter().filter(|h| !h.is_finished()) {
            kick(h.as_pthread_t());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut all = true;
    for h in handles {
        if h.is_finished() {
            let _ = h.join();
        } else {
            all = false;
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetConfig;

    fn config(net: NetConfig) -> VmConfig {
        VmConfig {
            kernel: "/nonexistent/vmlinux".into(),
            initramfs: None,
            cmdline: String::new(),
            memory_mib: 128,
            vcpus: 1,
            disks: Vec::new(),
            agent_socket: None,
            serial: SerialOutput::Off,
            timeout_ms: None,
            net: Some(net),
            fs: Vec::new(),
            snapshot_to: None,
            restore_from: None,
        }
    }

    fn net(socket: &std::path::Path, mac: &str, mtu: u16) -> NetConfig {
        NetConfig {
            socket: socket.into(),
            mac: mac.into(),
            mtu,
        }
    }

    #[test]
    fn bad_mac_or_mtu_is_refused_before_anything_starts() {
        let sock = std::path::Path::new("/nonexistent/passt.sock");
        let e = validate(&config(net(sock, "01:00:5e:00:00:01", 1500))).unwrap_err();
        assert!(matches!(e, VmmError::Mac(_)), "{e:?}");
        for mtu in [0, MIN_MTU - 1, MAX_MTU + 1] {
            let e = validate(&config(net(sock, "52:54:00:12:34:56", mtu))).unwrap_err();
            assert!(matches!(e, VmmError::Config(_)), "{e:?}");
        }
        validate(&config(net(sock, "52:54:00:12:34:56", 65520))).unwrap();
    }

    #[test]
    fn a_socket_nobody_listens_on_fails_the_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("passt.sock");
        let e = run(
            &config(net(&sock, "52:54:00:12:34:56", 65520)),
            Caller::Free,
        )
        .unwrap_err();
        match &e {
            VmmError::NetSocket { path, .. } => assert_eq!(path, &sock),
            other => panic!("expected NetSocket, got {other:?}"),
        }
        assert!(e.to_string().contains(&sock.display().to_string()), "{e}");
    }
}
