//! `nook-agent`: PID 1 of a nook microVM.
//!
//! Straight-line boot: kernel filesystems, kernel parameters, the container root (image +
//! writable layer + overlay), the switch into it, the host channel, then the supervision loop
//! until the main process exits; then every process is killed, disks are synced and the VM is
//! reset (the VMM exits). Any failure is logged to the kernel log and to the host (when the
//! channel is open) and also ends in the reset, never in a kernel panic.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nook_agent::errors;
use nook_agent::guest::cmdline::{BootParams, CMDLINE_ENV, DEFAULT_CHANNEL};
use nook_agent::guest::console::{self, KernelLog};
use nook_agent::guest::mounts::{self, SysMounts};
use nook_agent::guest::{net, power, rootfs, warm};
use nook_agent::layer::targets;
use nook_agent::protocol::{BootTimes, ErrorKind, FrameWriter, GuestMessage, SYNC};
use nook_agent::supervisor::{self, boottime_ns, realtime_ns, Config, Outcome};

fn main() {
    let agent_start_ns = boottime_ns();
    // Everything below ends in killing every process and resetting the machine: never do that
    // to a host where someone ran the binary by mistake.
    if std::process::id() != 1 {
        eprintln!(
            "nook-agent: must run as PID 1 of a nook guest (it mounts, switches root and resets \
             the machine); see agent/README.md"
        );
        std::process::exit(2);
    }
    let kernel_start_realtime_ns = realtime_ns().saturating_sub(agent_start_ns);
    let mut log = KernelLog::open();
    let mut state = BootState {
        supervising: false,
        channel: PathBuf::from(DEFAULT_CHANNEL),
        open: None,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        boot(
            agent_start_ns,
            kernel_start_realtime_ns,
            &mut log,
            &mut state,
        )
    }));
    let failure = match result {
        Ok(Ok(outcome)) => {
            log.debug(&format!("ending: {outcome:?}"));
            None
        }
        Ok(Err(err)) => Some(format!("{err:#}")),
        Err(panic) => Some(format!(
            "the agent panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    };
    if let Some(message) = failure {
        // The kernel log may only now be reachable (/dev is mounted early in `boot`).
        KernelLog::open().error(&message);
        // Once the supervisor ran, the host has the frame stream (and any error it sent);
        // a second sync marker in the middle of it would only confuse the host.
        if !state.supervising {
            tell_host(&mut state, &message);
        }
    }
    power::kill_sync_reset();
}

/// What the failure path needs to know about how far the boot went.
struct BootState {
    /// The supervisor owns the channel (and has sent the sync marker).
    supervising: bool,
    /// The channel device, once the parameters are read.
    channel: PathBuf,
    /// The channel, opened once and kept until the supervisor takes it: a virtio-serial port
    /// drops what the host sends while the guest has it closed, and takes one opener at a time.
    open: Option<File>,
}

/// Best effort: the host waits for `Ready`; an error frame on stream 0 tells it why none comes.
fn tell_host(state: &mut BootState, message: &str) {
    let channel = match state.open.take() {
        Some(f) => f,
        None => match console::open_channel(&state.channel, Duration::from_secs(5)) {
            Ok(fd) => File::from(fd),
            Err(_) => return,
        },
    };
    let mut writer = FrameWriter::new(channel);
    let _ = writer.write_raw(&SYNC);
    let _ = writer.send(
        0,
        &GuestMessage::Error {
            kind: ErrorKind::Internal,
            message: message.to_owned(),
        },
    );
}

fn boot(
    mut agent_start_ns: u64,
    mut kernel_start_realtime_ns: u64,
    log: &mut KernelLog,
    state: &mut BootState,
) -> Result<Outcome> {
    let mut sys = SysMounts;

    let skipped = mounts::mount_early(&mut sys).context("mounting the kernel filesystems")?;
    *log = KernelLog::open();
    // Our own stdio is /dev/console (maybe a console shared with others) or nothing; a panic
    // message belongs in the kernel log instead.
    if let Err(e) = console::redirect_stdio() {
        log.error(&format!(
            "cannot point the agent's stdio at /dev/null and /dev/kmsg: {e}"
        ));
    }
    for e in skipped {
        log.error(&format!(
            "{e}: {}",
            std::error::Error::source(&e).map_or_else(String::new, |s| s.to_string())
        ));
    }

    let mut cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    // Parameters in the environment come after the kernel's: this is how the agent is run as
    // PID 1 of a PID namespace on the host, in its tests (agent/tests/pid1_namespace.rs).
    if let Ok(extra) = std::env::var(CMDLINE_ENV) {
        cmdline.push(' ');
        cmdline.push_str(&extra);
    }
    let mut params = BootParams::parse(&cmdline).context("reading the nook.* kernel parameters")?;
    state.channel = params.channel.clone();
    let channel = state.open.insert(File::from(
        console::open_channel(&params.channel, console::CHANNEL_WAIT)
            .with_context(|| format!("opening the agent channel {}", params.channel.display()))?,
    ));
    // A template boot stops here, waiting, for its snapshot; every VM resumed from it goes on
    // with its own container's parameters.
    if params.warm {
        let start = warm::WarmStart::ask(channel)
            .context("asking the host for the container's start data")?;
        // Where this VM's own run begins: the host places its restore phase up to here.
        agent_start_ns = boottime_ns();
        params = BootParams::parse(&start.cmdline)
            .context("reading the container's nook.* parameters from the host")?;
        warm::reseed(&start.seed).context("reseeding the kernel's random pool")?;
        warm::set_clock(start.realtime_ns).context("setting the clock")?;
        warm::refresh_disks(Path::new("/sys/block"), &start.disk_sectors)?;
        kernel_start_realtime_ns = start.realtime_ns.saturating_sub(agent_start_ns);
    }
    log.debug = params.debug;
    if !params.debug {
        if let Err(e) = console::quiet_kernel_console() {
            log.error(&format!("cannot lower the console log level: {e}"));
        }
    }
    log.debug(&format!("agent started at {agent_start_ns} ns, {params:?}"));

    rootfs::prepare(&mut sys, &params).context("building the container root")?;
    // Kept open across the switch: the writable layer (for commits) and the per-container
    // files are reachable afterwards only through these descriptors.
    let upper = File::open(rootfs::UPPER).context("opening the overlay upper directory")?;
    let files = File::open(rootfs::ETC).context("opening the container files directory")?;
    rootfs::switch_root(&mut sys).context("switching into the container root")?;
    if let Err(e) = net::loopback_up() {
        log.error(&format!(
            "cannot bring the loopback interface up: {}",
            errors::chain(&e)
        ));
    }
    // Before the container's first process, which may connect at once. A container asked to
    // have a network and left without one would fail in confusing ways: this ends the boot.
    if let Some(netp) = &params.net {
        net::configure(net::INTERFACE, netp).context("configuring the network")?;
        log.debug(&format!("{} configured: {netp}", net::INTERFACE));
    }
    let root_ready_ns = boottime_ns();
    log.debug(&format!("root ready at {root_ready_ns} ns"));

    let channel = OwnedFd::from(state.open.take().context("the agent channel was closed")?);
    let fd_path = |f: &File| PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    let config = Config {
        root: "/".into(),
        reap_all: true,
        pid_namespace: true,
        upper_dir: Some(fd_path(&upper)),
        boot: BootTimes {
            kernel_start_realtime_ns,
            agent_start_ns,
            root_ready_ns,
        },
    };
    let mut setup = rootfs::GuestSetup {
        ops: SysMounts,
        files_dir: fd_path(&files),
        targets_record: targets::record_path(&fd_path(&upper)),
        set_hostname: rootfs::sethostname,
        read_only: params.read_only,
    };
    state.supervising = true;
    let outcome =
        supervisor::run(channel, &config, &mut setup).context("supervising the container")?;
    Ok(outcome)
}
