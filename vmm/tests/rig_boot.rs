//! Boots the real guest kernel with nook-vmm: a busybox initramfs talks over the agent channel,
//! reads the EROFS disk, writes the ext4 disk, and resets the VM; with 1 and 2 vCPUs, 128 MiB and
//! 1 GiB. Needs a /dev/kvm that boots standard guests, so tests/vm/vmm-boot.sh prepares the
//! assets and runs this test inside the nested rig (NOOK_VMM_BOOT_DIR points at the assets).
//! With NOOK_VMM_BENCH_RUNS set it also times VMM start to the guest's ready line against QEMU
//! microvm (same kernel, initramfs, disks, vCPUs and memory), splits that time at the guest's
//! first instruction (the guest reads its time-stamp counter right after saying ready), and
//! measures the VMM's own RSS.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Case {
    vcpus: u8,
    memory_mib: u32,
}

fn run_case(dir: &Path, case: &Case) -> Result<(), String> {
    let tag = format!("{}cpu-{}m", case.vcpus, case.memory_mib);
    let upper = dir.join(format!("upper-{tag}.ext4"));
    std::fs::copy(dir.join("upper.ext4"), &upper).map_err(|e| format!("copy upper: {e}"))?;
    let sock_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sock = sock_dir.path().join("agent.sock");
    let listener =
        UnixListener::bind(&sock).map_err(|e| format!("bind {}: {e}", sock.display()))?;
    let serial = dir.join(format!("serial-{tag}.log"));
    let debug = std::env::var("NOOK_VMM_BOOT_SERIAL").is_ok();
    let cmdline = format!(
        "{}reboot=k panic=-1 rdinit=/init",
        if debug { "console=ttyS0 " } else { "quiet " }
    );
    let config = serde_json::json!({
        "kernel": dir.join("vmlinux"),
        "initramfs": dir.join("initrd.cpio"),
        "cmdline": cmdline,
        "memory_mib": case.memory_mib,
        "vcpus": case.vcpus,
        "disks": [
            {"path": dir.join("rootfs.erofs"), "read_only": true},
            {"path": upper, "read_only": false},
        ],
        "agent_socket": sock,
        "serial": if debug { serde_json::json!({"file": serial}) } else { serde_json::json!("off") },
        "timeout_ms": 240_000,
    });
    let started = Instant::now();
    let mut vmm = Command::new(env!("CARGO_BIN_EXE_nook-vmm"))
        .args(["--config-json", &config.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn nook-vmm: {e}"))?;
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(240)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line =
            line.map_err(|e| format!("{tag}: reading the agent channel: {e} (got {lines:?})"))?;
        if line == "ready" {
            eprintln!("{tag}: guest ready after {:?}", started.elapsed());
            writer.write_all(b"ping\n").map_err(|e| e.to_string())?;
        }
        let done = line == "done";
        lines.push(line);
        if done {
            break;
        }
    }
    let status = vmm.wait().map_err(|e| e.to_string())?;
    eprintln!(
        "{tag}: VMM exited with {status} after {:?}; guest said {lines:?}",
        started.elapsed()
    );
    if !status.success() {
        return Err(format!("{tag}: nook-vmm exited with {status}"));
    }
    let expect = [
        "ready".to_string(),
        "pong:ping".to_string(),
        format!("cpus={}", case.vcpus),
        "erofs=hello from erofs".to_string(),
        "ext4=ok".to_string(),
        "vda-write=refused".to_string(),
        "done".to_string(),
    ];
    for e in &expect {
        if !lines.contains(e) {
            return Err(format!("{tag}: guest never said {e:?} (said {lines:?})"));
        }
    }
    let mem_kb: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("memkb=")?.parse().ok())
        .ok_or_else(|| format!("{tag}: no memkb line"))?;
    let wanted = u64::from(case.memory_mib) * 1024;
    if mem_kb > wanted || mem_kb < wanted * 3 / 4 {
        return Err(format!(
            "{tag}: guest sees {mem_kb} KiB for {wanted} KiB of RAM"
        ));
    }
    let out = Command::new("debugfs")
        .args(["-R", "cat /persist.txt"])
        .arg(&upper)
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim() != "persisted by nook" {
        return Err(format!(
            "{tag}: the writable disk holds {text:?}, not the guest's file"
        ));
    }
    Ok(())
}

