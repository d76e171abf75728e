//! QEMU's microvm machine as the reference VMM: the same guest kernel, agent initramfs, image
//! EROFS disk, kernel command line, memory and vCPU count as the `vm` column of `nook run --rm`
//! (writable layer on a guest tmpfs), driven by the bench over the same agent channel. The
//! image's disk and the initramfs are made before the runs, so image preparation is 0 here.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nook_agent::client::Client;
use nook_agent::guest::cmdline::{BootParams, Upper};
use nook_agent::process_env::DEFAULT_PATH;
use nook_agent::protocol::{ProcessSpec, StartSpec};

use super::measure::{self, monotonic_ns, Running};
use super::phases::phases;
use super::report::{Measured, Outcome, RunSample};
use super::spec::BenchSpec;
use super::Skip;
use crate::host_tools;
use crate::isolation::vm::kernel::find_kernel;
use crate::isolation::vm::phases::PhaseRecord;
use crate::isolation::vm::{assets, DEFAULT_MEMORY_MIB};
use crate::paths::{self, ProcessEnv};

const QEMU: &str = "qemu-system-x86_64";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// What every run boots.
struct Guest {
    qemu: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
    disk: PathBuf,
    sockets: PathBuf,
}

fn prepare(spec: &BenchSpec) -> Result<Guest, Skip> {
    let qemu = host_tools::QEMU.require()?;
    nook_vmm::host::check()?;
    let env = ProcessEnv;
    let kernel = find_kernel(None, &env)?.path;
    let agent = assets::find_agent(&env)?;
    let initramfs = assets::ensure_initramfs(&paths::cache_dir(&env), &agent)?;
    let out = Command::new(&spec.nook)
        .args(["image", "rootfs", &spec.image])
        .output()
        .map_err(|e| Skip(format!("cannot run nook image rootfs: {e}")))?;
    let disk = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .trim(),
    );
    if !out.status.success() || !disk.is_file() {
        return Err(Skip(format!(
            "nook image rootfs {} failed: {}",
            spec.image,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // Unix socket paths are short: not under the work directory.
    let sockets = std::env::temp_dir().join(format!("nook-bench-{}", std::process::id()));
    std::fs::create_dir_all(&sockets)
        .map_err(|e| Skip(format!("cannot create {}: {e}", sockets.display())))?;
    Ok(Guest {
        qemu,
        kernel,
        initramfs,
        disk,
        sockets,
    })
}

fn qemu_command(g: &Guest, socket: &Path) -> Command {
    let mut c = Command::new(&g.qemu);
    c.args([
        "-M",
        "microvm,acpi=off",
        "-enable-kvm",
        "-cpu",
        "host",
        "-nodefaults",
    ])
    .args(["-no-user-config", "-display", "none", "-no-reboot"])
    .args([
        "-m",
        &DEFAULT_MEMORY_MIB.to_string(),
        "-smp",
        "1",
        "-device",
        "i8042",
    ])
    .arg("-kernel")
    .arg(&g.kernel)
    .arg("-initrd")
    .arg(&g.initramfs)
    // The command line nook's VM column boots with for `run --rm`.
    .arg("-append")
    .arg(
        BootParams {
            upper: Upper::Tmpfs,
            ..BootParams::default()
        }
        .to_string(),
    )
    .arg("-drive")
    .arg(format!(
        "id=ro,file={},format=raw,if=none,readonly=on",
        g.disk.display()
    ))
    .args(["-device", "virtio-blk-device,drive=ro"])
    .arg("-chardev")
    .arg(format!("socket,id=agent,path={}", socket.display()))
    .args([
        "-device",
        "virtio-serial-device,max_ports=2",
        "-device",
        "virtserialport,chardev=agent,name=nook.agent",
    ]);
    c
}

/// Has `pid` exited (a zombie waiting for us)?
fn exited(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn accept(listener: &UnixListener, pid: libc::pid_t) -> Result<UnixStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("accept on the agent socket: {e}")),
        }
        if exited(pid) {
            return Err("QEMU exited before connecting to the agent socket".into());
        }
        if start.elapsed() > CONNECT_TIMEOUT {
            return Err(format!("QEMU did not connect within {CONNECT_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Boots one guest, runs the command through the agent, waits for QEMU's end.
fn run_once(spec: &BenchSpec, g: &Guest, n: u32) -> Result<RunSample, String> {
    let socket = g.sockets.join(format!("q{n}.sock"));
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let stderr = spec.work.join(format!("qemu-{n}.stderr"));
    let running = measure::spawn(&mut qemu_command(g, &socket), &stderr)
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let pid = running.pid;
    let mut rec = PhaseRecord {
        vmm_spawn_ns: Some(running.start_ns),
        ..PhaseRecord::default()
    };
    let driven = (|| -> Result<(), String> {
        let stream = accept(&listener, pid)?;
        rec.vmm_connected_ns = Some(monotonic_ns());
        let client = Client::from_unix(stream).map_err(|e| e.to_string())?;
        let ready = client
            .wait_ready(READY_TIMEOUT)
            .map_err(|e| format!("the agent did not come up: {e}"))?;
        rec.ready_ns = Some(monotonic_ns());
        rec.guest_agent_start_ns = Some(ready.boot.agent_start_ns);
        rec.guest_root_ready_ns = Some(ready.boot.root_ready_ns);
        let stream = client
            .start(StartSpec {
                process: ProcessSpec {
                    argv: spec.cmd.clone(),
                    // The built-in image's own environment.
                    env: vec![format!("PATH={DEFAULT_PATH}")],
                    cwd: String::new(),
                    user: String::new(),
                    terminal: false,
                    rows: 24,
                    cols: 80,
                    ..ProcessSpec::default()
                },
                hostname: String::new(),
                resolv_conf: String::new(),
                hosts: String::new(),
                mounts: Vec::new(),
                limits: Default::default(),
                security: Default::default(),
                keep_id: None,
            })
            .map_err(|e| e.to_string())?;
        let result = client
            .wait_process(stream, &mut io::sink(), &mut io::sink())
            .map_err(|e| e.to_string())?;
        rec.exit_ns = Some(monotonic_ns());
        rec.guest_exec_ns = result.started.map(|(_, t)| t);
        if result.status.code != 0 {
            return Err(format!(
                "the command exited with status {} in the guest",
                result.status.code
            ));
        }
        let _ = client.shutdown();
        Ok(())
    })();
    if driven.is_err() {
        // SAFETY: kill takes a pid (our unreaped child) and a signal number.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let stderr_path = running.stderr.clone();
    let done = running
        .wait()
        .map_err(|e| format!("cannot wait for {QEMU}: {e}"))?;
    let _ = std::fs::remove_file(&socket);
    if let Err(e) = driven {
        return Err(format!(
            "{e}; {}",
            Running::failure(&stderr_path, QEMU, done.code)
        ));
    }
    if done.code != 0 {
        return Err(Running::failure(&stderr_path, QEMU, done.code));
    }
    Ok(RunSample {
        wall_ms: done.wall_ns() as f64 / 1e6,
        cpu_ms: done.cpu_ns as f64 / 1e6,
        max_rss_kib: done.max_rss_kib,
        phases: Some(
            phases(done.start_ns, &rec, done.end_ns)
                .ok_or_else(|| format!("the run missed a phase mark: {rec:?}"))?,
        ),
    })
}

pub fn bench(spec: &BenchSpec) -> Outcome {
    let g = prepare(spec)?;
    let mut m = Measured {
        guest_memory_mib: Some(DEFAULT_MEMORY_MIB),
        notes: vec![format!(
            "QEMU microvm, 1 vCPU, same kernel, agent initramfs, EROFS disk and command line as the vm column; \
             the disk is prepared before the runs (image_prep 0)"
        )],
        ..Measured::default()
    };
    let result = (|| {
        for n in 0..spec.warmup + spec.runs {
            match run_once(spec, &g, n) {
                Ok(s) if n >= spec.warmup => m.samples.push(s),
                Ok(_) => {}
                Err(reason) if n == 0 => return Err(Skip(reason)),
                Err(reason) => return Err(Skip(format!("run {} failed: {reason}", n + 1))),
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&g.sockets);
    result.map(|()| m)
}
