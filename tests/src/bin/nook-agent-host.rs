//! The host side of a guest boot, for tests and the bench: starts a VMM whose agent channel
//! connects to a Unix socket this program listens on, waits for the agent's ready message, runs
//! one process in the guest through nook-agent's client, relays its stdout and stderr to this
//! program's own, waits for the VMM to exit (the agent resets the VM after the process), and
//! exits with the process's status.
//!
//! ```text
//! nook-agent-host initramfs AGENT DEST
//! nook-agent-host run --socket PATH --vmm-log FILE [--timeout SECS] [--times FILE]
//!                     --cmd ARG... -- VMM [ARG]...
//! ```
//! `--times FILE` receives JSON: host milliseconds from the VMM's start to the agent's ready
//! message and to the process's exit, and the guest's own boot timestamps.
//! Exit status: the process's; 125 when something else failed (said on stderr).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nook_agent::client::Client;
use nook_agent::protocol::{ProcessSpec, StartSpec};

const EXIT_HOST_ERROR: u8 = 125;

struct RunArgs {
    socket: PathBuf,
    vmm_log: PathBuf,
    timeout: Duration,
    times: Option<PathBuf>,
    argv: Vec<String>,
    vmm: Vec<String>,
}

fn parse_run(args: &[String]) -> Result<RunArgs> {
    let (mut socket, mut vmm_log, mut times) = (None, None, None);
    let mut timeout = Duration::from_secs(300);
    let mut i = 0;
    let value = |i: usize| -> Result<&String> {
        args.get(i + 1)
            .with_context(|| format!("{} needs a value", args[i]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--socket" => socket = Some(PathBuf::from(value(i)?)),
            "--vmm-log" => vmm_log = Some(PathBuf::from(value(i)?)),
            "--times" => times = Some(PathBuf::from(value(i)?)),
            "--timeout" => {
                let secs: u64 = value(i)?
                    .parse()
                    .with_context(|| format!("--timeout {:?} is not a number", args[i + 1]))?;
                timeout = Duration::from_secs(secs);
            }
            "--cmd" => break,
            other => bail!("unknown option {other:?}"),
        }
        i += 2;
    }
    let rest = args.get(i + 1..).unwrap_or_default();
    let split = rest
        .iter()
        .position(|a| a == "--")
        .context("the VMM command must follow `--`")?;
    let (argv, vmm) = (rest[..split].to_vec(), rest[split + 1..].to_vec());
    if argv.is_empty() {
        bail!("--cmd needs the process's argv");
    }
    if vmm.is_empty() {
        bail!("no VMM command after `--`");
    }
    Ok(RunArgs {
        socket: socket.context("--socket is required")?,
        vmm_log: vmm_log.context("--vmm-log is required")?,
        timeout,
        times,
        argv,
        vmm,
    })
}

/// Accepts the VMM's connection, giving up when the VMM exits or the deadline passes.
fn accept(listener: &UnixListener, vmm: &mut Child, deadline: Instant) -> Result<UnixStream> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("accepting the VMM's agent connection"),
        }
        if let Some(status) = vmm.try_wait()? {
            bail!("the VMM exited ({status}) before connecting to the agent socket");
        }
        if Instant::now() >= deadline {
            bail!("the VMM did not connect to the agent socket in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the VMM to exit by itself (the agent resets the VM), killing it at the deadline.
fn wait_vmm(vmm: &mut Child, deadline: Instant) -> Result<()> {
    loop {
        if let Some(status) = vmm.try_wait()? {
            if !status.success() {
                bail!("the VMM exited with {status}");
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = vmm.kill();
            let _ = vmm.wait();
            bail!("the VMM did not exit after the process ended (killed it)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(args: RunArgs) -> Result<i32> {
    let _ = std::fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)
        .with_context(|| format!("cannot listen on {}", args.socket.display()))?;
    let log = File::create(&args.vmm_log)
        .with_context(|| format!("cannot create {}", args.vmm_log.display()))?;
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut vmm = Command::new(&args.vmm[0])
        .args(&args.vmm[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start the VMM {:?}", args.vmm[0]))?;
    let result = guest_session(&args, &listener, &mut vmm, started, deadline);
    if result.is_err() {
        let _ = vmm.kill();
        let _ = vmm.wait();
    }
    result
}

fn guest_session(
    args: &RunArgs,
    listener: &UnixListener,
    vmm: &mut Child,
    started: Instant,
    deadline: Instant,
) -> Result<i32> {
    let stream = accept(listener, vmm, deadline)?;
    let client = Client::from_unix(stream).context("cannot set up the agent client")?;
    let ready = client
        .wait_ready(deadline.saturating_duration_since(Instant::now()))
        .context("waiting for the agent's ready message")?;
    let ready_ms = started.elapsed().as_millis();
    let spec = StartSpec {
        process: ProcessSpec {
            argv: args.argv.clone(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            ..ProcessSpec::default()
        },
        ..StartSpec::default()
    };
    let id = client.start(spec).context("starting the process")?;
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let result = client
        .wait_process(id, &mut out, &mut err)
        .context("waiting for the process")?;
    let exit_ms = started.elapsed().as_millis();
    drop((out, err));
    for message in &result.errors {
        eprintln!("nook-agent-host: the agent reported: {message}");
    }
    wait_vmm(vmm, deadline)?;
    if let Some(path) = &args.times {
        let times = serde_json::json!({
            "host_ready_ms": ready_ms,
            "host_exit_ms": exit_ms,
            "guest_agent_start_ns": ready.boot.agent_start_ns,
            "guest_root_ready_ns": ready.boot.root_ready_ns,
            "guest_exec_ns": result.started.map(|(_, ns)| ns),
        });
        std::fs::write(path, format!("{times}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(result.status.code)
}

fn initramfs(agent: &Path, dest: &Path) -> Result<()> {
    nook::isolation::vm::initramfs::build_initramfs(agent, dest)
        .with_context(|| format!("cannot build the initramfs {}", dest.display()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("initramfs") if args.len() == 3 => {
            initramfs(Path::new(&args[1]), Path::new(&args[2])).map(|()| 0)
        }
        Some("run") => parse_run(&args[1..]).and_then(run),
        _ => Err(anyhow::anyhow!(
            "usage: nook-agent-host initramfs AGENT DEST | run --socket PATH --vmm-log FILE \
             [--timeout SECS] [--times FILE] --cmd ARG... -- VMM [ARG]..."
        )),
    };
    match outcome {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_HOST_ERROR)),
        Err(e) => {
            let _ = writeln!(io::stderr(), "nook-agent-host: error: {e:#}");
            ExitCode::from(EXIT_HOST_ERROR)
        }
    }
}