#[test]
fn boots_the_guest_kernel_in_every_shape() {
    let Some(dir) = std::env::var_os("NOOK_VMM_BOOT_DIR").map(PathBuf::from) else {
        eprintln!(
            "!!!! SKIPPED: the real-kernel boot test did NOT run; it needs the nested rig: tests/vm/vmm-boot.sh !!!!"
        );
        return;
    };
    let cases = [
        Case {
            vcpus: 1,
            memory_mib: 128,
        },
        Case {
            vcpus: 2,
            memory_mib: 1024,
        },
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| run_case(&dir, c).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Which VMM a bench run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vmm {
    Nook,
    Qemu,
}

/// Resident KiB of `pid` outside its guest RAM mapping (the one mapping of `guest_kib`).
fn rss_outside_guest(pid: u32, guest_kib: u64) -> Result<(u64, u64), String> {
    let smaps =
        std::fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|e| format!("smaps: {e}"))?;
    let (mut total, mut guest, mut size) = (0u64, 0u64, 0u64);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Size:"), Some(v)) => size = v.parse().unwrap_or(0),
            (Some("Rss:"), Some(v)) => {
                let rss: u64 = v.parse().unwrap_or(0);
                total += rss;
                if size == guest_kib {
                    guest += rss;
                }
            }
            _ => {}
        }
    }
    Ok((total - guest, guest))
}

/// One boot of a bench run.
struct BenchRun {
    /// Host milliseconds from spawning the VMM to the guest's ready line.
    host_ms: u128,
    /// Guest milliseconds from its time-stamp counter's zero to the ready line: the guest's own
    /// share of `host_ms`. KVM starts the counter at zero when the vCPU is created; nook-vmm
    /// creates it just before the first KVM_RUN, while QEMU creates it part-way through its
    /// own start-up, so for QEMU this over-counts the guest and under-counts QEMU.
    guest_ms: u128,
    /// VMM RSS outside guest RAM, KiB.
    rss_kib: u64,
    /// Guest RAM touched, KiB.
    guest_kib: u64,
}

/// What the guest's TSC reader said after the ready line, and when it arrived.
#[derive(Default)]
struct TscReport {
    cycles: Option<(u64, Instant)>,
    hz: Option<f64>,
}

impl TscReport {
    /// Notes a "tsc N" or "tsc_hz F" line.
    fn note(&mut self, line: &str) {
        if let Some(v) = line.strip_prefix("tsc_hz ") {
            self.hz = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("tsc ") {
            self.cycles = v.trim().parse().ok().map(|c| (c, Instant::now()));
        }
    }

    /// Guest milliseconds at the ready line: the TSC read, less the time between the two
    /// lines' arrival on the host (both crossed the same channel).
    fn guest_ms_at(&self, ready: Instant) -> Option<u128> {
        let ((cycles, at), hz) = (self.cycles?, self.hz?);
        let read_ms = cycles as f64 / hz * 1000.0;
        let after_ready_ms = at.duration_since(ready).as_secs_f64() * 1000.0;
        Some((read_ms - after_ready_ms).max(0.0).round() as u128)
    }
}

/// Starts one VM and times it to the guest's ready line.
fn bench_once(dir: &Path, vmm: Vmm, vcpus: u8, memory_mib: u32) -> Result<BenchRun, String> {
    let upper = dir.join("bench-upper.ext4");
    std::fs::copy(dir.join("upper.ext4"), &upper).map_err(|e| format!("copy upper: {e}"))?;
    let sock_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sock = sock_dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).map_err(|e| format!("bind: {e}"))?;
    let cmdline = "quiet reboot=k panic=-1 rdinit=/init";
    let mut command = match vmm {
        Vmm::Nook => {
            let config = serde_json::json!({
                "kernel": dir.join("vmlinux"), "initramfs": dir.join("initrd.cpio"),
                "cmdline": cmdline, "memory_mib": memory_mib, "vcpus": vcpus,
                "disks": [{"path": dir.join("rootfs.erofs"), "read_only": true},
                          {"path": upper, "read_only": false}],
                "agent_socket": sock, "timeout_ms": 240_000,
            });
            let mut c = Command::new(env!("CARGO_BIN_EXE_nook-vmm"));
            c.args(["--config-json", &config.to_string()]);
            c
        }
        Vmm::Qemu => {
            let mut c = Command::new("qemu-system-x86_64");
            let path = |p: &Path| p.display().to_string();
            // QEMU at its leanest: like nook-vmm, no option ROMs, no RTC and no serial port.
            c.args([
                "-M",
                "microvm,acpi=off,x-option-roms=off,rtc=off,isa-serial=off",
                "-enable-kvm",
                "-cpu",
                "host",
                "-nodefaults",
            ])
            .args(["-no-user-config", "-display", "none", "-no-reboot"])
            .args(["-m", &memory_mib.to_string(), "-smp", &vcpus.to_string()])
            .args([
                "-kernel",
                &path(&dir.join("vmlinux")),
                "-initrd",
                &path(&dir.join("initrd.cpio")),
            ])
            .args(["-append", cmdline])
            .args([
                "-drive",
                &format!(
                    "id=ro,file={},format=raw,if=none,readonly=on",
                    path(&dir.join("rootfs.erofs"))
                ),
            ])
            .args(["-device", "virtio-blk-device,drive=ro"])
            .args([
                "-drive",
                &format!("id=rw,file={},format=raw,if=none", path(&upper)),
            ])
            .args(["-device", "virtio-blk-device,drive=rw"])
            .args(["-chardev", &format!("socket,id=agent,path={}", path(&sock))])
            .args([
                "-device",
                "virtio-serial-device,max_ports=2",
                "-device",
                "virtserialport,chardev=agent,name=nook.agent",
            ]);
            c
        }
    };
    let log =
        std::fs::File::create(dir.join(format!("bench-{vmm:?}.log"))).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{vmm:?}: {e}"))?;
    let stream = accept_or_exit(&listener, &mut child, vmm)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(240)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    // At the ready line: when it arrived, host ms since the spawn, RSS outside and inside guest RAM.
    let mut ready = None;
    let mut tsc = TscReport::default();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("{vmm:?}: {e}"))?;
        tsc.note(&line);
        if line == "ready" && ready.is_none() {
            let at = Instant::now();
            let host_ms = started.elapsed().as_millis();
            let (rss_kib, guest_kib) = rss_outside_guest(child.id(), u64::from(memory_mib) * 1024)?;
            ready = Some((at, host_ms, rss_kib, guest_kib));
            writer.write_all(b"ping\n").map_err(|e| e.to_string())?;
        }
        if line == "done" {
            break;
        }
    }
    let result = match ready {
        Some((at, host_ms, rss_kib, guest_kib)) => Some(BenchRun {
            host_ms,
            guest_ms: tsc
                .guest_ms_at(at)
                .ok_or_else(|| format!("{vmm:?}: the guest did not report its TSC after ready"))?,
            rss_kib,
            guest_kib,
        }),
        None => None,
    };
    if vmm == Vmm::Qemu {
        // QEMU microvm has no i8042, so the guest's `reboot=k` reset never ends it: the timing
        // is taken, stop it here.
        let _ = child.kill();
        let _ = child.wait();
        return result.ok_or_else(|| format!("{vmm:?}: the guest never became ready"));
    }
    let status = wait_or_kill(&mut child, Duration::from_secs(120))?;
    let result = result.ok_or_else(|| format!("{vmm:?}: the guest never became ready"))?;
    if !status.success() {
        return Err(format!("{vmm:?}: exited with {status}"));
    }
    Ok(result)
}

/// Accepts the VMM's connection, or fails if the VMM exits or takes more than four minutes.
fn accept_or_exit(
    listener: &UnixListener,
    child: &mut std::process::Child,
    vmm: Vmm,
) -> Result<std::os::unix::net::UnixStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("accept: {e}")),
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "{vmm:?} exited with {status} before connecting to the agent socket"
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{vmm:?} never connected to the agent socket"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the VMM to exit, killing it after `limit`.
fn wait_or_kill(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the VMM did not exit after the guest finished".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn median(mut v: Vec<u128>) -> u128 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 0 {
        (v[n / 2 - 1] + v[n / 2]) / 2
    } else {
        v[n / 2]
    }
}

#[test]
fn bench_start_to_ready_against_qemu() {
    let (Some(dir), Some(runs)) = (
        std::env::var_os("NOOK_VMM_BOOT_DIR").map(PathBuf::from),
        std::env::var("NOOK_VMM_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse::<usize>().ok()),
    ) else {
        eprintln!("!!!! SKIPPED: the VMM benchmark did NOT run; it needs the nested rig: tests/vm/bench-vmm.sh !!!!");
        return;
    };
    // Boot from a local copy: the shared directory is 9p in the rig, and reading the kernel,
    // initramfs and disks through it is a cost of the rig, paid by both VMMs alike.
    let local = tempfile::tempdir().expect("cannot create a local directory");
    for f in ["vmlinux", "initrd.cpio", "rootfs.erofs", "upper.ext4"] {
        std::fs::copy(dir.join(f), local.path().join(f))
            .unwrap_or_else(|e| panic!("cannot copy {f} out of {}: {e}", dir.display()));
    }
    let dir = local.path().to_path_buf();
    let (vcpus, memory_mib) = (1, 256);
    let mut times = [Vec::new(), Vec::new()];
    let mut guest = [Vec::new(), Vec::new()];
    let mut own = [Vec::new(), Vec::new()];
    let mut rss = [Vec::new(), Vec::new()];
    for run in 0..runs {
        for (i, vmm) in [Vmm::Nook, Vmm::Qemu].into_iter().enumerate() {
            let r = bench_once(&dir, vmm, vcpus, memory_mib).unwrap_or_else(|e| panic!("{e}"));
            let vmm_ms = r.host_ms.saturating_sub(r.guest_ms);
            println!(
                "run {run} {vmm:?}: {} ms to ready = {vmm_ms} ms to the guest's first instruction + {} ms of guest boot; \
                 VMM RSS outside guest RAM {} KiB (guest RAM touched {} KiB)",
                r.host_ms, r.guest_ms, r.rss_kib, r.guest_kib
            );
            times[i].push(r.host_ms);
            guest[i].push(r.guest_ms);
            own[i].push(vmm_ms);
            rss[i].push(u128::from(r.rss_kib));
        }
    }
    let [nook, qemu] = times.map(median);
    let [nook_guest, qemu_guest] = guest.map(median);
    let [nook_own, qemu_own] = own.map(median);
    let [nook_rss, qemu_rss] = rss.map(median);
    println!("median start->ready: nook-vmm {nook} ms, QEMU microvm {qemu} ms, ratio {:.3} (goal <= 0.5)", nook as f64 / qemu as f64);
    println!(
        "median VMM start to the guest's first instruction: nook-vmm {nook_own} ms, QEMU {qemu_own} ms, ratio {:.3}",
        nook_own as f64 / qemu_own as f64
    );
    println!(
        "median guest boot (first instruction to ready): nook-vmm {nook_guest} ms, QEMU {qemu_guest} ms; \
         a VMM that started the guest instantly would score {:.3} here (the shorter guest boot over QEMU's total)",
        nook_guest.min(qemu_guest) as f64 / qemu as f64
    );
    println!("median VMM RSS outside guest RAM: nook-vmm {nook_rss} KiB (goal <= 5120), QEMU {qemu_rss} KiB");
}
